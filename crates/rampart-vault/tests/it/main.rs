//! The Vault source against a real OpenBao (`bao server -dev`, started per test by the
//! testkit): each login method, the path mapping, the resolution order through
//! `Config::prepare`/`finish`, every failure at start, and token renewal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_config::{Config, Env, Overrides, SecretName, VaultAuth, VaultSettings};
use rampart_testkit::openbao::{free_port, OpenBao, TokenReviewStandIn, READ_RAMPART_POLICY};
use rampart_vault::Vault;
use secrecy::{ExposeSecret, SecretString};

const KEY: &str = "vault-master-key-value-7f3a";
const PASSWORD: &str = "Vault-Admin-Password-42!";
const HOOK: &str = "vault-webhook-secret-9c1d";

fn settings(address: String, auth: VaultAuth) -> VaultSettings {
    VaultSettings {
        address,
        ca_cert: None,
        mount: "secret".to_owned(),
        path_prefix: "rampart".to_owned(),
        auth,
        timeout_secs: 5,
    }
}

fn token(t: &str) -> VaultAuth {
    VaultAuth::Token(SecretString::from(t.to_owned()))
}

/// A Rampart reading `encryption_key`, `admin_password` and a webhook's `OPS_HOOK_SECRET`.
fn seed(bao: &OpenBao) {
    bao.put_secret("encryption_key", KEY);
    bao.put_secret("admin_password", PASSWORD);
    bao.put_secret("ops_hook_secret", HOOK);
    bao.write_policy("rampart", READ_RAMPART_POLICY);
}

/// `rampart.toml` in `dir` with `[secrets.vault]` at `address` (+ `extra` lines in it) and
/// a webhook whose secret is `OPS_HOOK_SECRET`.
fn config_dir(dir: &Path, address: &str, extra: &str, secrets_file: Option<&str>) -> Overrides {
    let mut toml = String::new();
    if let Some(lines) = secrets_file {
        std::fs::write(dir.join(".secrets"), lines).unwrap();
        toml.push_str("[server]\nsecrets_file = \".secrets\"\n\n");
    }
    toml.push_str(&format!("[secrets.vault]\naddress = \"{address}\"\n{extra}\n"));
    toml.push_str(
        "[[breach_detection.webhook]]\nurl = \"https://hooks.example.com/x\"\nsecret_env = \"OPS_HOOK_SECRET\"\n",
    );
    let path = dir.join("rampart.toml");
    std::fs::write(&path, toml).unwrap();
    Overrides { config: Some(path), data_dir: Some(dir.join("data")), ..Overrides::default() }
}

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
}

/// What `rampart` does at start (`app::load_config`): prepare, log in, snapshot, finish.
async fn load(env: &Env, flags: &Overrides) -> Result<Config, String> {
    let pending = Config::prepare(env, flags).map_err(|e| e.to_string())?;
    let settings = pending.vault().cloned().expect("vault configured");
    let vault = Vault::connect(&settings).await.map_err(|e| e.to_string())?;
    let secrets = vault.snapshot(&pending.secret_names()).await.map_err(|e| e.to_string())?;
    pending.finish(Some(Box::new(secrets))).map_err(|e| e.to_string())
}

fn exposed(s: &SecretString) -> &str {
    s.expose_secret()
}

