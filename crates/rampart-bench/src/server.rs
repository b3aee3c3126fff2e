//! Spawning and stopping the real `rampart serve` binary in a throw-away data directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::task::block_in_place;

use crate::report::Report;
use crate::Cli;

/// The bootstrap admin. The password policy refuses passwords containing the username,
/// so the password must not contain "admin" in any case.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "Bench-Root-Passw0rd!x";

/// How the server listens: TLS, or `--insecure-http` (loopback only) for phases that open
/// tens of thousands of connections, where TLS handshakes would be all that is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tls,
    PlainHttp,
}

/// What a suite wants of a server: what it is for, its own settings, how it listens.
pub type Spec<'a> = (&'a str, &'a [(&'a str, &'a str)], Transport);

/// The environment of every server, beyond the inherited one minus `RAMPART_*`: the bench's
/// settings, then the suite's `specific` ones, then `--server-env` (later ones override).
fn server_env(cli: &Cli, specific: Vec<(String, String)>) -> Vec<(String, String)> {
    let bench = [
        ("RAMPART_ADMIN_PASSWORD", ADMIN_PASSWORD),
        // All load comes from one loopback address, so per-IP limits (30 logins/min by
        // default) would measure the limiter, not the server. Older servers ignore it.
        ("RAMPART_RATE_LIMIT_ENABLED", "false"),
        // Likewise the per-address connection cap (64): the 64-loop phases plus the clients
        // of earlier phases still closing would otherwise be reset by it.
        ("RAMPART_MAX_CONNECTIONS_PER_IP", "1024"),
        // Likewise breach detection: sustained reads by one user would (rightly) trip the
        // exfiltration detector and end the bench's sessions.
        ("RAMPART_BREACH_DETECTION_ENABLED", "false"),
        // The bench's admin has no second factor; admins must otherwise enrol MFA first.
        ("RAMPART_REQUIRE_MFA_FOR_ROLES", "none"),
    ];
    let env = bench.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).chain(specific);
    env.chain(cli.server_env.iter().cloned()).collect()
}

/// A child process, stopped on drop so that an error anywhere in the bench leaves none behind.
pub struct Proc(pub Child);

impl Proc {
    /// SIGTERM (nginx's master stops its workers only when asked; SIGKILL would orphan
    /// them), then wait for the exit.
    fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed: {sent}");
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("process {pid} still running {timeout:?} after SIGTERM")
    }
}

impl Drop for Proc {
    /// SIGKILL if SIGTERM has not ended it within 5 s.
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) && self.terminate(Duration::from_secs(5)).is_err() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A running server. Fields drop in order: the process is gone before its directory.
pub struct Server {
    proc: Proc,
    /// `https://localhost:PORT`: the certificate names `localhost`, so TLS is verified for
    /// real. `http://127.0.0.1:PORT` for plain HTTP.
    pub base_url: String,
    /// The certificate to trust; `None` for plain HTTP.
    pub cert: Option<reqwest::Certificate>,
    /// The listening socket, for clients that speak HTTP over a raw TCP stream.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    /// What it was started with, for `restart`.
    bin: PathBuf,
    env: Vec<(String, String)>,
    transport: Transport,
}

impl Server {
    /// The bench's server for `what`, with its `specific` settings.
    pub fn start(cli: &Cli, what: &str, specific: &[(&str, &str)], transport: Transport) -> anyhow::Result<Self> {
        let specific = specific.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self::start_with(cli, what, specific, transport)
    }

    /// `start` with settings computed at run time.
    pub fn start_with(
        cli: &Cli,
        what: &str,
        specific: Vec<(String, String)>,
        transport: Transport,
    ) -> anyhow::Result<Self> {
        eprintln!("starting {} ({what})", cli.bin().display());
        let env = server_env(cli, specific);
        let dir = tempfile::Builder::new().prefix("rampart-bench-").tempdir()?;
        block_in_place(|| Self::launch(cli.bin(), env, transport, dir))
            .with_context(|| format!("starting the server ({what})"))
    }

