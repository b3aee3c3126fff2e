//! How fast a breach becomes visible: from the request that crosses the failed-login
//! threshold to the alert in the alerts API, and to the signed webhook at a receiver.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::{self, Api};
use crate::http1::{Conn, Head};
use crate::report::Sample;
use crate::stats::percentile_ms;

/// The server's default `failed_login_threshold`: the alert fires on failure number 11.
pub const FAILED_LOGIN_THRESHOLD: usize = 10;
pub const WEBHOOK_SECRET: &str = "bench-webhook-secret-0123456789abcdef";
/// Give up on an alert or webhook after this long: the figures are far below it.
const GIVE_UP: Duration = Duration::from_secs(15);
/// Signatures older than this are refused, as a receiver would.
const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// One webhook delivery as the receiver saw it.
#[derive(Debug)]
pub struct Arrival {
    pub at: Instant,
    /// `details.ip_address` of the alert: which repetition it belongs to.
    pub ip: Option<String>,
    pub signature_ok: bool,
}

/// A webhook receiver on 127.0.0.1 inside the bench process, speaking plain HTTP/1.1.
/// It timestamps each delivery as soon as the whole request is in, and answers 200.
pub struct Receiver {
    pub url: String,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let (tx, arrivals) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(serve(Conn::new(stream), tx.clone()));
                    }
                    Err(e) => {
                        eprintln!("warning: webhook receiver: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(Self { url, arrivals, task })
    }

    /// Forgets deliveries that arrived before now (earlier repetitions, retries).
    fn drain(&mut self) {
        while self.arrivals.try_recv().is_ok() {}
    }

    /// Waits for the delivery of the alert about `ip`.
    async fn wait_for(&mut self, ip: &str, deadline: Instant) -> anyhow::Result<Arrival> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let arrival = tokio::time::timeout(left, self.arrivals.recv())
                .await
                .map_err(|_| anyhow!("no webhook for {ip} within {GIVE_UP:?}"))?
                .ok_or_else(|| anyhow!("webhook receiver stopped"))?;
            if arrival.ip.as_deref() == Some(ip) {
                return Ok(arrival);
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers every request on one connection; each `POST` is a delivery.
async fn serve(mut conn: Conn, tx: mpsc::UnboundedSender<Arrival>) {
    while let Ok(Some((head, body))) = conn.read_message().await {
        let at = Instant::now();
        if head.start_line.starts_with("POST ") {
            let _ = tx.send(arrival(at, &head, &body));
        }
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if conn.write(ok).await.is_err() {
            return;
        }
    }
}

fn arrival(at: Instant, head: &Head, body: &[u8]) -> Arrival {
    let signature = head.header("x-rampart-signature").unwrap_or_default();
    let signature_ok = head.header("x-rampart-event-id").is_some()
        && rampart_crypto::verify_webhook_signature(
            WEBHOOK_SECRET.as_bytes(),
            signature,
            body,
            unix_now(),
            SIGNATURE_TOLERANCE_SECS,
        );
    let ip =
        serde_json::from_slice::<Value>(body).ok().and_then(|v| v["details"]["ip_address"].as_str().map(str::to_owned));
    Arrival { at, ip, signature_ok }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The server environment that sends webhooks to `receiver_url`.
pub fn webhook_env(receiver_url: &str) -> Vec<(String, String)> {
    [
        ("RAMPART_BREACH_WEBHOOK_URL", receiver_url),
        ("RAMPART_BREACH_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("RAMPART_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("RAMPART_INSTANCE_ID", "rampart-bench"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Attacker addresses: 127.0.0.10, 127.0.0.11, ... one per repetition, since each one ends
/// up blocked. The admin polls from 127.0.0.2 and the read phases use 127.0.0.1.
pub struct Attackers {
    next: u8,
}

pub const ADMIN_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

impl Default for Attackers {
    fn default() -> Self {
        Self { next: 10 }
    }
}

impl Attackers {
    fn next(&mut self) -> anyhow::Result<Ipv4Addr> {
        let ip = Ipv4Addr::new(127, 0, 0, self.next);
        self.next = self
            .next
            .checked_add(1)
            .filter(|&n| n < 255)
            .ok_or_else(|| anyhow!("out of attacker addresses (at most 245 repetitions)"))?;
        Ok(ip)
    }
}

/// Times of one repetition, from sending the threshold-crossing login.
struct Rep {
    response: Duration,
    alert: Duration,
    webhook: Duration,
    signature_ok: bool,
}

/// `reps` repetitions; samples are the p50 (and max) of this run's repetitions.
pub async fn measure(
    api: &Api,
    admin: &Client,
    token: &str,
    receiver: &mut Receiver,
    attackers: &mut Attackers,
    reps: usize,
    poll_interval: Duration,
) -> anyhow::Result<Vec<Sample>> {
    let mut results = Vec::with_capacity(reps);
    for _ in 0..reps {
        let ip = attackers.next()?;
        results.push(
            one_rep(api, admin, token, receiver, ip, poll_interval).await.with_context(|| format!("attacker {ip}"))?,
        );
    }
    let bad_signatures = results.iter().filter(|r| !r.signature_ok).count() as u64;
    if bad_signatures > 0 {
        eprintln!("warning: {bad_signatures} webhook(s) failed signature verification");
    }
    let times = |f: fn(&Rep) -> Duration| results.iter().map(f).collect::<Vec<_>>();
    let (response, alert, webhook) = (times(|r| r.response), times(|r| r.alert), times(|r| r.webhook));
    let n = results.len();
    let sample = |key: &str, label: String, values: &[Duration], p: f64, errors: u64| Sample {
        key: key.to_owned(),
        label,
        unit: "ms",
        value: percentile_ms(values, p),
        errors,
    };
    Ok(vec![
        sample("alert_login_p50_ms", format!("11th failed login: response time, p50 of {n}"), &response, 50.0, 0),
        sample(
            "alert_api_p50_ms",
            format!("11th failed login to alert in the alerts API, p50 of {n}"),
            &alert,
            50.0,
            0,
        ),
        sample(
            "alert_api_max_ms",
            format!("11th failed login to alert in the alerts API, max of {n}"),
            &alert,
            100.0,
            0,
        ),
        sample(
            "alert_webhook_p50_ms",
            format!("11th failed login to signed webhook at the receiver, p50 of {n}"),
            &webhook,
            50.0,
            bad_signatures,
        ),
        sample(
            "alert_webhook_max_ms",
            format!("11th failed login to webhook at the receiver, max of {n}"),
            &webhook,
            100.0,
            0,
        ),
    ])
}

async fn one_rep(
    api: &Api,
    admin: &Client,
    token: &str,
    receiver: &mut Receiver,
    ip: Ipv4Addr,
    poll_interval: Duration,
) -> anyhow::Result<Rep> {
    let attacker = api.client_from(IpAddr::V4(ip))?;
    // Connect (TLS handshake) outside the timed request.
    api::send_ok(attacker.get(api.url("/health"))).await?;
    // A different unknown user each time: the alert is then about the address only, and
    // the per-account login delay never kicks in.
    for i in 0..FAILED_LOGIN_THRESHOLD {
        failed_login(api, &attacker, ip, i).await?;
    }
    receiver.drain();
    let ip_text = ip.to_string();
    let sent = Instant::now();
    let deadline = sent + GIVE_UP;
    let (login, alert) = tokio::join!(
        async {
            failed_login(api, &attacker, ip, FAILED_LOGIN_THRESHOLD).await?;
            Ok::<_, anyhow::Error>(sent.elapsed())
        },
        poll_alerts(api, admin, token, &ip_text, poll_interval, deadline),
    );
    let (response, alert) = (login?, alert? - sent);
    let arrival = receiver.wait_for(&ip_text, deadline).await?;
    Ok(Rep { response, alert, webhook: arrival.at.saturating_duration_since(sent), signature_ok: arrival.signature_ok })
}

async fn failed_login(api: &Api, client: &Client, ip: Ipv4Addr, attempt: usize) -> anyhow::Result<()> {
    let user = format!("ghost{}x{attempt}", ip.octets()[3]);
    let body = json!({"username": user, "password": "Not-The-Passw0rd!"});
    let res = client.post(api.url("/api/v1/auth/login")).json(&body).send().await?;
    let status = res.status();
    res.bytes().await?;
    if status != StatusCode::UNAUTHORIZED {
        bail!("failed login {attempt} answered HTTP {status}, expected 401");
    }
    Ok(())
}

/// Polls the alerts API every `interval` until an alert about `ip` shows up; returns when
/// the response that first showed it arrived (an upper bound, within one poll).
async fn poll_alerts(
    api: &Api,
    admin: &Client,
    token: &str,
    ip: &str,
    interval: Duration,
    deadline: Instant,
) -> anyhow::Result<Instant> {
    let url = api.url("/api/v1/admin/security/alerts?type=multiple_failed_logins&limit=1000");
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        ticks.tick().await;
        let body =
            api::send_json(admin.get(&url).bearer_auth(token), StatusCode::OK).await.context("listing alerts")?;
        let seen = Instant::now();
        let alerts = body["alerts"].as_array().ok_or_else(|| anyhow!("alerts response has no alerts"))?;
        if alerts.iter().any(|a| a["details"]["ip_address"].as_str() == Some(ip)) {
            return Ok(seen);
        }
    }
    bail!("no alert for {ip} within {GIVE_UP:?}")
}
