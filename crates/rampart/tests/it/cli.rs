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