fn assert_resolved_from_vault(c: &Config) {
    assert_eq!(c.secrets.encryption_key.as_ref().map(exposed), Some(KEY));
    assert_eq!(c.secrets.admin_password.as_ref().map(exposed), Some(PASSWORD));
    assert_eq!(c.breach.webhooks.len(), 1);
    assert_eq!(exposed(&c.breach.webhooks[0].secret), HOOK);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth_resolves_the_master_key_admin_password_and_webhook_secret_from_their_kv_paths() {
    let bao = OpenBao::start();
    seed(&bao);
    let t = bao.create_token("rampart", "1h", true);
    let dir = tempfile::tempdir().unwrap();
    let flags = config_dir(dir.path(), &bao.address(), "", None);
    let c = load(&env(&[("RAMPART_VAULT_TOKEN", &t)]), &flags).await.unwrap();
    assert_resolved_from_vault(&c);
    // The mapping: RAMPART_X at secret/data/rampart/x, field `value`; nothing else there.
    let read = bao.bao_json(&["kv", "get", "-mount=secret", "rampart/encryption_key"]);
    assert_eq!(read["data"]["data"]["value"], KEY);
}

#[tokio::test(flavor = "multi_thread")]
async fn approle_login_resolves_the_secrets() {
    let bao = OpenBao::start();
    seed(&bao);
    let (role_id, secret_id) = bao.approle("rampart", "rampart", "1h", "4h");
    let dir = tempfile::tempdir().unwrap();
    let flags = config_dir(dir.path(), &bao.address(), "auth = \"approle\"", None);
    let e = env(&[("RAMPART_VAULT_ROLE_ID", &role_id), ("RAMPART_VAULT_SECRET_ID", &secret_id)]);
    assert_resolved_from_vault(&load(&e, &flags).await.unwrap());
}

/// OpenBao's real Kubernetes auth method and Rampart's real client; only the Kubernetes
/// API server (its TokenReview endpoint) is a stand-in from the testkit, which vouches for
/// one service-account JWT, since no cluster can run here.
#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_login_resolves_the_secrets_through_openbao_and_a_token_review_stand_in() {
    let bao = OpenBao::start();
    seed(&bao);
    let reviewer = TokenReviewStandIn::start();
    bao.kubernetes(&reviewer, "rampart", "rampart");
    let dir = tempfile::tempdir().unwrap();
    let token_path = reviewer.write_token(dir.path());
    let extra = format!(
        "auth = \"kubernetes\"\nkubernetes_role = \"rampart\"\nkubernetes_token_path = \"{}\"",
        token_path.display()
    );
    let flags = config_dir(dir.path(), &bao.address(), &extra, None);
    assert_resolved_from_vault(&load(&Env::empty(), &flags).await.unwrap());
    assert!(reviewer.reviews() >= 1, "OpenBao asked the TokenReview API");

    // A JWT the API does not vouch for is refused, and never shown.
    let forged = format!("{}x", reviewer.jwt());
    std::fs::write(&token_path, &forged).unwrap();
    let err = load(&Env::empty(), &flags).await.unwrap_err();
    assert!(err.contains("Kubernetes login at auth/kubernetes/login (role rampart) failed"), "{err}");
    assert!(!err.contains(&forged) && !err.contains(reviewer.jwt()), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn vault_wins_over_the_environment_which_wins_over_the_secrets_file() {
    let bao = OpenBao::start();
    bao.put_secret("encryption_key", KEY);
    bao.put_secret("ops_hook_secret", HOOK);
    bao.write_policy("rampart", READ_RAMPART_POLICY);
    let t = bao.create_token("rampart", "1h", true);
    let dir = tempfile::tempdir().unwrap();
    let file = "RAMPART_ENCRYPTION_KEY=from-file\nRAMPART_ADMIN_PASSWORD=password-from-file\nRAMPART_ADMIN_USERNAME=file-admin\n";
    let flags = config_dir(dir.path(), &bao.address(), "", Some(file));
    let e = env(&[
        ("RAMPART_VAULT_TOKEN", &t),
        ("RAMPART_ENCRYPTION_KEY", "from-env"),
        ("RAMPART_ADMIN_PASSWORD", "password-from-env"),
    ]);
    let c = load(&e, &flags).await.unwrap();
    assert_eq!(c.secrets.encryption_key.as_ref().map(exposed), Some(KEY), "Vault first");
    assert_eq!(c.secrets.admin_password.as_ref().map(exposed), Some("password-from-env"), "absent from Vault: env");
    assert_eq!(c.secrets.admin_username.as_deref(), Some("file-admin"), "absent from both: the .secrets file");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_found_nowhere_names_itself_and_every_place_looked() {
    let bao = OpenBao::start();
    bao.write_policy("rampart", READ_RAMPART_POLICY);
    bao.put_secret("ops_hook_secret", HOOK);
    let t = bao.create_token("rampart", "1h", true);
    let dir = tempfile::tempdir().unwrap();
    let flags = config_dir(dir.path(), &bao.address(), "", Some("RAMPART_ADMIN_USERNAME=admin\n"));
    let e = env(&[("RAMPART_VAULT_TOKEN", &t), ("RAMPART_BREACH_WEBHOOK_URL", "https://hooks.example.com/b")]);
    let err = load(&e, &flags).await.unwrap_err();
    let vault_place = format!("vault {} secret/data/rampart/breach_webhook_secret", bao.address());
    assert!(err.contains("RAMPART_BREACH_WEBHOOK_SECRET is required but not set"), "{err}");
    assert!(err.contains(&vault_place), "{err}");
    assert!(err.contains("environment (X or X_FILE)"), "{err}");
    assert!(err.contains(&dir.path().join(".secrets").display().to_string()), "{err}");
    assert!(!err.contains(&t), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_fails_at_start_naming_the_address_never_the_token() {
    let bao = OpenBao::start();
    let wrong = "s.WrongTokenValue1234567890";
    let err = Vault::connect(&settings(bao.address(), token(wrong))).await.unwrap_err().to_string();
    assert!(err.contains(&bao.address()) && err.contains("permission denied"), "{err}");
    assert!(!err.contains(wrong), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_id_fails_at_start_without_either_credential_in_the_error() {
    let bao = OpenBao::start();
    bao.write_policy("rampart", READ_RAMPART_POLICY);
    let (role_id, _) = bao.approle("rampart", "rampart", "1h", "4h");
    let wrong = "0b1c2d3e-wrong-secret-id-4f5a6b7c8d9e";
    let auth = VaultAuth::AppRole {
        mount: "approle".to_owned(),
        role_id: SecretString::from(role_id.clone()),
        secret_id: SecretString::from(wrong.to_owned()),
    };
    let s = settings(bao.address(), auth);
    let err = Vault::connect(&s).await.unwrap_err().to_string();
    assert!(err.contains(&bao.address()) && err.contains("AppRole login at auth/approle/login failed"), "{err}");
    assert!(!err.contains(wrong) && !err.contains(&role_id), "{err}");
    let debug = format!("{s:?}");
    assert!(!debug.contains(wrong) && !debug.contains(&role_id), "{debug}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_vault_fails_naming_its_address() {
    let address = format!("http://127.0.0.1:{}", free_port());
    let err = Vault::connect(&settings(address.clone(), token("s.some-token-value"))).await.unwrap_err().to_string();
    assert!(err.contains(&address) && err.contains("cannot reach the server"), "{err}");
    assert!(!err.contains("s.some-token-value"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_vault_fails_at_start() {
    let bao = OpenBao::start();
    bao.seal();
    let err = Vault::connect(&settings(bao.address(), token(bao.root_token()))).await.unwrap_err().to_string();
    assert!(err.contains(&bao.address()) && err.contains("HTTP 503"), "{err}");
    assert!(!err.contains(bao.root_token()), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_read_is_a_failure_not_an_absent_secret() {
    let bao = OpenBao::start();
    bao.write_policy("rampart", READ_RAMPART_POLICY);
    bao.put_at("elsewhere/encryption_key", KEY);
    let t = bao.create_token("rampart", "1h", true);
    let mut s = settings(bao.address(), token(&t));
    s.path_prefix = "elsewhere".to_owned();
    let vault = Vault::connect(&s).await.unwrap();
    let err = vault.snapshot(&[SecretName::EncryptionKey]).await.unwrap_err().to_string();
    assert!(err.contains("cannot read secret/data/elsewhere/encryption_key") && err.contains("HTTP 403"), "{err}");

    // Where the policy allows reading, an absent path is "not here": nothing, no error.
    let vault = Vault::connect(&settings(bao.address(), token(&t))).await.unwrap();
    let snapshot = vault.snapshot(&[SecretName::EncryptionKey, SecretName::AdminPassword]).await.unwrap();
    assert!(snapshot.is_empty());
}

/// A renewable token living 6 seconds: long after that, it still works, because the
/// background task renewed it (without the task it would be refused by then).
#[tokio::test(flavor = "multi_thread")]
async fn a_short_lived_token_stays_valid_past_its_ttl_because_it_is_renewed() {
    let bao = OpenBao::start();
    bao.write_policy("rampart", READ_RAMPART_POLICY);
    let t = bao.create_token("rampart", "6s", true);
    let vault = Vault::connect(&settings(bao.address(), token(&t))).await.unwrap();
    assert!(vault.first_lease().renewable && vault.first_lease().ttl_secs <= 6);
    let task = vault.keep_alive().expect("a renewal task for a renewable token");
    tokio::time::sleep(Duration::from_secs(14)).await;
    let lease = vault.lookup_self().await.expect("the token is still valid");
    assert!(lease.ttl_secs > 0);
    task.abort();
}

/// AppRole tokens that reach their maximum TTL cannot be renewed further: the task logs in
/// again, so the client keeps a valid token.
#[tokio::test(flavor = "multi_thread")]
async fn approle_logs_in_again_when_its_token_cannot_be_renewed_any_longer() {
    let bao = OpenBao::start();
    bao.write_policy("rampart", READ_RAMPART_POLICY);
    let (role_id, secret_id) = bao.approle("rampart", "rampart", "4s", "6s");
    let auth = VaultAuth::AppRole {
        mount: "approle".to_owned(),
        role_id: SecretString::from(role_id),
        secret_id: SecretString::from(secret_id),
    };
    let vault = Vault::connect(&settings(bao.address(), auth)).await.unwrap();
    let task = vault.keep_alive().expect("renewal task");
    tokio::time::sleep(Duration::from_secs(15)).await;
    vault.lookup_self().await.expect("a valid token after more than twice the maximum TTL");
    task.abort();
}

#[test]
fn an_http_address_off_loopback_and_bad_settings_are_refused_naming_the_key() {
    let prepare = |pairs: &[(&str, &str)]| Config::prepare(&env(pairs), &Overrides::default()).map(|_| ());
    let err = prepare(&[("RAMPART_VAULT_ADDR", "http://vault.example.com:8200"), ("RAMPART_VAULT_TOKEN", "t")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("secrets.vault.address") && err.contains("https is required"), "{err}");
    for (pairs, key) in [
        (vec![("RAMPART_VAULT_ADDR", "https://v.example.com"), ("RAMPART_VAULT_AUTH", "ldap")], "secrets.vault.auth"),
        (vec![("RAMPART_VAULT_ADDR", "https://v.example.com")], "secrets.vault.auth"),
        (
            vec![("RAMPART_VAULT_ADDR", "https://v.example.com"), ("RAMPART_VAULT_AUTH", "kubernetes")],
            "secrets.vault.kubernetes_role",
        ),
        (
            vec![
                ("RAMPART_VAULT_ADDR", "https://v.example.com"),
                ("RAMPART_VAULT_TOKEN", "t"),
                ("RAMPART_VAULT_MOUNT", "../x"),
            ],
            "secrets.vault.mount",
        ),
        (
            vec![("RAMPART_VAULT_ADDR", "https://user:pw@v.example.com"), ("RAMPART_VAULT_TOKEN", "t")],
            "secrets.vault.address",
        ),
        (
            vec![
                ("RAMPART_VAULT_ADDR", "https://v.example.com"),
                ("RAMPART_VAULT_TOKEN", "t"),
                ("RAMPART_VAULT_TIMEOUT_SECS", "0"),
            ],
            "secrets.vault.timeout_secs",
        ),
    ] {
        let err = prepare(&pairs).unwrap_err().to_string();
        assert!(err.contains(key), "{pairs:?}: {err}");
        assert!(!err.contains("pw@"), "{err}");
    }
    assert!(prepare(&[("RAMPART_VAULT_ADDR", "http://127.0.0.1:8200"), ("RAMPART_VAULT_TOKEN", "t")]).is_ok());
    assert!(prepare(&[("RAMPART_VAULT_ADDR", "http://[::1]:8200/"), ("RAMPART_VAULT_TOKEN", "t")]).is_ok());
}

#[test]
fn the_vault_token_in_the_config_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("rampart.toml");
    std::fs::write(&path, "[secrets.vault]\naddress = \"https://v.example.com\"\ntoken = \"s.abc\"\n").unwrap();
    let flags = Overrides { config: Some(path), ..Overrides::default() };
    let err = Config::prepare(&Env::empty(), &flags).unwrap_err().to_string();
    assert!(err.contains("token"), "{err}");
    assert!(!err.contains("s.abc"), "{err}");
    // With Vault configured, the synchronous loader refuses rather than skip it.
    let flags = config_dir(dir.path(), "https://v.example.com", "", None);
    let err = Config::load(&env(&[("RAMPART_VAULT_TOKEN", "t")]), &flags).unwrap_err().to_string();
    assert!(err.contains("secrets.vault"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_the_configured_ca_certificate_reads_the_secrets_and_without_it_is_refused() {
    let bao = OpenBao::start_tls();
    seed(&bao);
    let t = bao.create_token("rampart", "1h", true);
    assert!(bao.address().starts_with("https://"));
    let mut s = settings(bao.address(), token(&t));
    s.ca_cert = Some(bao.ca_cert());
    let vault = Vault::connect(&s).await.unwrap();
    let snapshot = vault.snapshot(&[SecretName::EncryptionKey]).await.unwrap();
    assert_eq!(snapshot.len(), 1);

    // Vault's own CA is not among the public roots: without `ca_cert`, no connection.
    s.ca_cert = None;
    let err = Vault::connect(&s).await.unwrap_err().to_string();
    assert!(err.contains(&bao.address()) && err.contains("cannot reach the server"), "{err}");
    assert!(!err.contains(&t), "{err}");
}
