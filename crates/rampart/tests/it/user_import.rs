//! `rampart user import` / `export`: users moved from other systems keep their passwords.
//! The hashes below were written by other software (Python's `bcrypt`, passlib, and
//! hashlib in Django's and Werkzeug's formats), not by us: the point is that what those
//! systems wrote verifies here.

use crate::cli::user_cmd;
use crate::support::{start, ServerOpts};

const PASSWORD: &str = "Legacy-Import-Pa55!";

/// (username, role, scheme, hash of PASSWORD)
const LEGACY: [(&str, &str, &str); 7] = [
    ("bea", "editor", "$2b$05$9tkYPbq5cyHmlCxMLHG0p.l09OOKy7TeDCnI1NT0AF32ryghd6zAC"),
    ("bo", "viewer", "$2y$04$B4FLtVnxAsPXngE3Xl9.eeVKZcVOEI3DI/M3skuv0kEnPsgB4FXL6"),
    // nself's parameters (PBKDF2-SHA256, 100,000 iterations, 32-byte salt) in passlib's encoding.
    (
        "nell",
        "editor",
        "$pbkdf2-sha256$100000$855TKoVQam3t/f./F2LMee99b01p7R1DqFXqnXPOmRM$JP..u9sTYfloEF/b1Dv7dgWjSp6tkaehah/2PhCshpI",
    ),
    ("django", "viewer", "pbkdf2_sha256$100000$Xo8wR2n5aQ1z$Jh4Wn8QR5E263+tQVZxU4dHdwn81aR7YlXyz1s94Vu4="),
    (
        "werk",
        "viewer",
        "pbkdf2:sha256:100000$Wk3rZ9sALt5Q$4f5c43f0357223406645a4018b472ce74cd6c4258e28ce18886da050b117547b",
    ),
    (
        "ari",
        "viewer",
        "$argon2i$v=19$m=1024,t=3,p=4$PCfEeI8RAoDw/v9f6z0H4A$Di/WIsJBmUUNsDbzqjEMbAH23rUS3wQRHYbuevpc+bE",
    ),
    (
        "arid",
        "viewer",
        "$argon2id$v=19$m=2048,t=2,p=4$wvgfw/hfyxljLIUQQsiZkw$fwYYziERkcJ3yEr/AnaD202X+gEXPZJcZndCTNl0XgU",
    ),
];

const CURRENT_PREFIX: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

fn csv() -> String {
    let mut text = String::from("username,password_hash,role\n");
    for (name, role, hash) in LEGACY {
        // Argon2's parameters hold commas, so the field is quoted as RFC 4180 says.
        text.push_str(&format!("{name},\"{hash}\",{role}\n"));
    }
    text
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn login_status(server: &crate::support::Server, user: &str, pw: &str) -> u16 {
    let res = server
        .client()
        .post(server.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": user, "password": pw}))
        .send()
        .await
        .unwrap();
    res.status().as_u16()
}

/// The hash each user has now, from `user export --include-hashes`.
fn exported_hashes(data: &std::path::Path, dir: &std::path::Path, name: &str) -> serde_json::Value {
    let path = dir.join(name);
    ok(&user_cmd(data, &["export", "--include-hashes", "--output", path.to_str().unwrap()], None));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600, "an export with hashes is private");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn hash_of<'a>(export: &'a serde_json::Value, user: &str) -> &'a str {
    export["users"].as_array().unwrap().iter().find(|u| u["username"] == user).unwrap()["password_hash"]
        .as_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_bcrypt_pbkdf2_and_argon2_hashes_log_in_and_are_upgraded_to_argon2id() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let file = tmp.path().join("legacy.csv");
    std::fs::write(&file, csv()).unwrap();

    // A dry run checks and reports, and creates nobody (the first verb made the admin).
    ok(&user_cmd(&data, &["list"], None));
    let dry = ok(&user_cmd(&data, &["import", file.to_str().unwrap(), "--dry-run", "--json"], None));
    let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();
    assert_eq!((dry["dry_run"].as_bool(), dry["imported"].as_u64()), (Some(true), Some(7)), "{dry}");
    let list: serde_json::Value = serde_json::from_str(&ok(&user_cmd(&data, &["list", "--json"], None))).unwrap();
    assert_eq!(list["users"].as_array().map(Vec::len), Some(1), "only the admin after a dry run: {list}");

    let out = ok(&user_cmd(&data, &["import", file.to_str().unwrap()], None));
    assert!(out.contains("Imported 7 users (2 argon2, 2 bcrypt, 3 pbkdf2-sha256)"), "{out}");
    let again = ok(&user_cmd(&data, &["import", file.to_str().unwrap(), "--json"], None));
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["imported"], 0, "a re-run creates nothing: {again}");
    assert_eq!(again["skipped_existing"].as_array().map(Vec::len), Some(7));

    let before = exported_hashes(&data, tmp.path(), "before.json");
    for (name, _, hash) in LEGACY {
        assert_eq!(hash_of(&before, name), hash, "stored as imported until the first login");
    }

    let server = start(ServerOpts::new(&data));
    for (name, role, _) in LEGACY {
        assert_eq!(login_status(&server, name, "Legacy-Import-Pa55?").await, 401, "{name}: wrong password");
        assert_eq!(login_status(&server, name, PASSWORD).await, 200, "{name}: the imported hash verifies");
        let c = server.client();
        let token = server.login(&c, name, PASSWORD).await;
        let me: serde_json::Value =
            c.get(server.url("/api/v1/auth/me")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert_eq!(me["role"], role, "{name}");
    }
    let admin = server.login(&server.client(), "admin", "Cli-Boss-Passw0rd!").await;
    let audit = server.get_json(&admin, "/api/v1/admin/audit?event_type=user_create&limit=100").await;
    let imported = audit.to_string();
    assert!(
        imported.contains("\"source\":\"import\"") && imported.contains("\"hash_scheme\":\"bcrypt\""),
        "{imported}"
    );
    for (_, _, hash) in LEGACY {
        assert!(!imported.contains(hash), "no hash in the audit log");
    }
    server.stop();

    let after = exported_hashes(&data, tmp.path(), "after.json");
    for (name, _, _) in LEGACY {
        assert!(hash_of(&after, name).starts_with(CURRENT_PREFIX), "{name} upgraded: {}", hash_of(&after, name));
    }
    // The upgraded hash still takes the same password, and only it.
    let server = start(ServerOpts::new(&data));
    for (name, _, _) in LEGACY {
        assert_eq!(login_status(&server, name, PASSWORD).await, 200, "{name}");
        assert_eq!(login_status(&server, name, "Legacy-Import-Pa55?").await, 401, "{name}");
    }
}

