//! `rampart serve` with its secrets in a real OpenBao (`bao server -dev`, from the testkit):
//! each login method starts the server with the master key, the first admin's password and
//! the breach webhook's secret read from Vault; a Vault that cannot be used stops the
//! server before it creates anything; no credential or secret reaches an output or a log.

use std::path::Path;
use std::process::Stdio;

use base64::Engine as _;
use rampart_testkit::openbao::{free_port, OpenBao, TokenReviewStandIn, READ_RAMPART_POLICY};

use crate::support::{bin, start, ServerOpts};

const PASSWORD: &str = "Vault-Held-Operator-Pw-31!";
const HOOK: &str = "vault-held-webhook-secret-5e2b";

/// A master key, the admin password and the breach webhook secret in Vault, and the
/// policy Rampart reads them with. The key (base64 of 32 bytes) is returned.
fn seed(bao: &OpenBao) -> String {
    let key = base64::engine::general_purpose::STANDARD.encode(rampart_crypto::random_bytes::<32>());
    bao.put_secret("encryption_key", &key);
    bao.put_secret("admin_password", PASSWORD);
    bao.put_secret("breach_webhook_secret", HOOK);
    bao.write_policy("rampart", READ_RAMPART_POLICY);
    key
}

/// The environment of a server whose secrets are all in Vault: nothing secret but the
/// Vault credentials in `auth`.
fn env_for<'a>(bao: &OpenBao, auth: Vec<(&'a str, String)>) -> Vec<(&'a str, String)> {
    let mut env = vec![
        ("RAMPART_VAULT_ADDR", bao.address()),
        ("RAMPART_REQUIRE_MFA_FOR_ROLES", "none".to_owned()),
        ("RAMPART_BREACH_WEBHOOK_URL", "https://hooks.example.com/rampart".to_owned()),
    ];
    env.extend(auth);
    env
}

