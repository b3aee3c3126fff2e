//! Spawning and stopping the real `rampart serve` binary in a throw-away data directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// The bootstrap admin. The password policy refuses passwords containing the username,
/// so the password must not contain "admin" in any case.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "Bench-Root-Passw0rd!x";

/// Startup includes generating a TLS certificate and hashing the admin password.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The server's own shutdown grace is 30 s; give it a little more before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(35);
const READY_PREFIX: &str = "Rampart listening on ";

/// The environment the bench gives the server, beyond the inherited one minus `RAMPART_*`.
/// This is the one place to add settings; `--server-env KEY=VALUE` appends to it (and, being
/// later, overrides it) without a code change.
pub fn server_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("RAMPART_ADMIN_PASSWORD".to_owned(), ADMIN_PASSWORD.to_owned()),
        // All load comes from one loopback address, so per-IP limits (30 logins/min by
        // default) would measure the limiter, not the server. Servers older than the
        // limiter ignore the unknown variable.
        ("RAMPART_RATE_LIMIT_ENABLED".to_owned(), "false".to_owned()),
        // Likewise breach detection: sustained reads by one user would (rightly) trip the
        // exfiltration detector and end the bench's sessions. Its cost is measured by
        // passing --server-env RAMPART_BREACH_DETECTION_ENABLED=true.
        ("RAMPART_BREACH_DETECTION_ENABLED".to_owned(), "false".to_owned()),
        // The bench's admin has no second factor; admins must otherwise enrol MFA first.
        ("RAMPART_REQUIRE_MFA_FOR_ROLES".to_owned(), "none".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    env
}

/// How the server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tls,
    /// `--insecure-http`, which the server allows on loopback only: for phases that open
    /// tens of thousands of connections, where TLS handshakes would be all that is measured.
    PlainHttp,
}

/// A running server. Killed on drop, so an error anywhere in the bench never leaves it behind.
pub struct Server {
    child: Child,
    /// `https://localhost:PORT`: the certificate names `localhost`, so TLS is verified for
    /// real. `http://127.0.0.1:PORT` for plain HTTP.
    pub base_url: String,
    /// Empty for plain HTTP.
    pub cert_pem: Vec<u8>,
    /// The listening socket, for clients that speak HTTP over a raw TCP stream.
    pub addr: SocketAddr,
    data_dir: PathBuf,
    stderr_path: PathBuf,
    // Removed when the server is dropped, after `Drop::drop` has made sure the child is dead.
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(bin: &Path, env: &[(String, String)]) -> anyhow::Result<Self> {
        Self::start_with(bin, env, Transport::Tls)
    }

    pub fn start_with(bin: &Path, env: &[(String, String)], transport: Transport) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("rampart-bench-").tempdir()?;
        let data_dir = dir.path().join("data");
        let stderr_path = dir.path().join("server.stderr.log");
        let mut child = spawn(bin, dir.path(), &data_dir, &stderr_path, env, transport)?;
        let ready = child.stdout.take().ok_or_else(|| anyhow!("server stdout not captured"));
        let url = ready.and_then(|out| wait_until_listening(out, STARTUP_TIMEOUT));
        let url = match url {
            Ok(url) => url,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                bail!("server did not start ({e:#}); its stderr:\n{log}");
            }
        };
        // Built before the fallible steps below so that an error there kills the child.
        let mut server = Self {
            child,
            base_url: String::new(),
            cert_pem: Vec::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.clone(),
            stderr_path,
            _dir: dir,
        };
        let (scheme, addr) = listening_addr(&url)?;
        server.addr = addr;
        match (transport, scheme) {
            (Transport::Tls, "https") => {
                server.base_url = format!("https://localhost:{}", addr.port());
                server.cert_pem =
                    std::fs::read(data_dir.join("tls/cert.pem")).context("reading the server certificate")?;
            }
            (Transport::PlainHttp, "http") => server.base_url = format!("http://{addr}"),
            _ => bail!("server announced {url}, not the transport the bench asked for ({transport:?})"),
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Resident memory of the server process (VmRSS), in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).context("reading /proc/PID/status")?;
        vm_rss_kib(&status).ok_or_else(|| anyhow!("no VmRSS line in /proc/{}/status", self.pid()))
    }

    /// SIGTERM, then wait for the graceful shutdown; the exit status must be success.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed: {sent}");
        }
        let status = self.wait_for_exit(STOP_TIMEOUT)?;
        if !status.success() {
            let log = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
            bail!("server exited with {status} after SIGTERM; its stderr:\n{log}");
        }
        Ok(())
    }

    fn wait_for_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("server still running {timeout:?} after SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn(
    bin: &Path,
    cwd: &Path,
    data_dir: &Path,
    stderr_path: &Path,
    env: &[(String, String)],
    transport: Transport,
) -> anyhow::Result<Child> {
    let stderr = std::fs::File::create(stderr_path)?;
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind", "127.0.0.1:0"])
        .args(if transport == Transport::PlainHttp { &["--insecure-http"][..] } else { &[] })
        // An empty working directory, so no stray ./rampart.toml is picked up.
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    // Only the bench's own settings: a RAMPART_* variable in the caller's shell would
    // silently change what is measured.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RAMPART_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.spawn().with_context(|| format!("cannot run {}", bin.display()))
}