/// One bad row stops the whole import before anything is created; the message names the
/// row and the problem, never the hash. A cost no login should pay (bcrypt 31, four billion
/// PBKDF2 rounds) counts as bad: it would let one login attempt hold a hashing thread for hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_imports_nothing_and_runaway_costs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cases = [
        ("$2b$31$9tkYPbq5cyHmlCxMLHG0p.l09OOKy7TeDCnI1NT0AF32ryghd6zAC", "bcrypt cost 31"),
        ("$pbkdf2-sha256$4000000000$855TKoVQam3t/f./F2LMee99b01p7R1DqFXqnXPOmRM$JP..u9sTYfloEF/b1Dv7dgWjSp6tkaehah/2PhCshpI", "pbkdf2-sha256 cost 4000000000"),
        ("$argon2id$v=19$m=4194304,t=2,p=4$wvgfw/hfyxljLIUQQsiZkw$fwYYziERkcJ3yEr/AnaD202X+gEXPZJcZndCTNl0XgU", "argon2 cost 4194304"),
        ("{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "unrecognised password hash format"),
    ];
    for (bad, message) in cases {
        let file = tmp.path().join("bad.csv");
        std::fs::write(&file, format!("{}zed,\"{bad}\",viewer\n", csv())).unwrap();
        let out = user_cmd(&data, &["import", file.to_str().unwrap()], None);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("row 9: ") && err.contains(message), "{err}");
        assert!(err.contains("nothing was imported"), "{err}");
        assert!(!err.contains(bad), "the hash is not echoed: {err}");
    }
    let plaintext = tmp.path().join("plain.json");
    std::fs::write(&plaintext, r#"{"users": [{"username": "pat", "password": "Hunter2-Hunter2!"}]}"#).unwrap();
    let out = user_cmd(&data, &["import", plaintext.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Hunter2"), "a plaintext password is never echoed");

    let list: serde_json::Value = serde_json::from_str(&ok(&user_cmd(&data, &["list", "--json"], None))).unwrap();
    let names: Vec<&str> = list["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin"], "nothing was created");

    // A role the server does not know refuses that row (and the command), by name.
    let file = tmp.path().join("role.json");
    std::fs::write(
        &file,
        format!(r#"[{{"username": "rex", "password_hash": "{}", "role": "overlord"}}]"#, LEGACY[0].2),
    )
    .unwrap();
    let out = user_cmd(&data, &["import", file.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("row 1 (rex)"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Export never carries a hash unless asked, never a second-factor secret, and what it
/// writes with hashes moves users to another Rampart with their passwords.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_leaves_out_secrets_and_round_trips_to_another_server() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let add =
        user_cmd(&a, &["add", "--role", "editor", "--password-stdin", "--", "-dash"], Some("Kx9!Strong-Passphrase\n"));
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));

    let plain = ok(&user_cmd(&a, &["export"], None));
    let plain_json: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(plain_json["users"].as_array().map(Vec::len), Some(2), "{plain}");
    assert!(!plain.contains("password_hash") && !plain.contains("$argon2"), "{plain}");
    let csv = ok(&user_cmd(&a, &["export", "--format", "csv"], None));
    assert!(csv.starts_with("username,role,disabled,mfa_enabled,created_at\n"), "{csv}");
    assert!(csv.contains("'-dash,editor"), "a leading '-' is defused for spreadsheets: {csv}");
    assert!(!csv.contains("$argon2"));

    let file = tmp.path().join("users.csv");
    ok(&user_cmd(&a, &["export", "--format", "csv", "--include-hashes", "--output", file.to_str().unwrap()], None));
    let again = user_cmd(&a, &["export", "--output", file.to_str().unwrap()], None);
    assert!(!again.status.success(), "an existing file is never overwritten");

    let out = ok(&user_cmd(&b, &["import", file.to_str().unwrap()], None));
    assert!(out.contains("Imported 1 users (1 argon2)"), "the admin exists in b already: {out}");
    let server = start(ServerOpts::new(&b));
    assert_eq!(login_status(&server, "-dash", "Kx9!Strong-Passphrase").await, 200);
    server.stop();

    // Every export is in the audit log, saying whether hashes left the server.
    let server = start(ServerOpts::new(&a));
    let admin = server.login(&server.client(), "admin", "Cli-Boss-Passw0rd!").await;
    let audit = server.get_json(&admin, "/api/v1/admin/audit?event_type=user_export&limit=100").await;
    let with_hashes: Vec<bool> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["details"]["include_hashes"].as_bool().unwrap())
        .collect();
    assert_eq!(with_hashes.iter().filter(|h| **h).count(), 1, "{audit}");
    assert_eq!(with_hashes.iter().filter(|h| !**h).count(), 2, "{audit}");
}
