//! The few Rampart API calls the bench needs: clients, login, collections and documents.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use reqwest::{Certificate, Client, ClientBuilder, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use crate::server::{Server, ADMIN_PASSWORD, ADMIN_USER};

/// An admin session on one server: where it is, which certificate to trust, a client and
/// the admin's bearer token.
#[derive(Clone)]
pub struct Session {
    pub base_url: String,
    pub cert: Option<Certificate>,
    pub client: Client,
    pub token: String,
}

impl Session {
    pub async fn login(server: &Server) -> anyhow::Result<Self> {
        let (base_url, cert) = (server.base_url.clone(), server.cert.clone());
        let client = builder(&cert).build()?;
        let token = text(&login(&client, &base_url).await?, "token")?;
        Ok(Self { base_url, cert, client, token })
    }

    /// The same admin logged in again with `client`, as a new session.
    pub async fn login_with(&self, client: Client) -> anyhow::Result<Self> {
        let token = text(&login(&client, &self.url("")).await?, "token")?;
        Ok(Self { client, token, ..self.clone() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A fresh client with its own connection pool. Each bench worker gets one, so the
    /// workers hold separate keep-alive connections as separate users' clients would. The
    /// timeout is generous: under a login flood a request may queue behind many Argon2
    /// hashes, and that should show up as latency, not as an error.
    pub fn client(&self) -> anyhow::Result<Client> {
        builder(&self.cert).build().context("building the HTTP client")
    }

    pub fn clients(&self, n: usize) -> anyhow::Result<Vec<Client>> {
        (0..n).map(|_| self.client()).collect()
    }

    /// A client whose connections come from `source` (any 127.0.0.0/8 address is local on
    /// Linux), so the server sees a distinct client address. `localhost` is pinned to
    /// 127.0.0.1: an IPv4 source cannot reach ::1.
    pub fn client_from(&self, source: IpAddr) -> anyhow::Result<Client> {
        let url = reqwest::Url::parse(&self.base_url)?;
        let port = url.port_or_known_default().ok_or_else(|| anyhow!("no port in {url}"))?;
        let builder = builder(&self.cert).local_address(source);
        builder
            .resolve(url.host_str().unwrap_or_default(), SocketAddr::from(([127, 0, 0, 1], port)))
            .build()
            .context("building the HTTP client")
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        send_json(self.client.get(self.url(path)).bearer_auth(&self.token), StatusCode::OK).await
    }

    pub async fn post(&self, path: &str, body: &Value, want: StatusCode) -> anyhow::Result<Value> {
        send_json(self.client.post(self.url(path)).bearer_auth(&self.token).json(body), want).await
    }

    /// `encrypted: None` leaves the server's default (sealed with AES-256-GCM).
    pub async fn create_collection(&self, name: &str, encrypted: Option<bool>) -> anyhow::Result<()> {
        let mut body = json!({"name": name, "indexes": ["k"]});
        if let Some(encrypted) = encrypted {
            body["encrypted"] = json!(encrypted);
        }
        self.post("/api/v1/collections", &body, StatusCode::CREATED)
            .await
            .with_context(|| format!("creating {name}"))?;
        Ok(())
    }

    /// Inserts one document and returns its id.
    pub async fn insert(&self, collection: &str, data: &Value) -> anyhow::Result<String> {
        let path = format!("/api/v1/collections/{collection}/documents");
        text(&self.post(&path, &json!({ "data": data }), StatusCode::CREATED).await?, "id")
    }

    /// Creates `collection` and fills it with `count` documents of about `bytes` each (`None`:
    /// the small document); returns their paths.
    pub async fn fill(
        &self,
        collection: &str,
        encrypted: Option<bool>,
        count: usize,
        bytes: Option<usize>,
    ) -> anyhow::Result<Vec<String>> {
        self.create_collection(collection, encrypted).await?;
        let mut paths = Vec::with_capacity(count);
        for i in 0..count {
            let doc = bytes.map_or_else(|| small_doc(i), |bytes| random_document(i as u64, bytes));
            let id = self.insert(collection, &doc).await.context("inserting a bench document")?;
            paths.push(format!("/api/v1/collections/{collection}/documents/{id}"));
        }
        Ok(paths)
    }
}

/// The HTTP version ALPN settles on with `server`, for the report.
pub async fn http_version(server: &Server) -> anyhow::Result<String> {
    let client = builder(&server.cert).build()?;
    Ok(format!("{:?}", client.get(format!("{}/health", server.base_url)).send().await?.version()))
}

fn builder(cert: &Option<Certificate>) -> ClientBuilder {
    cert.iter().cloned().fold(Client::builder().timeout(Duration::from_secs(30)), ClientBuilder::add_root_certificate)
}

/// Sends and reads the whole body (a request is not done until then); non-2xx is an error.
pub async fn send_ok(req: RequestBuilder) -> anyhow::Result<()> {
    let res = req.send().await?;
    let status = res.status();
    res.bytes().await?;
    if !status.is_success() {
        bail!("HTTP {status}");
    }
    Ok(())
}

pub async fn send_json(req: RequestBuilder, want: StatusCode) -> anyhow::Result<Value> {
    let res = req.send().await?;
    let status = res.status();
    let body = res.text().await?;
    if status != want {
        bail!("expected HTTP {want}, got {status}: {body}");
    }
    serde_json::from_str(&body).context("response is not JSON")
}

/// The admin's login at the server at `base_url`: `token`, `refresh_token`.
pub async fn login(client: &Client, base_url: &str) -> anyhow::Result<Value> {
    let body = json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD});
    send_json(client.post(format!("{base_url}/api/v1/auth/login")).json(&body), StatusCode::OK).await.context("login")
}

/// `field` of a JSON response, as a string.
pub fn text(body: &Value, field: &str) -> anyhow::Result<String> {
    body[field].as_str().map(str::to_owned).ok_or_else(|| anyhow!("response has no {field}: {body}"))
}

/// The small document of the read phases: about 57 bytes of JSON.
pub fn small_doc(i: usize) -> Value {
    json!({"k": format!("key-{i}"), "n": i, "text": "a small benchmark document"})
}

/// A document of about `bytes` bytes of JSON with pseudo-random text, deterministic in
/// `seed`: varied enough that no page compresses or deduplicates to nothing.
pub fn random_document(seed: u64, bytes: usize) -> Value {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut text = String::with_capacity(bytes + 16);
    while text.len() < bytes {
        for _ in 0..3 + next() % 9 {
            text.push(char::from(ALPHABET[(next() % ALPHABET.len() as u64) as usize]));
        }
        text.push(' ');
    }
    let readings: Vec<u64> = (0..8).map(|_| next() % 100_000).collect();
    json!({"k": format!("doc-{seed}"), "n": seed, "readings": readings, "body": text})
}