    /// Stops the server (gracefully) and starts it again on the same data directory: a fresh
    /// process, for measuring memory from a clean start.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let status = block_in_place(|| self.proc.terminate(Duration::from_secs(35)))?;
        if !status.success() {
            bail!("server exited with {status} after SIGTERM; its stderr:\n{}", stderr_log(self.dir.path()));
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::Builder::new().prefix("rampart-bench-swap-").tempdir()?);
        let again = block_in_place(|| Self::launch(&self.bin, self.env.clone(), self.transport, dir))?;
        *self = again;
        Ok(())
    }

    fn launch(
        bin: &Path,
        env: Vec<(String, String)>,
        transport: Transport,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.arg("serve").arg("--data-dir").arg(dir.path().join("data")).args(["--bind", "127.0.0.1:0"]);
        cmd.args((transport == Transport::PlainHttp).then_some("--insecure-http"))
            // An empty working directory, so no stray ./rampart.toml is picked up.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.path().join("server.stderr.log"))?);
        for (key, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("RAMPART_")) {
            cmd.env_remove(key);
        }
        let mut proc =
            Proc(cmd.envs(env.iter().cloned()).spawn().with_context(|| format!("cannot run {}", bin.display()))?);
        let stdout = proc.0.stdout.take().ok_or_else(|| anyhow!("server stdout not captured"));
        let url = match stdout.and_then(wait_until_listening) {
            Ok(url) => url,
            Err(e) => bail!("server did not start ({e:#}); its stderr:\n{}", stderr_log(dir.path())),
        };
        let parsed = reqwest::Url::parse(&url)?;
        let ip = parsed.host_str().unwrap_or_default().parse().with_context(|| format!("no address in {url}"))?;
        let addr = SocketAddr::new(ip, parsed.port_or_known_default().unwrap_or_default());
        let (base_url, cert) = match (transport, parsed.scheme()) {
            (Transport::Tls, "https") => {
                // The generated certificate, or the one the server was given.
                let given = env.iter().find(|(k, _)| k == "RAMPART_TLS_CERT").map(|(_, v)| PathBuf::from(v));
                let path = given.unwrap_or_else(|| dir.path().join("data/tls/cert.pem"));
                let pem = std::fs::read(path).context("reading the certificate")?;
                (format!("https://localhost:{}", addr.port()), Some(reqwest::Certificate::from_pem(&pem)?))
            }
            (Transport::PlainHttp, "http") => (format!("http://{addr}"), None),
            _ => bail!("server announced {url}, not the transport the bench asked for ({transport:?})"),
        };
        Ok(Self { proc, base_url, cert, addr, dir, bin: bin.to_owned(), env, transport })
    }

    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// SIGTERM, then wait for the graceful shutdown (the server's own grace is 30 s); the
    /// exit status must be success.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let status = block_in_place(|| self.proc.terminate(Duration::from_secs(35)))?;
        if !status.success() {
            bail!("server exited with {status} after SIGTERM; its stderr:\n{}", stderr_log(self.dir.path()));
        }
        Ok(())
    }
}

fn stderr_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.stderr.log")).unwrap_or_default()
}

/// Starts one server per spec, runs `body` on them and stops them all whatever happened. A
/// measurement error wins; a failure to stop leaves the figures standing beside it. Unless
/// the suite named its transport, the report names the HTTP version of the last server.
pub async fn with_servers(
    cli: &Cli,
    specs: &[Spec<'_>],
    body: impl AsyncFnOnce(&[Server]) -> anyhow::Result<Report>,
) -> anyhow::Result<Report> {
    let servers =
        specs.iter().map(|(what, env, t)| Server::start(cli, what, env, *t)).collect::<Result<Vec<_>, _>>()?;
    let outcome = match (body(&servers).await, servers.last()) {
        (Ok(report), Some(last)) if report.transport.is_empty() => {
            crate::api::http_version(last).await.map(|t| report.over(t))
        }
        (outcome, _) => outcome,
    };
    let stopped: Vec<anyhow::Result<()>> = servers.into_iter().map(Server::stop).collect();
    let mut report = outcome?;
    report.stop_error = stopped.into_iter().find_map(Result::err).map(|e| e.context("stopping the server"));
    Ok(report)
}

/// Reads stdout until the ready line and returns the URL on it (startup includes making a
/// TLS certificate and hashing the admin password). The reader thread keeps draining
/// stdout afterwards so the server can never block on a full pipe.
fn wait_until_listening(stdout: std::process::ChildStdout) -> anyhow::Result<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        if let Some(url) = lines.by_ref().find_map(|line| line.strip_prefix("Rampart listening on ").map(str::to_owned))
        {
            let _ = tx.send(url.trim().to_owned());
        }
        lines.for_each(drop);
    });
    rx.recv_timeout(Duration::from_secs(60)).map_err(|e| match e {
        RecvTimeoutError::Timeout => anyhow!("no ready line within 60 s"),
        RecvTimeoutError::Disconnected => anyhow!("server closed stdout before it was ready"),
    })
}

/// `--rampart-bin`, else `<target-dir>/release/rampart` for the first target dir that has it.
pub fn find_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    // Absolute, because the server runs in its own temporary working directory.
    let absolute = |p: &Path| std::path::absolute(p).with_context(|| format!("resolving {}", p.display()));
    if let Some(bin) = explicit {
        return absolute(bin);
    }
    // Then this workspace's target dir (~/.cargo/config.toml), then cargo's default.
    let dirs = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).into_iter();
    let candidates: Vec<PathBuf> =
        dirs.chain(["/work/cache/target", "target"].map(PathBuf::from)).map(|d| d.join("release/rampart")).collect();
    let found = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow!("no rampart binary at {candidates:?}; run `cargo build --release -p rampart` or pass --rampart-bin")
    })?;
    absolute(found)
}