/// Starts the server with `env`, logs in with the password held in Vault, stops it, and
/// checks that no value in `secrets` was written to its output or logs, and that no key
/// file was made (the master key came from Vault).
async fn serves_with_secrets_from_vault(data: &Path, env: Vec<(&str, String)>, secrets: &[&str]) {
    let opts = ServerOpts { data_dir: data, env, extra_args: vec![] };
    let server = start(opts);
    let c = server.client();
    server.login(&c, "admin", PASSWORD).await;
    let (stdout, stderr_path) = (server.stdout_text.clone(), server.stderr_path.clone());
    assert!(server.stop().success());
    assert!(!data.join("master.key").exists(), "the master key came from Vault, none was generated");
    let mut outputs = vec![stdout, std::fs::read_to_string(stderr_path).unwrap()];
    for entry in std::fs::read_dir(data.join("logs")).unwrap() {
        outputs.push(std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    let server_log = outputs.iter().find(|o| o.contains("secrets read from Vault"));
    assert!(server_log.is_some(), "the log says where the secrets came from");
    for text in &outputs {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret value reached an output or log");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_starts_with_its_secrets_from_openbao_by_token() {
    let bao = OpenBao::start();
    let key = seed(&bao);
    let token = bao.create_token("rampart", "1h", true);
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&bao, vec![("RAMPART_VAULT_TOKEN", token.clone())]);
    serves_with_secrets_from_vault(&dir.path().join("data"), env, &[&key, PASSWORD, HOOK, &token]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_starts_with_its_secrets_from_openbao_by_approle() {
    let bao = OpenBao::start();
    let key = seed(&bao);
    let (role_id, secret_id) = bao.approle("rampart", "rampart", "1h", "4h");
    let dir = tempfile::tempdir().unwrap();
    // The secret_id as a file (`_FILE`), as an orchestrator would mount it.
    let secret_file = dir.path().join("secret-id");
    std::fs::write(&secret_file, format!("{secret_id}\n")).unwrap();
    let env = env_for(
        &bao,
        vec![
            ("RAMPART_VAULT_AUTH", "approle".to_owned()),
            ("RAMPART_VAULT_ROLE_ID", role_id.clone()),
            ("RAMPART_VAULT_SECRET_ID_FILE", secret_file.display().to_string()),
        ],
    );
    serves_with_secrets_from_vault(&dir.path().join("data"), env, &[&key, PASSWORD, HOOK, &role_id, &secret_id]).await;
}

/// OpenBao's real Kubernetes auth and Rampart's real client; only the Kubernetes API's
/// TokenReview endpoint is a stand-in (the testkit's), since no cluster runs here.
#[tokio::test(flavor = "multi_thread")]
async fn serve_starts_with_its_secrets_from_openbao_by_kubernetes_login() {
    let bao = OpenBao::start();
    let key = seed(&bao);
    let reviewer = TokenReviewStandIn::start();
    bao.kubernetes(&reviewer, "rampart", "rampart");
    let dir = tempfile::tempdir().unwrap();
    let token_path = reviewer.write_token(dir.path());
    let env = env_for(
        &bao,
        vec![
            ("RAMPART_VAULT_AUTH", "kubernetes".to_owned()),
            ("RAMPART_VAULT_KUBERNETES_ROLE", "rampart".to_owned()),
            ("RAMPART_VAULT_KUBERNETES_TOKEN_PATH", token_path.display().to_string()),
        ],
    );
    serves_with_secrets_from_vault(&dir.path().join("data"), env, &[&key, PASSWORD, HOOK, reviewer.jwt()]).await;
    assert!(reviewer.reviews() >= 1);
}

/// Runs `rampart serve` expecting it to refuse to start: its exit status and stderr.
fn serve_refused(data: &Path, env: &[(&str, String)]) -> (std::process::ExitStatus, String) {
    let mut cmd = bin();
    cmd.arg("serve").arg("--data-dir").arg(data).args(["--bind", "127.0.0.1:0"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status, text)
}

#[test]
fn serve_exits_non_zero_before_writing_anything_when_vault_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let address = format!("http://127.0.0.1:{}", free_port());
    let token = "s.Unreachable-Vault-Token-1234";
    let env = [("RAMPART_VAULT_ADDR", address.clone()), ("RAMPART_VAULT_TOKEN", token.to_owned())];
    let (status, output) = serve_refused(&data, &env);
    assert!(!status.success());
    assert!(output.contains("cannot log in to Vault") && output.contains(&address), "{output}");
    assert!(!output.contains(token), "{output}");
    assert!(!data.exists(), "nothing was created: no data dir, key file, certificate or log");
}

#[test]
fn serve_exits_non_zero_before_writing_anything_with_a_wrong_token_or_a_sealed_vault() {
    let bao = OpenBao::start();
    seed(&bao);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wrong = "s.Wrong-Token-For-This-Vault-987";
    let (status, output) = serve_refused(&data, &env_for(&bao, vec![("RAMPART_VAULT_TOKEN", wrong.to_owned())]));
    assert!(!status.success());
    assert!(output.contains(&bao.address()) && output.contains("permission denied"), "{output}");
    assert!(!output.contains(wrong), "{output}");
    assert!(!data.exists());

    bao.seal();
    let root = bao.root_token().to_owned();
    let (status, output) = serve_refused(&data, &env_for(&bao, vec![("RAMPART_VAULT_TOKEN", root.clone())]));
    assert!(!status.success());
    assert!(output.contains(&bao.address()) && output.contains("sealed"), "{output}");
    assert!(!output.contains(&root), "{output}");
    assert!(!data.exists());
}

#[test]
fn a_secret_held_nowhere_stops_serve_naming_it_and_every_place_looked() {
    let bao = OpenBao::start();
    bao.write_policy("rampart", READ_RAMPART_POLICY);
    let token = bao.create_token("rampart", "1h", true);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The webhook secret is nowhere: the error names it and each place looked, and the
    // server writes nothing.
    let (status, output) = serve_refused(&data, &env_for(&bao, vec![("RAMPART_VAULT_TOKEN", token.clone())]));
    assert!(!status.success());
    let place = format!("vault {} secret/data/rampart/breach_webhook_secret", bao.address());
    assert!(output.contains("RAMPART_BREACH_WEBHOOK_SECRET is required but not set"), "{output}");
    assert!(output.contains(&place) && output.contains("environment"), "{output}");
    assert!(!output.contains(&token));
    assert!(!data.exists());
}

/// Not only `serve`: every verb that opens the deployment resolves its secrets through
/// Vault first. `user list` opens (here: creates) the database under the master key Vault
/// holds; with another key the same database no longer opens.
#[test]
fn a_cli_verb_opens_the_deployment_with_the_master_key_from_vault() {
    let bao = OpenBao::start();
    seed(&bao);
    let token = bao.create_token("rampart", "1h", true);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |env: &[(&str, String)]| {
        let mut cmd = bin();
        cmd.args(["user", "list", "--data-dir"]).arg(&data).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[("RAMPART_VAULT_ADDR", bao.address()), ("RAMPART_VAULT_TOKEN", token.clone())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin"));
    assert!(!data.join("master.key").exists(), "no key file: the key is Vault's");

    let other = base64::engine::general_purpose::STANDARD.encode(rampart_crypto::random_bytes::<32>());
    let out = run(&[("RAMPART_ENCRYPTION_KEY", other)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("master key"),
        "another master key does not open what Vault's key sealed: {err}"
    );
}
