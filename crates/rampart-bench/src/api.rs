//! The few Rampart API calls the bench needs: clients, login, and the read fixture.

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

async fn send_json(req: RequestBuilder, want: StatusCode) -> anyhow::Result<Value> {
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
    let req =
        client.post(api.url("/api/v1/collections")).bearer_auth(token).json(&json!({"name": name, "indexes": ["k"]}));
    send_json(req, StatusCode::CREATED).await.context("creating the bench collection")?;
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let doc = json!({"data": {"k": format!("key-{i}"), "n": i, "text": "a small benchmark document"}});
        let req = client.post(api.url(&format!("/api/v1/collections/{name}/documents"))).bearer_auth(token).json(&doc);
        let body = send_json(req, StatusCode::CREATED).await.context("inserting a bench document")?;
        let id = body["id"].as_str().ok_or_else(|| anyhow!("insert response has no id"))?;
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// The HTTP version ALPN settled on, for the report.
pub async fn negotiated_version(client: &Client, api: &Api) -> anyhow::Result<String> {
    let res = client.get(api.url("/health")).send().await?;
    Ok(format!("{:?}", res.version()))
}
