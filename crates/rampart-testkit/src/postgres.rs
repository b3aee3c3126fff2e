//! A fresh PostgreSQL database per test, on the server `./scripts/test` starts (its URL in
//! `RAMPART_TEST_POSTGRES_URL`). Without that server the tests fail: they are never skipped.

use std::sync::atomic::{AtomicU32, Ordering};

/// A database that exists as long as this value: dropped (with its connections) after.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// Where the test connects.
    pub url: String,
}

/// The server's superuser URL, or a failing test that says how to get one.
pub fn server_url() -> String {
    std::env::var("RAMPART_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("RAMPART_TEST_POSTGRES_URL is not set: run ./scripts/test, which starts PostgreSQL for the tests")
    })
}

impl PgDatabase {
    /// Creates an empty database with a name unique to this process and call.
    pub fn create() -> Self {
        Self::create_with("")
    }

    /// `create` with `options` appended to `CREATE DATABASE` (a collation, a template): a
    /// constant of the test, never outside input.
    pub fn create_with(options: &'static str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin_url = server_url();
        let name = format!("t_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let url = with_database(&admin_url, &name);
        let statement = format!("CREATE DATABASE {name} {options}");
        off_runtime(&admin_url, move |c| c.batch_execute(&statement));
        Self { admin_url, name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        off_runtime(&self.admin_url, move |c| c.batch_execute(&statement));
    }
}

/// `url` pointing at database `name` instead.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// Runs `f` on a connection to `url` on a thread of its own: the synchronous client may be
/// neither used nor dropped on an async worker.
pub fn off_runtime(url: &str, f: impl FnOnce(&mut postgres::Client) -> Result<(), postgres::Error> + Send + 'static) {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connecting to the test PostgreSQL");
        f(&mut client).expect("statement on the test PostgreSQL");
    })
    .join()
    .expect("test PostgreSQL thread");
}

/// The CA that signed the test server's TLS certificate (for `sslrootcert`), and beside it
/// an unrelated CA the server's certificate must not pass with.
pub fn server_ca() -> (String, String) {
    let ca = std::env::var("RAMPART_TEST_POSTGRES_CA").unwrap_or_else(|_| {
        panic!("RAMPART_TEST_POSTGRES_CA is not set: run ./scripts/test, which starts PostgreSQL for the tests")
    });
    let other = std::path::Path::new(&ca).with_file_name("other-ca.pem").display().to_string();
    (ca, other)
}

/// Whether the API suite runs on PostgreSQL in this run (`RAMPART_TEST_BACKEND=postgres`);
/// any other value than `sqlite` or unset is a mistake worth failing on.
pub fn api_suite_on_postgres() -> bool {
    match std::env::var("RAMPART_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("RAMPART_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}
