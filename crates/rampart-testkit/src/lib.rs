//! Test harness: a real store (SQLite in a temp dir, or PostgreSQL), the real router driven in-process,
//! and a fake clock. Dev-dependency only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod conformance;
pub mod ldap;
pub mod oidc;
pub mod openbao;
pub mod postgres;
pub mod redis;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use rampart_config::Config;
use rampart_core::{Core, CoreSettings, FakeClock, MasterKey, PasswordPool};
use rampart_crypto::PasswordHasher;
use rampart_http::{router, AppState, ClientAddr};
use rampart_store::tamper::AuditEdit;
use rampart_store::Store;
use rampart_store_postgres::{PostgresOptions, PostgresStore};
use rampart_store_sqlite::tamper as sqlite_tamper;
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

/// The backend the API tests run on: SQLite in the data directory, or a fresh PostgreSQL
/// database when `RAMPART_TEST_BACKEND=postgres` (`./scripts/test` runs the API suite both
/// ways).
pub enum TestBackend {
    /// The embedded default: `rampart.db` in the data directory.
    Sqlite,
    /// A database of its own on the test server, dropped with the app.
    Postgres(postgres::PgDatabase),
}

/// The node name of a `TestApp` on PostgreSQL: its audit chain.
pub const TEST_NODE: &str = "node-1";

impl TestBackend {
    /// The backend `RAMPART_TEST_BACKEND` names (SQLite when unset).
    pub fn from_env() -> Self {
        if postgres::api_suite_on_postgres() {
            Self::Postgres(postgres::PgDatabase::create())
        } else {
            Self::Sqlite
        }
    }

