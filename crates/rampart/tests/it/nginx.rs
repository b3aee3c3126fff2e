//! A real nginx (Debian package, installed by scripts/test) in front of Rampart, using the
//! proxy block of docs/nginx.conf: the address the rate limiter and the audit log see is
//! the real client's, and a client talking to Rampart directly cannot spoof it.

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{start, ServerOpts, ADMIN_PASSWORD};

fn nginx_binary() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("nginx is not installed: run ./scripts/test, which installs it");
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) struct Nginx(Child);

impl Drop for Nginx {
    /// SIGTERM, so the master takes its workers down with it (SIGKILL would orphan them).
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The documented proxy block, passing to `target` (`https://rampart` is the upstream of the
/// documentation) and trusting `cert`.
fn proxy_block(target: &str, cert: &Path) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/nginx.conf")).unwrap();
    let start = doc.find("# BEGIN rampart-proxy").unwrap();
    let end = doc.find("# END rampart-proxy").unwrap();
    doc[start..end]
        .replace("https://rampart", target)
        .replace("/var/lib/rampart/tls/cert.pem", &cert.display().to_string())
}

fn start_nginx(dir: &Path, port: u16, rampart_port: u16, data: &Path) -> Nginx {
    let cert = data.join("tls/cert.pem");
    run_nginx(dir, port, "", &proxy_block(&format!("https://127.0.0.1:{rampart_port}"), &cert), data)
}

/// The upstream block of docs/nginx-two-nodes.conf, pointed at `ports`.
pub(crate) fn upstream_block(ports: &[u16]) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/nginx-two-nodes.conf")).unwrap();
    let start = doc.find("# BEGIN rampart-upstream").unwrap();
    let end = doc.find("# END rampart-upstream").unwrap();
    let mut block = doc[start..end].to_owned();
    for (doc_addr, port) in ["10.0.0.11:9090", "10.0.0.12:9090"].iter().zip(ports) {
        block = block.replace(doc_addr, &format!("127.0.0.1:{port}"));
    }
    block
}

/// docs/nginx.conf's proxy block in front of the `rampart` upstream of several nodes,
/// trusting `certs` (every node's certificate).
pub(crate) fn start_nginx_upstream(dir: &Path, port: u16, ports: &[u16], certs: &Path, edge: &Path) -> Nginx {
    run_nginx(dir, port, &upstream_block(ports), &proxy_block("https://rampart", certs), edge)
}

/// nginx on `port`, terminating TLS with `edge`'s generated certificate, with `http_extra`
/// in its `http` block and `location` in its server.
fn run_nginx(dir: &Path, port: u16, http_extra: &str, location: &str, edge: &Path) -> Nginx {
    let cert = edge.join("tls/cert.pem");
    let key = edge.join("tls/key.pem");
    let user = if running_as_root() { "user root;" } else { "" };
    let conf = format!(
        "{user}\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
         fastcgi_temp_path {dir}/fcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
         {http_extra}\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
         {block}\n  }}\n}}\n",
        dir = dir.display(),
        cert = cert.display(),
        key = key.display(),
        block = location,
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(nginx_binary())
        .args(["-e", "stderr", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start; see {}/error.log", dir.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx(child)
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

pub(crate) fn client_from(source: &str, cert: &Path) -> reqwest::Client {
    let pem = std::fs::read(cert).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

pub(crate) async fn failed_login(
    client: &reqwest::Client,
    base: &str,
    user: &str,
    xff: Option<&str>,
) -> reqwest::Response {
    let mut req = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": user, "password": "Wrong-Passw0rd!!"}));
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x).header("x-real-ip", x);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_the_real_client_address_is_seen_and_cannot_be_spoofed_directly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut opts = ServerOpts::new(&data);
    opts.env.push(("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32".into()));
    let server = start(opts);
    let rampart_port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let nginx_dir = tmp.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let port = free_port();
    let _nginx = start_nginx(&nginx_dir, port, rampart_port, &data);
    let via_nginx = format!("https://localhost:{port}");
    let cert = data.join("tls/cert.pem");

    // Two clients behind nginx, each trying to pass itself off as someone else.
    let a = client_from("127.0.0.2", &cert);
    let b = client_from("127.0.0.3", &cert);
    let ra = failed_login(&a, &via_nginx, "through-a", Some("203.0.113.9")).await;
    assert_eq!(ra.status(), 401);
    assert_eq!(ra.headers()["x-ratelimit-remaining"], "29");
    let ra2 = failed_login(&a, &via_nginx, "through-a2", None).await;
    assert_eq!(ra2.headers()["x-ratelimit-remaining"], "28", "same client, same bucket");
    let rb = failed_login(&b, &via_nginx, "through-b", None).await;
    assert_eq!(rb.headers()["x-ratelimit-remaining"], "29", "another client has its own bucket, not nginx's");

    // A client talking to Rampart directly cannot choose its address.
    let direct = client_from("127.0.0.4", &cert);
    let rd = failed_login(&direct, &server.base, "direct", Some("127.0.0.2")).await;
    assert_eq!(rd.headers()["x-ratelimit-remaining"], "29");

    let admin = server.login(&server.client(), "admin", ADMIN_PASSWORD).await;
    let records: Value = server.get_json(&admin, "/api/v1/admin/audit?event_type=login&success=false").await;
    let ip_of = |user: &str| {
        records["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["user"] == user)
            .map(|r| r["ip_address"].clone())
            .unwrap()
    };
    assert_eq!(ip_of("through-a"), "127.0.0.2");
    assert_eq!(ip_of("through-b"), "127.0.0.3");
    assert_eq!(ip_of("direct"), "127.0.0.4");
}