/// Reads stdout until the ready line and returns the URL on it. The reader thread keeps
/// draining stdout afterwards so the server can never block on a full pipe.
fn wait_until_listening(stdout: ChildStdout, timeout: Duration) -> anyhow::Result<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let (false, Some(url)) = (sent, line.strip_prefix(READY_PREFIX)) {
                sent = tx.send(url.trim().to_owned()).is_ok();
            }
        }
    });
    rx.recv_timeout(timeout).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => anyhow!("no ready line within {timeout:?}"),
        mpsc::RecvTimeoutError::Disconnected => anyhow!("server closed stdout before it was ready"),
    })
}

/// `https://127.0.0.1:PORT` to `("https", 127.0.0.1:PORT)`.
fn listening_addr(listening: &str) -> anyhow::Result<(&'static str, SocketAddr)> {
    let (scheme, rest) = if let Some(rest) = listening.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = listening.strip_prefix("http://") {
        ("http", rest)
    } else {
        bail!("unexpected listening address {listening}");
    };
    let addr = rest.trim_end_matches('/').parse().with_context(|| format!("no socket address in {listening}"))?;
    Ok((scheme, addr))
}

/// The `VmRSS:  1234 kB` line of /proc/PID/status.
fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `--rampart-bin`, else `<target-dir>/release/rampart` for the first target dir that has it.
pub fn find_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    // Absolute, because the server runs in its own temporary working directory.
    let absolute = |p: &Path| std::path::absolute(p).with_context(|| format!("resolving {}", p.display()));
    if let Some(bin) = explicit {
        return absolute(&bin);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).into_iter().collect();
    // This workspace's target dir (~/.cargo/config.toml), then cargo's default.
    dirs.extend([PathBuf::from("/work/cache/target"), PathBuf::from("target")]);
    let candidates: Vec<PathBuf> = dirs.iter().map(|d| d.join("release").join("rampart")).collect();
    let found = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow!("no rampart binary at {candidates:?}; run `cargo build --release -p rampart` or pass --rampart-bin")
    })?;
    absolute(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ready_line_and_vm_rss() {
        let (scheme, addr) = listening_addr("https://127.0.0.1:8443").unwrap();
        assert_eq!((scheme, addr.port()), ("https", 8443));
        assert_eq!(listening_addr("http://127.0.0.1:80").unwrap().0, "http");
        assert!(listening_addr("ftp://127.0.0.1:21").is_err());
        assert_eq!(vm_rss_kib("Name:\trampart\nVmHWM:\t  9 kB\nVmRSS:\t   12345 kB\n"), Some(12345));
        assert_eq!(vm_rss_kib("Name: x\n"), None);
    }
}
