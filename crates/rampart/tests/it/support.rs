use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_PASSWORD: &str = "E2e-Canary-Secret-93!";

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rampart"));
    c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

/// A running `rampart serve` with its own data dir; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub stderr_path: PathBuf,
    pub stdout_text: String,
    /// The certificate it presents: generated in the data directory, or the one it was given.
    pub cert: PathBuf,
}

pub struct ServerOpts<'a> {
    pub data_dir: &'a Path,
    pub env: Vec<(&'a str, String)>,
    pub extra_args: Vec<String>,
}

impl<'a> ServerOpts<'a> {
    pub fn new(data_dir: &'a Path) -> Self {
        Self {
            data_dir,
            env: vec![
                ("RAMPART_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
                // The default (admins must enrol MFA first) is tested on its own.
                ("RAMPART_REQUIRE_MFA_FOR_ROLES", "none".to_owned()),
            ],
            extra_args: vec![],
        }
    }
}

pub fn start(opts: ServerOpts<'_>) -> Server {
    let stderr_path = opts.data_dir.with_extension("stderr.log");
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&stderr_path).unwrap();
    let mut cmd = bin();
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(opts.data_dir)
        .arg("--bind")
        .arg("127.0.0.1:0")
        .args(&opts.extra_args)
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn rampart");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if let Some(url) = line.strip_prefix("Rampart listening on ") {
                let _ = tx.send(Ok((url.trim().to_owned(), text.clone())));
            }
        }
        let _ = tx.send(Err(text));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok((url, stdout_text))) => {
            let base = url.replace("127.0.0.1", "localhost");
            let cert = opts
                .env
                .iter()
                .find(|(k, _)| *k == "RAMPART_TLS_CERT")
                .map_or_else(|| opts.data_dir.join("tls/cert.pem"), |(_, v)| PathBuf::from(v));
            Server { child, base, data_dir: opts.data_dir.to_owned(), stderr_path, stdout_text, cert }
        }
        other => {
            let _ = child.kill();
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("server did not start: {other:?}\nstderr:\n{err}");
        }
    }
}

impl Server {
    pub fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.cert).unwrap();
        reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn login(&self, client: &reqwest::Client, user: &str, pw: &str) -> String {
        let res = client
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": user, "password": pw}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    /// GET `path` with a bearer token; the body as JSON.
    pub async fn get_json(&self, token: &str, path: impl AsRef<str>) -> serde_json::Value {
        let res = self.client().get(self.url(path.as_ref())).bearer_auth(token).send().await.unwrap();
        res.json().await.unwrap()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if !status.success() {
                    eprintln!(
                        "server exited with {status}; stderr:\n{}",
                        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
                    );
                }
                return status;
            }
            assert!(Instant::now() < deadline, "server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

pub fn contains(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w == n)
}

/// Creates collection `n` and inserts `count` documents `{"i": i}`, every other one owned by
/// one of 50 subjects (so both collection and subject keys are in use); their ids in order.
pub async fn insert_numbered(server: &Server, token: &str, count: usize) -> Vec<String> {
    let c = server.client();
    c.post(server.url("/api/v1/collections"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": "n"}))
        .send()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..count {
        let subject = if i % 2 == 0 { serde_json::Value::Null } else { serde_json::json!(format!("s{}", i % 50)) };
        let res: serde_json::Value = c
            .post(server.url("/api/v1/collections/n/documents"))
            .bearer_auth(token)
            .json(&serde_json::json!({"data": {"i": i}, "subject_id": subject}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(res["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Waits (up to a minute) for the re-encryption to finish: only the new keys remain (the
/// collection's and the small-secrets key; one per subject), and every document of
/// `insert_numbered` reads back.
pub async fn await_reencrypted(server: &Server, token: &str, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let keys = server.get_json(token, "/api/v1/admin/keys").await;
        if keys["reencryption"].is_null() {
            assert_eq!(keys["data_keys"]["collection"], 2, "old collection key retired: {keys}");
            assert_eq!(keys["data_keys"]["subject"], 25, "old subject keys retired: {keys}");
            break;
        }
        assert!(Instant::now() < deadline, "re-encryption never finished: {keys}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, id) in ids.iter().enumerate() {
        let doc = server.get_json(token, format!("/api/v1/collections/n/documents/{id}")).await;
        assert_eq!(doc["data"]["i"], i, "{id}: {doc}");
    }
}
