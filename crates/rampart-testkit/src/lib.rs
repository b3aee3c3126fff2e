//! Test harness: a real SQLite store in a temp dir, the real router driven in-process,
//! and a fake clock. Dev-dependency only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod conformance;
pub mod postgres;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use rampart_config::Config;
use rampart_core::{Core, CoreSettings, FakeClock, MasterKey, PasswordPool};
use rampart_crypto::PasswordHasher;
use rampart_http::{router, AppState, ClientAddr};
use rampart_store::Store;
use rampart_store_sqlite::SqliteStore;
use rampart_types::Timestamp;
use secrecy::SecretString;
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "Adm1n-Canary-Pa55word!";
/// A password that satisfies the policy, for users tests create.
pub const USER_PASSWORD: &str = "Us3r-Strong-Passw0rd!";

/// 2026-01-01T00:00:00Z: a fixed start so expiry tests are deterministic.
pub const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// The backend the API tests run on: opens (or reopens, for a restart) the store of a data
/// directory. SQLite today; the PostgreSQL store adds one implementation.
pub trait TestBackend: Send + Sync {
    fn open(&self, data_dir: &Path) -> Arc<dyn Store>;
}

/// The embedded default: `rampart.db` in the data directory.
pub struct Sqlite;

impl TestBackend for Sqlite {
    fn open(&self, data_dir: &Path) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(data_dir).expect("store"))
    }
}

pub struct TestApp {
    pub dir: TempDir,
    pub clock: FakeClock,
    pub core: Core,
    pub store: Arc<dyn Store>,
    backend: Arc<dyn TestBackend>,
    pub router: axum::Router,
    pub config: Config,
    master_key: String,
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    /// Lets a test adjust the configuration before the app opens.
    pub async fn with_config(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::for_data_dir(dir.path()).expect("config");
        // Most tests exercise other things with an admin session; the MFA requirement for
        // admins (the product default) has tests of its own that turn it back on.
        config.auth.require_mfa_for_roles.clear();
        tweak(&mut config);
        let key = MasterKey::generate();
        let master_key = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
        Self::open(dir, config, master_key, FakeClock::new(T0), Arc::new(Sqlite)).await
    }

    async fn open(
        dir: TempDir,
        config: Config,
        master_key: String,
        clock: FakeClock,
        backend: Arc<dyn TestBackend>,
    ) -> Self {
        let store = backend.open(dir.path());
        let key = MasterKey::from_base64(&master_key).expect("key");
        let pool = PasswordPool::new(PasswordHasher::new().expect("hasher"), 0, 64);
        let ports = rampart_core::CorePorts {
            store: Arc::clone(&store),
            clock: Arc::new(clock.clone()),
            master: Arc::new(key),
            passwords: pool,
            notifier: Arc::new(rampart_notify::WebhookNotifier::new(
                config.breach.webhooks.clone(),
                config.breach.instance_id.clone(),
            )),
            identity: None,
        };
        let (core, _) = Core::open(
            ports,
            CoreSettings::from_config(&config),
            (Some(ADMIN.to_owned()), Some(SecretString::from(ADMIN_PASSWORD))),
        )
        .await
        .expect("core");
        let state = AppState::new(core.clone(), &config, "test", Arc::new(rampart_http::NoActivityLog));
        let router = router(state);
        Self { dir, clock, core, store, backend, router, config, master_key }
    }

    /// Closes the store and opens everything again on the same data directory, as a
    /// server restart would.
    pub async fn restart(self) -> Self {
        self.store.close().await.expect("close");
        let Self { dir, config, master_key, clock, backend, .. } = self;
        Self::open(dir, config, master_key, clock, backend).await
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub async fn send(&self, req: Request<Body>) -> TestResponse {
        self.send_from(req, "127.0.0.1:40000").await
    }

    /// Sends as if the TCP peer were `peer` (an `ip:port`).
    pub async fn send_from(&self, req: Request<Body>, peer: &str) -> TestResponse {
        let mut req = req;
        req.extensions_mut().insert(ClientAddr(peer.parse().expect("addr")));
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let raw = res.into_body().collect().await.expect("body").to_bytes().to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        TestResponse { status, headers, body, raw }
    }

    /// A JSON request; `token` becomes a bearer token.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> TestResponse {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b.header(header::CONTENT_TYPE, "application/json").body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .expect("request");
        self.send(req).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn login(&self, username: &str, password: &str) -> TestResponse {
        self.post("/api/v1/auth/login", None, serde_json::json!({"username": username, "password": password})).await
    }

    pub async fn token(&self, username: &str, password: &str) -> String {
        let res = self.login(username, password).await;
        assert_eq!(res.status, StatusCode::OK, "login {username}: {:?}", res.body);
        res.body["token"].as_str().expect("token").to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.token(ADMIN, ADMIN_PASSWORD).await
    }

    /// Creates a user with `role` (as admin) and returns a session token for them.
    pub async fn user_with_role(&self, username: &str, role: &str) -> String {
        let admin = self.admin_token().await;
        let res = self
            .post(
                "/api/v1/users",
                Some(&admin),
                serde_json::json!({"username": username, "password": USER_PASSWORD, "role": role}),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "create {username}: {:?}", res.body);
        self.token(username, USER_PASSWORD).await
    }

    /// Every audit record, oldest first.
    pub async fn audit_records(&self) -> Vec<rampart_core::AuditRecord> {
        self.store.read_audit(0, 100_000).await.expect("audit")
    }

    /// The SQLite database file, for the store crate's tamper helpers.
    pub fn raw_db(&self) -> std::path::PathBuf {
        self.data_dir().join("rampart.db")
    }

    /// Every byte of every file under the data directory (database, WAL, keys, logs).
    pub fn all_file_bytes(&self) -> Vec<(String, Vec<u8>)> {
        files_under(self.data_dir())
    }
}

pub fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p.display().to_string(), bytes));
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