    /// Opens (or reopens, for a restart) the store of `data_dir`.
    async fn open(&self, data_dir: &Path) -> Arc<dyn Store> {
        match self {
            Self::Sqlite => Arc::new(SqliteStore::open(data_dir).expect("store")),
            Self::Postgres(db) => {
                let options = PostgresOptions { node: TEST_NODE.to_owned(), ..PostgresOptions::default() };
                Arc::new(PostgresStore::open(&db.url, options).await.expect("store"))
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Where the login delay is kept, as `App::open` chooses it for this backend: memory on
    /// SQLite, the database on PostgreSQL.
    pub fn login_delay(&self) -> rampart_core::ThrottleBackend {
        match self {
            Self::Sqlite => rampart_core::ThrottleBackend::Memory,
            Self::Postgres(_) => rampart_core::ThrottleBackend::Shared,
        }
    }
}

/// What someone with access to the database (its files, or its credentials) could do behind
/// the store's back, on whichever backend the app runs on.
pub enum Tamper {
    Sqlite(std::path::PathBuf),
    Postgres(rampart_store_postgres::tamper::Database),
}

impl Tamper {
    pub fn document_body(&self, id: &str) -> Vec<u8> {
        match self {
            Self::Sqlite(db) => sqlite_tamper::document_body(db, id),
            Self::Postgres(db) => db.document_body(id),
        }
        .expect("document body")
    }

    /// Flips one bit in the middle of a document's stored body.
    pub fn flip_document_bit(&self, id: &str) {
        let mut body = self.document_body(id);
        let mid = body.len() / 2;
        if let Some(b) = body.get_mut(mid) {
            *b ^= 0x01;
        }
        match self {
            Self::Sqlite(db) => sqlite_tamper::set_document_body(db, id, &body),
            Self::Postgres(db) => db.set_document_body(id, &body),
        }
        .expect("set document body");
    }

    /// Transplants one document's stored body onto another.
    pub fn copy_document_body(&self, from: &str, to: &str) {
        match self {
            Self::Sqlite(db) => sqlite_tamper::copy_document_body(db, from, to),
            Self::Postgres(db) => db.copy_document_body(from, to),
        }
        .expect("copy document body");
    }

    pub fn edit_audit(&self, edit: &AuditEdit) {
        match self {
            Self::Sqlite(db) => sqlite_tamper::edit_audit(db, edit),
            Self::Postgres(db) => db.edit_audit(edit),
        }
        .expect("edit audit");
    }

    /// While on, every audit append fails as a full or broken disk would.
    pub fn fail_audit_appends(&self, on: bool) {
        match self {
            Self::Sqlite(db) => sqlite_tamper::fail_audit_appends(db, on),
            Self::Postgres(db) => db.fail_audit_appends(on),
        }
        .expect("audit append trap");
    }

    /// Another client locks the database (SQLite) or the collections table (PostgreSQL)
    /// until the guard is dropped: writes cannot be made meanwhile.
    pub fn hold_write_lock(&self) -> WriteLock {
        match self {
            Self::Sqlite(db) => WriteLock::Sqlite(hold_sqlite_lock(db)),
            Self::Postgres(db) => WriteLock::Postgres(db.hold_write_lock().expect("lock")),
        }
    }

    /// The queued webhook deliveries as stored: (endpoint, event id, payload JSON text).
    pub fn webhook_outbox(&self) -> Vec<(String, String, String)> {
        match self {
            Self::Sqlite(db) => sqlite_tamper::webhook_outbox(db),
            Self::Postgres(db) => db.webhook_outbox(),
        }
        .expect("webhook outbox")
    }
}

pub struct TestApp {
    pub dir: TempDir,
    pub clock: FakeClock,
    pub core: Core,
    pub store: Arc<dyn Store>,
    pub backend: Arc<TestBackend>,
    pub router: axum::Router,
    pub config: Config,
    master_key: String,
    /// The re-encryption worker a serving node runs (this app is the only node).
    _reencrypt: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
        Self::open(dir, config, master_key, FakeClock::new(T0), Arc::new(TestBackend::from_env())).await
    }

    async fn open(
        dir: TempDir,
        config: Config,
        master_key: String,
        clock: FakeClock,
        backend: Arc<TestBackend>,
    ) -> Self {
        let store = backend.open(dir.path()).await;
        let key = MasterKey::from_base64(&master_key).expect("key");
        let pool = PasswordPool::new(PasswordHasher::new().expect("hasher"), 0, 64);
        let ports = rampart_core::CorePorts {
            store: Arc::clone(&store),
            clock: Arc::new(clock.clone()),
            master: Arc::new(key),
            passwords: pool,
            notifier: Arc::new(rampart_notify::WebhookNotifier::new(
                config.breach.webhooks.clone(),
                config.privacy.service_providers.clone(),
                config.breach.instance_id.clone(),
            )),
            identity: None,
            ldap: config.auth.ldap.as_ref().map(|l| {
                Arc::new(rampart_ldap::LdapIdentity::new(l).expect("ldap provider"))
                    as Arc<dyn rampart_core::IdentityProvider>
            }),
            login_delay: backend.login_delay(),
            oidc: config.auth.oidc.as_ref().map(|o| rampart_oidc::open(o).expect("oidc settings")),
        };
        let (core, _) = Core::open(
            ports,
            CoreSettings::from_config(&config),
            (Some(ADMIN.to_owned()), Some(SecretString::from(ADMIN_PASSWORD))),
        )
        .await
        .expect("core");
        let first_connect = std::time::Duration::from_secs(2);
        let limits =
            rampart_limits_redis::open_limiter(&config.rate_limit, &core, first_connect).await.expect("redis url");
        let ports = rampart_http::AppPorts {
            activity: Arc::new(rampart_http::NoActivityLog),
            backups: Arc::new(rampart_http::NoBackups),
            limits,
            lease: Arc::new(rampart_store::SingleNode),
        };
        let state = AppState::assemble(core.clone(), &config, "test", ports);
        let router = router(state);
        let worker = core.clone();
        let reencrypt = tokio::spawn(async move {
            worker.keys().keep_reencrypting(Arc::new(rampart_store::SingleNode)).await;
        });
        Self { dir, clock, core, store, backend, router, config, master_key, _reencrypt: AbortOnDrop(reencrypt) }
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

    /// Edits behind the store's back, on the backend this app runs on.
    pub fn tamper(&self) -> Tamper {
        match &*self.backend {
            TestBackend::Sqlite => Tamper::Sqlite(self.data_dir().join("rampart.db")),
            TestBackend::Postgres(db) => Tamper::Postgres(rampart_store_postgres::tamper::Database {
                url: db.url.clone(),
                node: TEST_NODE.to_owned(),
            }),
        }
    }

    /// Every byte the deployment keeps: every file under the data directory (database, WAL,
    /// keys, logs) and, on PostgreSQL, every row of every table as the server holds it.
    pub fn all_stored_bytes(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = files_under(self.data_dir());
        if let Tamper::Postgres(db) = self.tamper() {
            out.extend(db.table_bytes().expect("table bytes"));
        }
        out
    }
}

/// A lock another client holds on the database, released when dropped.
pub enum WriteLock {
    Sqlite(std::process::Child),
    Postgres(rampart_store_postgres::tamper::HeldLock),
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        if let Self::Sqlite(child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An exclusive lock on a SQLite database from a separate process, independent of the
/// store's own connections.
fn hold_sqlite_lock(path: &Path) -> std::process::Child {
    std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3,time\nc=sqlite3.connect({:?},isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked',flush=True)\ntime.sleep(30)",
            path.display().to_string()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map(|mut child| {
            use std::io::Read;
            let mut buf = [0u8; 6];
            let _ = child.stdout.as_mut().map(|o| o.read_exact(&mut buf));
            child
        })
        .expect("python3 is on every test machine")
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
