use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use crate::support::{bin, start, ServerOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_secure_writes_private_files_refuses_overwrite_and_serve_uses_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let out = bin().args(["init", "--secure", "--dir"]).arg(dir).arg("--data-dir").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["rampart.toml", ".secrets"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let secrets = std::fs::read_to_string(dir.join(".secrets")).unwrap();
    for key in ["RAMPART_ENCRYPTION_KEY=", "RAMPART_ADMIN_PASSWORD=", "RAMPART_BREACH_WEBHOOK_SECRET="] {
        assert!(secrets.contains(key), "{key}");
    }
    let before = std::fs::read(dir.join(".secrets")).unwrap();
    let again = bin().args(["init", "--secure", "--dir"]).arg(dir).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(dir.join(".secrets")).unwrap(), before);
    let plain = bin().args(["init", "--dir"]).arg(dir.join("other")).output().unwrap();
    assert!(!plain.status.success(), "init without --secure is refused");

    let password = secrets.lines().find_map(|l| l.strip_prefix("RAMPART_ADMIN_PASSWORD=")).unwrap().to_owned();
    let mut opts = ServerOpts::new(&data);
    opts.env.retain(|(k, _)| *k != "RAMPART_ADMIN_PASSWORD");
    opts.extra_args = vec!["--config".into(), dir.join("rampart.toml").display().to_string()];
    let server = start(opts);
    let c = server.client();
    server.login(&c, "admin", &password).await;
    assert!(!data.join("master.key").exists(), "the key came from .secrets");
}

pub(crate) fn user_cmd(data: &std::path::Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut cmd = bin();
    cmd.arg("user").arg("--data-dir").arg(data).args(args).env("RAMPART_ADMIN_PASSWORD", "Cli-Boss-Passw0rd!");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_verbs_manage_users_in_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let add = user_cmd(&data, &["add", "bob", "--role", "editor", "--password-stdin"], Some("Kx9!Strong-Passphrase\n"));
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let weak = user_cmd(&data, &["add", "carl", "--password-stdin"], Some("weak\n"));
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("rule: min_length"));
    let gen = user_cmd(&data, &["add", "gina", "--role", "viewer"], None);
    assert!(String::from_utf8_lossy(&gen.stdout).contains("Password (shown once)"));

    let list = String::from_utf8_lossy(&user_cmd(&data, &["list"], None).stdout).to_string();
    assert!(list.contains("bob") && list.contains("editor") && list.contains("gina"), "{list}");

    assert!(user_cmd(&data, &["set-role", "bob", "viewer"], None).status.success());
    assert!(user_cmd(&data, &["disable", "gina"], None).status.success());
    let list = String::from_utf8_lossy(&user_cmd(&data, &["list"], None).stdout).to_string();
    let bob = list.lines().find(|l| l.starts_with("bob")).unwrap();
    assert!(bob.contains("viewer"), "{bob}");
    let gina = list.lines().find(|l| l.starts_with("gina")).unwrap();
    assert!(gina.contains("true"), "{gina}");

    let demote = user_cmd(&data, &["set-role", "admin", "viewer"], None);
    assert!(!demote.status.success(), "the last admin cannot be demoted");
    assert!(String::from_utf8_lossy(&demote.stderr).contains("last admin"));

    // The server sees the CLI's changes.
    let server =
        start(ServerOpts { env: vec![("RAMPART_REQUIRE_MFA_FOR_ROLES", "none".into())], ..ServerOpts::new(&data) });
    let c = server.client();
    let res = c
        .post(server.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "gina", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    server.login(&c, "bob", "Kx9!Strong-Passphrase").await;
}

/// A wrong type in rampart.toml names the key and the line; a misspelled RAMPART_*
/// variable is reported at start with the closest known name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_mistakes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("rampart.toml");
    std::fs::write(&config, "[server]\nbind = \"127.0.0.1:0\"\n\n[rate_limit]\nrequests_per_minute = \"lots\"\n")
        .unwrap();
    let out = crate::support::bin()
        .args(["serve", "--data-dir"])
        .arg(tmp.path().join("d"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("rate_limit.requests_per_minute (line 5)"), "{err}");
    assert!(!tmp.path().join("d").exists(), "nothing created for a bad configuration");

    let data = tmp.path().join("data");
    let mut opts = crate::support::ServerOpts::new(&data);
    opts.env.push(("RAMPART_SESION_TIMEOUT_MINUTES", "5".into()));
    let server = crate::support::start(opts);
    let stderr_path = server.stderr_path.clone();
    assert!(server.stop().success());
    let err = std::fs::read_to_string(stderr_path).unwrap();
    assert!(
        err.contains("RAMPART_SESION_TIMEOUT_MINUTES is not a Rampart setting")
            && err.contains("RAMPART_SESSION_TIMEOUT_MINUTES"),
        "{err}"
    );
}

