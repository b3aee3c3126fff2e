//! How fast a breach becomes visible: from the request that crosses the failed-login
//! threshold to the alert in the alerts API, and to the signed webhook at a receiver.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::api::{send_ok, Session};
use crate::http1::Conn;
use crate::report::{percentile_ms, Sample};

/// The server's default `failed_login_threshold`: the alert fires on failure number 11.
const FAILED_LOGIN_THRESHOLD: usize = 10;
const WEBHOOK_SECRET: &str = "bench-webhook-secret-0123456789abcdef";
/// Give up on an alert or webhook after this long: the figures are far below it.
const GIVE_UP: Duration = Duration::from_secs(15);
/// The incident responder's address; the read phases use 127.0.0.1, and attackers
/// 127.0.0.10, .11, ... one per repetition, since each one ends up blocked.
pub const ADMIN_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
pub const FIRST_ATTACKER: u8 = 10;

/// Deliveries by the alert's `details.ip_address`: when the whole request was in, and
/// whether its signature held.
type Arrivals = Arc<Mutex<HashMap<String, (Instant, bool)>>>;

/// A webhook receiver on 127.0.0.1 inside the bench process, speaking plain HTTP/1.1 and
/// answering 200 to everything.
pub struct Receiver {
    pub url: String,
    arrivals: Arrivals,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (url, arrivals) = (format!("http://{}/hook", listener.local_addr()?), Arrivals::default());
        let shared = Arc::clone(&arrivals);
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => drop(tokio::spawn(serve(Conn::new(stream), Arc::clone(&shared)))),
                    Err(e) => {
                        eprintln!("warning: webhook receiver: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(Self { url, arrivals, task })
    }

    /// The server environment that sends webhooks here.
    pub fn env(&self) -> [(&str, &str); 4] {
        [
            ("RAMPART_BREACH_WEBHOOK_URL", &self.url),
            ("RAMPART_BREACH_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("RAMPART_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
            ("RAMPART_INSTANCE_ID", "rampart-bench"),
        ]
    }

    /// Waits for the delivery of the alert about `ip` (stamped when it came in).
    async fn wait_for(&self, ip: &str, deadline: Instant) -> anyhow::Result<(Instant, bool)> {
        while Instant::now() < deadline {
            if let Some(&arrival) = self.arrivals.lock().map_err(|_| anyhow!("receiver poisoned"))?.get(ip) {
                return Ok(arrival);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        bail!("no webhook for {ip} within {GIVE_UP:?}")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers every request on one connection; each `POST` is a delivery.
async fn serve(mut conn: Conn, arrivals: Arrivals) {
    while let Ok(Some((head, body))) = conn.read_message().await {
        let at = Instant::now();
        let ip = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| Some(v["details"]["ip_address"].as_str()?.to_owned()));
        if let (true, Some(ip), Ok(mut arrivals)) = (head.start_line.starts_with("POST "), ip, arrivals.lock()) {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let signature = head.header("x-rampart-signature").unwrap_or_default();
            // Signatures older than 300 s are refused, as a receiver would.
            let ok = head.header("x-rampart-event-id").is_some()
                && rampart_crypto::verify_webhook_signature(
                    WEBHOOK_SECRET.as_bytes(),
                    signature,
                    &body,
                    now as i64,
                    300,
                );
            arrivals.entry(ip).or_insert((at, ok));
        }
        if conn.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.is_err() {
            return;
        }
    }
}

/// `reps` repetitions, each from a new attacker address taken from `next_attacker`; the
/// samples are the p50 (and max) of this run's repetitions.
pub async fn measure(
    responder: &Session,
    receiver: &Receiver,
    next_attacker: &mut u8,
    reps: usize,
    poll_interval: Duration,
) -> anyhow::Result<Vec<Sample>> {
    let (mut response, mut alert, mut webhook, mut bad_signatures) = (vec![], vec![], vec![], 0);
    for _ in 0..reps {
        let ip = Ipv4Addr::new(127, 0, 0, *next_attacker);
        let next = next_attacker.checked_add(1).filter(|&n| n < 255);
        *next_attacker = next.context("out of attacker addresses (at most 245 repetitions)")?;
        let rep = one_rep(responder, receiver, ip, poll_interval).await.with_context(|| format!("attacker {ip}"))?;
        response.push(rep.0);
        alert.push(rep.1);
        webhook.push(rep.2);
        bad_signatures += u64::from(!rep.3);
    }
    if bad_signatures > 0 {
        eprintln!("warning: {bad_signatures} webhook(s) failed signature verification");
    }
    let sample = |key: &str, what: &str, values: &[Duration], p: f64| {
        let stat = if p == 50.0 { "p50" } else { "max" };
        Sample::new(key, format!("11th failed login{what}, {stat} of {reps}"), "ms", percentile_ms(values, p))
    };
    Ok(vec![
        sample("alert_login_p50_ms", ": response time", &response, 50.0),
        sample("alert_api_p50_ms", " to alert in the alerts API", &alert, 50.0),
        sample("alert_api_max_ms", " to alert in the alerts API", &alert, 100.0),
        sample("alert_webhook_p50_ms", " to signed webhook at the receiver", &webhook, 50.0).errors(bad_signatures),
        sample("alert_webhook_max_ms", " to webhook at the receiver", &webhook, 100.0),
    ])
}

/// Times from sending the threshold-crossing login to its response, to the alert in the
/// API and to the webhook; and whether the webhook's signature held.
async fn one_rep(
    responder: &Session,
    receiver: &Receiver,
    ip: Ipv4Addr,
    poll_interval: Duration,
) -> anyhow::Result<(Duration, Duration, Duration, bool)> {
    let attacker = responder.client_from(ip.into())?;
    // Connect (TLS handshake) outside the timed request.
    send_ok(attacker.get(responder.url("/health"))).await?;
    // A different unknown user each time: the alert is then about the address only, and
    // the per-account login delay never kicks in.
    for i in 0..FAILED_LOGIN_THRESHOLD {
        failed_login(responder, &attacker, ip, i).await?;
    }
    let (ip_text, sent) = (ip.to_string(), Instant::now());
    let deadline = sent + GIVE_UP;
    let (login, alert) = tokio::join!(
        async {
            failed_login(responder, &attacker, ip, FAILED_LOGIN_THRESHOLD).await?;
            anyhow::Ok(sent.elapsed())
        },
        poll_alerts(responder, &ip_text, poll_interval, deadline),
    );
    let (response, alert) = (login?, alert? - sent);
    let (at, signature_ok) = receiver.wait_for(&ip_text, deadline).await?;
    Ok((response, alert, at.saturating_duration_since(sent), signature_ok))
}

async fn failed_login(s: &Session, client: &Client, ip: Ipv4Addr, attempt: usize) -> anyhow::Result<()> {
    let body = json!({"username": format!("ghost{}x{attempt}", ip.octets()[3]), "password": "Not-The-Passw0rd!"});
    let res = client.post(s.url("/api/v1/auth/login")).json(&body).send().await?;
    let status = res.status();
    res.bytes().await?;
    if status != StatusCode::UNAUTHORIZED {
        bail!("failed login {attempt} answered HTTP {status}, expected 401");
    }
    Ok(())
}

/// Polls the alerts API every `interval` until an alert about `ip` shows up; returns when
/// the response that first showed it arrived (an upper bound, within one poll).
async fn poll_alerts(s: &Session, ip: &str, interval: Duration, deadline: Instant) -> anyhow::Result<Instant> {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        ticks.tick().await;
        let body = s.get("/api/v1/admin/security/alerts?type=multiple_failed_logins&limit=1000").await;
        let seen = Instant::now();
        let body = body.context("listing alerts")?;
        let alerts = body["alerts"].as_array().ok_or_else(|| anyhow!("alerts response has no alerts"))?;
        if alerts.iter().any(|a| a["details"]["ip_address"].as_str() == Some(ip)) {
            return Ok(seen);
        }
    }
    bail!("no alert for {ip} within {GIVE_UP:?}")
}
