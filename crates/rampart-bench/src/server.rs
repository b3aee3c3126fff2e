//! Spawning and stopping the real `rampart serve` binary in a throw-away data directory.

use std::io::{BufRead, BufReader};
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
    ];
    env.extend(extra.iter().cloned());
    env
}

/// A running server. Killed on drop, so an error anywhere in the bench never leaves it behind.
pub struct Server {
    child: Child,
    /// `https://localhost:PORT`: the certificate names `localhost`, so TLS is verified for real.
    pub base_url: String,
    pub cert_pem: Vec<u8>,
    stderr_path: PathBuf,
    // Removed when the server is dropped, after `Drop::drop` has made sure the child is dead.
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(bin: &Path, env: &[(String, String)]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("rampart-bench-").tempdir()?;
        let data_dir = dir.path().join("data");
        let stderr_path = dir.path().join("server.stderr.log");
        let mut child = spawn(bin, dir.path(), &data_dir, &stderr_path, env)?;
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
        let mut server = Self { child, base_url: String::new(), cert_pem: Vec::new(), stderr_path, _dir: dir };
        server.base_url = localhost_url(&url)?;
        server.cert_pem = std::fs::read(data_dir.join("tls/cert.pem")).context("reading the server certificate")?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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
) -> anyhow::Result<Child> {
    let stderr = std::fs::File::create(stderr_path)?;
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind", "127.0.0.1:0"])
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

/// `https://127.0.0.1:PORT` to `https://localhost:PORT`.
fn localhost_url(listening: &str) -> anyhow::Result<String> {
    let Some(addr) = listening.strip_prefix("https://") else {
        bail!("server is not serving TLS: {listening}");
    };
    let port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    let port = port.ok_or_else(|| anyhow!("no port in {listening}"))?;
    Ok(format!("https://localhost:{port}"))
}

/// `--rampart-bin`, else `<target-dir>/release/rampart` for the first target dir that has it.
pub fn find_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(bin) = explicit {
        return Ok(bin);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).into_iter().collect();
    // This workspace's target dir (~/.cargo/config.toml), then cargo's default.
    dirs.extend([PathBuf::from("/work/cache/target"), PathBuf::from("target")]);
    let candidates: Vec<PathBuf> = dirs.iter().map(|d| d.join("release").join("rampart")).collect();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        anyhow!("no rampart binary at {candidates:?}; run `cargo build --release -p rampart` or pass --rampart-bin")
    })
}
