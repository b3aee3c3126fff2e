//! A real OpenID Connect provider (npm `oidc-provider`, `crates/rampart-testkit/oidc/`) on
//! a loopback port of its own, for the tests and the bench. `./scripts/test` runs `npm ci`
//! there; without `node_modules` (or `node`) the tests fail, they are never skipped.
//!
//! The provider has two confidential clients (`rampart`, `other-app`; client_secret_basic),
//! a signing key made at start, accounts made on first use (`alice`: groups `staff`, `bob`:
//! `admins`), and test-only routes (see `provider.js`): a login form instead of a login
//! page, account claims, and rewriting the ID token of the next `/token` answers.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use rampart_config::OidcConfig;
use rampart_types::RoleName;
use secrecy::SecretString;

pub const CLIENT_ID: &str = "rampart";
/// Where the provider sends the browser back: the TestApp's callback on its public name.
pub const REDIRECT_URL: &str = "https://rampart.test/api/v1/auth/oidc/callback";

pub struct OidcServer {
    pub port: u16,
    client_secret: String,
    child: Option<(Child, BufReader<ChildStdout>)>,
}

fn provider_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/oidc"))
}

impl OidcServer {
    /// A provider on a free port whose client `rampart` has `client_secret`.
    pub fn start(client_secret: &str) -> Self {
        let mut server = Self::stopped(client_secret);
        server.resume();
        server
    }

    /// A provider that is not running yet (its port is chosen): `resume` starts it.
    pub fn stopped(client_secret: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        Self { port, client_secret: client_secret.to_owned(), child: None }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `[auth.oidc]` for this provider: groups `admins` → admin, `staff` → editor, else viewer.
    pub fn settings(&self) -> OidcConfig {
        let role = |r: &str| RoleName::parse(r).expect("role");
        OidcConfig {
            issuer: self.issuer(),
            client_id: CLIENT_ID.to_owned(),
            client_secret: SecretString::from(self.client_secret.clone()),
            redirect_url: REDIRECT_URL.to_owned(),
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            username_claim: "preferred_username".into(),
            role_claim: Some("groups".into()),
            role_map: vec![("admins".into(), role("admin")), ("staff".into(), role("editor"))],
            default_role: Some(role("viewer")),
            ca_cert: None,
            browser_redirect: "/app/".into(),
        }
    }

    /// Starts the provider (again) on its port. A fresh process: new signing key, no
    /// sessions, codes or account changes from before.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let dir = provider_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "{} has no node_modules: run ./scripts/test, which runs npm ci there",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("provider.js")
            .current_dir(&dir)
            .env("OIDC_PORT", self.port.to_string())
            .env("OIDC_CLIENT_SECRET", &self.client_secret)
            .env("OIDC_REDIRECT_URIS", REDIRECT_URL)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node: {e}; run ./scripts/test, which installs nodejs"));
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("provider output");
        assert!(line.starts_with("READY "), "oidc-provider did not start: {line:?}");
        self.child = Some((child, out));
    }

    /// Kills the provider (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some((mut c, _)) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn control(&self, path: &str, body: serde_json::Value) {
        let url = format!("{}{path}", self.issuer());
        let res = reqwest::Client::new().post(url).json(&body).send().await.expect("provider control");
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }

    /// Sets an account's claims (created if new).
    pub async fn set_account(&self, login: &str, preferred_username: Option<&str>, groups: &[&str]) {
        let mut body = serde_json::json!({ "login": login, "groups": groups });
        if let Some(u) = preferred_username {
            body["preferred_username"] = u.into();
        }
        self.control("/__test/account", body).await;
    }

    /// How the ID token of the next `/token` answers is rewritten (`none` to stop):
    /// `wrong_audience`, `expired` (relative to `at`, unix seconds), `nonce_mismatch`,
    /// `two_audiences_no_azp`, `foreign_key`, `flipped_signature`.
    pub async fn id_token_mode(&self, mode: &str, at: Option<i64>) {
        self.control("/__test/id_token", serde_json::json!({ "mode": mode, "at": at })).await;
    }

    /// Plays the user's browser at the provider: follows `authorization_url`, logs in as
    /// `login` at the interaction, and follows redirects until the provider sends the
    /// browser to our callback. Returns that URL's path and query.
    pub async fn authorize(&self, authorization_url: &str, login: &str) -> String {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let mut url = authorization_url.to_owned();
        for _ in 0..10 {
            if let Some(rest) = url.strip_prefix("https://rampart.test") {
                return rest.to_owned();
            }
            let res = if url.contains("/interaction/") {
                browser.post(&url).form(&[("login", login)]).send().await
            } else {
                browser.get(&url).send().await
            }
            .expect("provider request");
            let location = res.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
            url = match location {
                Some(l) if l.starts_with('/') => format!("{}{l}", self.issuer()),
                Some(l) => l,
                None => {
                    panic!("the provider stopped at {url}: {} {}", res.status(), res.text().await.unwrap_or_default())
                }
            };
        }
        panic!("too many redirects at the provider");
    }
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        self.kill();
    }
}
