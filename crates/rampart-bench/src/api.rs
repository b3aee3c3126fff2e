//! The few Rampart API calls the bench needs: clients, login, and the read fixture.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{json, Value};

/// Generous: under a login flood a request may queue behind many Argon2 hashes, and that
/// should show up as latency, not as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the server is and which certificate to trust.
#[derive(Clone)]
pub struct Api {
    base_url: String,
    cert: reqwest::Certificate,
}

impl Api {
    pub fn new(base_url: &str, cert_pem: &[u8]) -> anyhow::Result<Self> {
        let cert = reqwest::Certificate::from_pem(cert_pem).context("parsing the server certificate")?;
        Ok(Self { base_url: base_url.to_owned(), cert })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A fresh client with its own connection pool. Each bench worker gets one, so the
    /// workers hold separate keep-alive connections as separate users' clients would.
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::builder()
            .add_root_certificate(self.cert.clone())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")
    }

    pub fn clients(&self, n: usize) -> anyhow::Result<Vec<Client>> {
        (0..n).map(|_| self.client()).collect()
    }

    /// A client whose connections come from `source` (any 127.0.0.0/8 address is local on
    /// Linux), so the server sees a distinct client address. `localhost` is pinned to
    /// 127.0.0.1: an IPv4 source cannot reach ::1.
    pub fn client_from(&self, source: IpAddr) -> anyhow::Result<Client> {
        let url = reqwest::Url::parse(&self.base_url).context("parsing the server URL")?;
        let port = url.port_or_known_default().ok_or_else(|| anyhow!("no port in {}", self.base_url))?;
        let host = url.host_str().ok_or_else(|| anyhow!("no host in {}", self.base_url))?.to_owned();
        Client::builder()
            .add_root_certificate(self.cert.clone())
            .timeout(REQUEST_TIMEOUT)
            .local_address(source)
            .resolve(&host, SocketAddr::from(([127, 0, 0, 1], port)))
            .build()
            .context("building the HTTP client")
    }
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

pub async fn login(client: &Client, api: &Api, user: &str, password: &str) -> anyhow::Result<String> {
    let req = client.post(api.url("/api/v1/auth/login")).json(&json!({"username": user, "password": password}));
    let body = send_json(req, StatusCode::OK).await.context("login")?;
    body["token"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("login response has no token"))
}

/// Creates collection `name` and fills it with `count` small documents; returns their ids.
pub async fn create_fixture(
    client: &Client,
    api: &Api,
    token: &str,
    name: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    create_collection(client, api, token, name, None).await?;
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let doc = json!({"k": format!("key-{i}"), "n": i, "text": "a small benchmark document"});
        ids.push(insert(client, api, token, name, &doc).await?);
    }
    Ok(ids)
}

/// `encrypted: None` leaves the server's default (sealed with AES-256-GCM).
pub async fn create_collection(
    client: &Client,
    api: &Api,
    token: &str,
    name: &str,
    encrypted: Option<bool>,
) -> anyhow::Result<()> {
    let mut body = json!({"name": name, "indexes": ["k"]});
    if let Some(encrypted) = encrypted {
        body["encrypted"] = json!(encrypted);
    }
    let req = client.post(api.url("/api/v1/collections")).bearer_auth(token).json(&body);
    send_json(req, StatusCode::CREATED).await.with_context(|| format!("creating collection {name}"))?;
    Ok(())
}

/// Inserts one document (`data`) and returns its id.
pub async fn insert(client: &Client, api: &Api, token: &str, collection: &str, data: &Value) -> anyhow::Result<String> {
    let req = client
        .post(api.url(&format!("/api/v1/collections/{collection}/documents")))
        .bearer_auth(token)
        .json(&json!({ "data": data }));
    let body = send_json(req, StatusCode::CREATED).await.context("inserting a bench document")?;
    body["id"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("insert response has no id"))
}

/// The URL of each document of `collection`.
pub fn document_urls(api: &Api, collection: &str, ids: &[String]) -> Vec<String> {
    ids.iter().map(|id| api.url(&format!("/api/v1/collections/{collection}/documents/{id}"))).collect()
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
        let word_len = 3 + (next() % 9) as usize;
        for _ in 0..word_len {
            text.push(char::from(ALPHABET[(next() % ALPHABET.len() as u64) as usize]));
        }
        text.push(' ');
    }
    let readings: Vec<u64> = (0..8).map(|_| next() % 100_000).collect();
    json!({"k": format!("doc-{seed}"), "n": seed, "readings": readings, "body": text})
}

/// The HTTP version ALPN settled on, for the report.
pub async fn negotiated_version(client: &Client, api: &Api) -> anyhow::Result<String> {
    let res = client.get(api.url("/health")).send().await?;
    Ok(format!("{:?}", res.version()))
}