/// Starting on a port that is in use fails before anything is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = tmp.path().join("data");
    let out = crate::support::bin()
        .env("RAMPART_ADMIN_PASSWORD", crate::support::ADMIN_PASSWORD)
        .args(["serve", "--bind", &addr, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen on"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!data.exists(), "no data directory, no admin, before the port is ours");
    drop(taken);
}

/// Listing verbs print aligned columns, and JSON with --json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_verbs_align_and_take_json() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(user_cmd(&data, &["add", "a-very-long-user-name@example.com", "--role", "editor"], None).status.success());
    assert!(user_cmd(&data, &["add", "bo"], None).status.success());
    let table = String::from_utf8(user_cmd(&data, &["list"], None).stdout).unwrap();
    let second_column: Vec<usize> = table
        .lines()
        .map(|l| {
            let first_end = l.find("  ").unwrap();
            first_end + l[first_end..].len() - l[first_end..].trim_start().len()
        })
        .collect();
    assert!(second_column.windows(2).all(|w| w[0] == w[1]), "columns line up:\n{table}");
    let json: serde_json::Value = serde_json::from_slice(&user_cmd(&data, &["list", "--json"], None).stdout).unwrap();
    assert_eq!(json["users"].as_array().map(Vec::len), Some(3), "{json}");
    let out = crate::support::bin().args(["backup", "list", "--json", "--data-dir"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let backups: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(backups["backups"].is_array());
}

/// A `user` verb run beside a live server ends the user's sessions there too, though the
/// server answers repeat requests from its session cache: the store notices the other
/// process's commit (polled every 100 ms) and drops the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_disable_ends_cached_sessions_of_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let add = user_cmd(&data, &["add", "gus", "--role", "editor", "--password-stdin"], Some("Kx9!Strong-Passphrase\n"));
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let c = server.client();
    let token = server.login(&c, "gus", "Kx9!Strong-Passphrase").await;
    let me = || c.get(server.url("/api/v1/auth/me")).bearer_auth(&token).send();
    for _ in 0..3 {
        assert_eq!(me().await.unwrap().status(), 200, "served (and cached)");
    }
    let disable = user_cmd(&data, &["disable", "gus"], None);
    assert!(disable.status.success(), "{}", String::from_utf8_lossy(&disable.stderr));
    let disabled_at = std::time::Instant::now();
    let mut refused_after = None;
    while disabled_at.elapsed() < std::time::Duration::from_secs(5) {
        if me().await.unwrap().status() == 401 {
            refused_after = Some(disabled_at.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let refused_after = refused_after.expect("the disabled user's session was still served after 5 s");
    // The poll interval plus scheduling slack on a loaded 2-core machine.
    assert!(refused_after < std::time::Duration::from_secs(1), "refused only after {refused_after:?}");
}

/// `--database-url sqlite://PATH/rampart.db` puts the database there (SPEC 2); an
/// unreachable PostgreSQL is a failed start and a URL this version cannot serve is refused
/// by name (creating nothing), neither echoing the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_url_chooses_where_the_data_lives() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let elsewhere = tmp.path().join("db");
    let url = format!("sqlite://{}/rampart.db", elsewhere.display());
    let mut opts = ServerOpts::new(&data);
    opts.extra_args = vec!["--database-url".into(), url.clone()];
    let server = start(opts);
    let c = server.client();
    let token = server.login(&c, "admin", crate::support::ADMIN_PASSWORD).await;
    let res = c
        .post(server.url("/api/v1/collections"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "notes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(server.stop().success());
    assert!(elsewhere.join("rampart.db").exists(), "the database is where the URL says");
    assert!(!data.join("rampart.db").exists(), "and not in the data directory");
    // CLI verbs follow the same setting.
    let list =
        bin().args(["user", "list", "--data-dir"]).arg(&data).env("RAMPART_DATABASE_URL", &url).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("admin"), "{}", String::from_utf8_lossy(&list.stderr));

    let fresh = tmp.path().join("fresh");
    let out = bin()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&fresh)
        .args(["--database-url", "postgres://app:Sup3r-Secret-Pw@127.0.0.1:1/rampart"])
        .env("RAMPART_ADMIN_PASSWORD", crate::support::ADMIN_PASSWORD)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unreachable database is a failed start");
    assert!(err.contains("PostgreSQL") && !err.contains("Sup3r-Secret-Pw"), "{err}");
    let other = tmp.path().join("other");
    let refused = bin()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&other)
        .args(["--database-url", "mysql://app:Sup3r-Secret-Pw@127.0.0.1/rampart"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("database_url") && !err.contains("Sup3r-Secret-Pw"), "{err}");
    assert!(!other.exists(), "nothing created for a refused configuration");
}

/// Every verb and sub-verb `--help` lists has a man page, and the completion scripts name
/// every verb and are valid shell (SPEC 2).
#[test]
fn every_verb_has_a_man_page_and_completions() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin().args(["man", "--out"]).arg(tmp.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verbs = |args: &[&str]| -> Vec<String> {
        let help = String::from_utf8(bin().args(args).arg("--help").output().unwrap().stdout).unwrap();
        help.split("Commands:")
            .nth(1)
            .map(|list| {
                list.lines()
                    .skip(1)
                    .take_while(|l| !l.trim().is_empty())
                    .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                    .filter(|v| v != "help")
                    .collect()
            })
            .unwrap_or_default()
    };
    let top = verbs(&[]);
    assert!(top.len() >= 13 && top.contains(&"user".to_owned()), "{top:?}");
    let mut pages = vec!["rampart".to_owned()];
    for verb in &top {
        pages.push(format!("rampart-{verb}"));
        pages.extend(verbs(&[verb.as_str()]).into_iter().map(|sub| format!("rampart-{verb}-{sub}")));
    }
    assert!(pages.contains(&"rampart-user-import".to_owned()), "{pages:?}");
    for page in &pages {
        let text = std::fs::read_to_string(tmp.path().join(format!("{page}.1"))).unwrap_or_default();
        assert!(text.contains(".TH") && text.contains(".SH SYNOPSIS"), "no man page for {page}");
    }

    let bash = bin().args(["completions", "bash"]).output().unwrap();
    assert!(bash.status.success());
    let script = String::from_utf8(bash.stdout).unwrap();
    for verb in &top {
        assert!(script.contains(verb.as_str()), "bash completion misses {verb}");
    }
    let file = tmp.path().join("rampart.bash");
    std::fs::write(&file, &script).unwrap();
    let syntax = std::process::Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    assert!(!bin().args(["completions", "tcsh"]).output().unwrap().status.success());
}

/// Runs `rampart ARGS --data-dir DATA` without any admin password set (so the first one
/// opening the directory generates it).
fn run_in(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    bin().args(args).arg("--data-dir").arg(data).stdin(Stdio::null()).output().unwrap()
}

/// stdout as the one JSON document it must be; `codes` are the accepted exit statuses.
fn json_of(data: &std::path::Path, args: &[&str], codes: &[i32]) -> serde_json::Value {
    let out = run_in(data, args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let code = out.status.code().unwrap_or(-1);
    assert!(codes.contains(&code), "{args:?} exited {code}\nstdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document ({e}):\n{stdout}"))
}

/// SPEC 2: every listing and report verb takes --json and then prints exactly one JSON
/// document on stdout (notices, the first admin's generated password and progress go to
/// stderr), on a real data directory. (`migrate --json` needs PostgreSQL:
/// migrate::a_populated_sqlite_deployment_moves_to_postgres_and_keeps_working.)
#[test]
fn every_listing_and_report_verb_prints_one_json_document_with_json() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let path = |name: &str| tmp.path().join(name).display().to_string();

    // The first open creates the admin with a generated password: on stderr, not stdout.
    let out = run_in(&data, &["user", "list", "--json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only once"));
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users["users"][0]["username"], "admin", "{users}");

    let import = tmp.path().join("users.csv");
    std::fs::write(
        &import,
        "username,password_hash\nbea,$2b$05$9tkYPbq5cyHmlCxMLHG0p.l09OOKy7TeDCnI1NT0AF32ryghd6zAC\n",
    )
    .unwrap();
    let report = json_of(&data, &["user", "import", import.to_str().unwrap(), "--json"], &[0]);
    assert_eq!(report["imported"], 1, "{report}");
    assert!(json_of(&data, &["security", "blocks", "--json"], &[0])["blocked_ips"].is_array());
    assert!(json_of(&data, &["retention", "plan", "--json"], &[0])["collections"].is_array());

    let meta = json_of(&data, &["backup", "create", "--json"], &[0]);
    let id = meta["backup_id"].as_str().unwrap().to_owned();
    assert_eq!(meta["encrypted"], true, "{meta}");
    assert_eq!(json_of(&data, &["backup", "list", "--json"], &[0])["backups"][0]["backup_id"], id.as_str());
    assert_eq!(json_of(&data, &["backup", "verify", &id, "--json"], &[0])["valid"], true);
    let rbk = data.join("backups").join(format!("{id}.rbk"));
    let key = data.join("master.key").display().to_string();
    let offline = json_of(&data, &["backup", "verify", rbk.to_str().unwrap(), "--key-file", &key, "--json"], &[0]);
    assert_eq!(offline["valid"], true, "{offline}");

    let ledger = json_of(&data, &["gdpr", "export-ledger", "--out", &path("ledger.json"), "--json"], &[0]);
    assert_eq!(ledger["entries"], 0, "{ledger}");
    assert!(json_of(&data, &["gdpr", "export-ledger", "--json"], &[0])["entries"].is_array());
    let restored = tmp.path().join("restored");
    let args =
        ["backup", "restore", rbk.to_str().unwrap(), "--key-file", &key, "--erasure-ledger", &path("ledger.json")];
    let summary = json_of(&restored, &[&args[..], &["--json"]].concat(), &[0]);
    assert_eq!(summary["backup_id"], id.as_str(), "{summary}");

    assert!(json_of(&data, &["keys", "show", "--json"], &[0])["current_kek_version"].is_u64());
    let rotated = json_of(&data, &["keys", "rotate", "--reencrypt", "--json"], &[0]);
    assert!(rotated["reencryption"].is_null(), "finished before printing: {rotated}");
    let new_key = tmp.path().join("new.key");
    let generated = rampart_crypto::MasterKey::generate().to_base64();
    std::fs::write(&new_key, secrecy::ExposeSecret::expose_secret(&generated)).unwrap();
    let changed =
        json_of(&data, &["keys", "change-master", "--new-key-file", new_key.to_str().unwrap(), "--json"], &[0]);
    assert!(changed["rewrapped_keys"].as_u64() > Some(0), "{changed}");

    // CLI verbs write no audit.log mirror (the server does): verify reports it, exit 1.
    let verify = json_of(&data, &["audit", "verify", "--json"], &[0, 1]);
    assert_eq!(verify["database"]["valid"], true, "{verify}");
    let tail = json_of(&data, &["audit", "tail", "-n", "3", "--json"], &[0]);
    assert_eq!(tail["records"].as_array().map(Vec::len), Some(3), "{tail}");
    let repair = json_of(&data, &["audit", "repair", "--reason", "no mirror yet", "--json"], &[0, 1]);
    assert!(repair["before"].is_object() && repair["after"].is_object(), "{repair}");

    let report = tmp.path().join("report.json");
    std::fs::write(&report, "{}").unwrap();
    let verdict = json_of(&data, &["compliance", "verify-report", report.to_str().unwrap(), "--json"], &[1]);
    assert_eq!(verdict["valid"], false, "{verdict}");
}

/// Long work shows progress on stderr only: off a terminal as plain lines (no bar, no
/// carriage returns), and stdout keeps only the result.
#[test]
fn progress_is_plain_lines_on_stderr_off_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut csv = String::from("username,password_hash\n");
    for i in 0..40 {
        csv.push_str(&format!("user{i},$2b$05$9tkYPbq5cyHmlCxMLHG0p.l09OOKy7TeDCnI1NT0AF32ryghd6zAC\n"));
    }
    let file = tmp.path().join("users.csv");
    std::fs::write(&file, csv).unwrap();
    let import = ["user", "import", file.to_str().unwrap()];
    let steps: [(&[&str], &[&str], &str); 3] = [
        (&import, &["importing: 10% (4/40)", "importing: 90% (36/40)", "importing: 40 new"], "Imported 40 users"),
        (
            &["backup", "create"],
            &["snapshot...", "snapshot: ", "encrypting: done", "key store, ledger, checksum: written"],
            "Created backup-",
        ),
        (&["keys", "rotate", "--reencrypt"], &["re-encrypting: every document re-sealed"], "Key-encrypting key is now"),
    ];
    for (args, expected, result) in steps {
        let out = run_in(&data, args);
        let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
        assert!(out.status.success(), "{args:?}: {stderr}");
        for line in expected {
            assert!(stderr.contains(line), "{args:?}: no {line:?} in stderr:\n{stderr}");
        }
        assert!(
            !stderr.contains('\r') && !stderr.contains('\u{1b}'),
            "{args:?}: terminal codes off a terminal: {stderr:?}"
        );
        assert!(stdout.starts_with(result), "{args:?}: {stdout}");
        for line in stdout.lines() {
            assert!(!line.contains('%') && !line.ends_with("..."), "{args:?}: progress on stdout: {stdout}");
        }
    }
}
