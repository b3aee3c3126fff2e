//! Delivers queued breach webhooks from the durable outbox: at least once, idempotent by
//! event id (receivers deduplicate on `X-Rampart-Event-Id`), exponential backoff with
//! jitter, signed, and refusing private, loopback and link-local targets unless allowed.
//! Runs in its own task, so a slow or dead receiver never slows a request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rampart_config::{Config, WebhookEndpoint};
use rampart_core::{Clock, Store};
use rampart_store::OutboxItem;
use secrecy::ExposeSecret;

const POLL: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF_SECS: i64 = 3600;
/// How far ahead a message for an endpoint no longer configured is parked.
const ORPHAN_RETRY_MS: i64 = 24 * 3600 * 1000;

/// Addresses a webhook must not reach unless explicitly allowed (SSRF guard).
pub fn forbidden_target(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (o[0] == 100 && (64..128).contains(&o[1])) // carrier-grade NAT
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_target(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// Resolves the URL's host and refuses forbidden addresses; returns the address to pin.
async fn resolve_target(url: &reqwest::Url, allow_private: bool) -> Result<(String, SocketAddr), String> {
    let host = url.host_str().ok_or("webhook URL has no host")?.to_owned();
    let port = url.port_or_known_default().ok_or("webhook URL has no port")?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let first = *addrs.first().ok_or_else(|| format!("{host} has no address"))?;
    if !allow_private && addrs.iter().any(|a| forbidden_target(a.ip())) {
        return Err(format!("{host} resolves to a private, loopback or link-local address (set RAMPART_WEBHOOK_ALLOW_PRIVATE_TARGETS=true to allow)"));
    }
    Ok((host, first))
}

async fn send(
    item: &OutboxItem,
    body: Vec<u8>,
    secrets: &[&[u8]],
    allow_private: bool,
    now_unix: i64,
) -> Result<(), String> {
    let url = reqwest::Url::parse(&item.endpoint).map_err(|_| "invalid webhook URL".to_owned())?;
    let (host, addr) = resolve_target(&url, allow_private).await?;
    // Pin the checked address, and follow no redirects: both would bypass the guard.
    let client = reqwest::Client::builder()
        .resolve(&host, addr)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let signature = rampart_crypto::webhook_signatures(secrets, now_unix, &body);
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-rampart-signature", signature)
        .header("x-rampart-event-id", &item.event_id)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("delivery failed: {}", if e.is_timeout() { "timeout" } else { "connection error" }))?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!("receiver answered {}", res.status().as_u16()))
    }
}

/// 2^attempts seconds (capped at an hour) plus up to a second of jitter.
fn backoff_ms(attempts: u32) -> i64 {
    let base = 1i64.checked_shl(attempts.min(12)).unwrap_or(MAX_BACKOFF_SECS).min(MAX_BACKOFF_SECS) * 1000;
    let jitter: [u8; 2] = rampart_crypto::random_bytes();
    base + i64::from(u16::from_le_bytes(jitter) % 1000)
}

/// Every endpoint the outbox may address: breach webhooks and the recipients of personal
/// data (erasure notices), found again by URL at delivery.
#[derive(Clone)]
pub struct Endpoints {
    pub webhooks: Vec<WebhookEndpoint>,
    pub allow_private_webhook_targets: bool,
}

/// The endpoints the delivery worker reads before each batch; `rotate-secrets` replaces a
/// signing secret here while the server runs.
pub type LiveEndpoints = Arc<std::sync::RwLock<Endpoints>>;

impl Endpoints {
    pub fn live(config: &Config) -> LiveEndpoints {
        Arc::new(std::sync::RwLock::new(Self::of(config)))
    }

    pub fn of(config: &Config) -> Self {
        let providers = config.privacy.service_providers.iter().map(|p| p.endpoint.clone());
        Self {
            webhooks: config.breach.webhooks.iter().cloned().chain(providers).collect(),
            allow_private_webhook_targets: config.breach.allow_private_webhook_targets,
        }
    }
}

pub async fn deliver(
    store: Arc<dyn Store>,
    endpoints: LiveEndpoints,
    clock: Arc<dyn Clock>,
    lease: Arc<dyn rampart_store::LeaderLease>,
    metrics: Arc<rampart_core::metrics::Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let now = clock.now();
        // Another node delivers while it holds the lease; this one waits its turn.
        let due = if lease.held().await { store.due_webhooks(now, 50).await } else { Ok(Vec::new()) };
        match due {
            Ok(items) => {
                let config = endpoints.read().map(|e| e.clone()).unwrap_or_else(|e| e.into_inner().clone());
                for item in items {
                    let Some(endpoint) = config.webhooks.iter().find(|w| w.url == item.endpoint) else {
                        // Its endpoint was removed from the configuration: park it a day ahead
                        // (delivered if the endpoint comes back), so such messages cannot fill
                        // every batch and starve the endpoints that remain.
                        let next = rampart_types::Timestamp::from_millis(clock.now().as_millis() + ORPHAN_RETRY_MS);
                        let parked = store
                            .webhook_failed(&item.event_id, &item.endpoint, next, "endpoint no longer configured")
                            .await;
                        if let Err(e) = parked {
                            tracing::warn!(error = %e, "webhook outbox update failed");
                        }
                        continue;
                    };
                    let secret = endpoint.secret.expose_secret();
                    let allow = config.allow_private_webhook_targets;
                    // The previous secret signs too until its overlap ends.
                    let previous = endpoint
                        .previous
                        .as_ref()
                        .filter(|p| now.as_unix_seconds() < p.until_unix)
                        .map(|p| p.secret.expose_secret().as_bytes());
                    let secrets: Vec<&[u8]> = std::iter::once(secret.as_bytes()).chain(previous).collect();
                    let outcome = match rampart_notify::delivery_body(&item, endpoint.format, secret) {
                        Ok(body) => send(&item, body, &secrets, allow, now.as_unix_seconds()).await,
                        Err(e) => Err(e),
                    };
                    metrics.webhook_delivery(outcome.is_ok());
                    let recorded = match outcome {
                        Ok(()) => store.webhook_delivered(&item.event_id, &item.endpoint, clock.now()).await,
                        Err(why) => {
                            tracing::warn!(
                                event_id = item.event_id,
                                attempts = item.attempts + 1,
                                reason = why,
                                "webhook not delivered; will retry"
                            );
                            let next = clock.now().plus_seconds(0).as_millis() + backoff_ms(item.attempts);
                            store
                                .webhook_failed(
                                    &item.event_id,
                                    &item.endpoint,
                                    rampart_types::Timestamp::from_millis(next),
                                    &why,
                                )
                                .await
                        }
                    };
                    if let Err(e) = recorded {
                        tracing::warn!(error = %e, "webhook outbox update failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "webhook outbox read failed"),
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_targets_are_refused() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(forbidden_target(bad.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))), "{bad}");
        }
        for ok in ["93.184.216.34", "2606:4700::1111"] {
            assert!(!forbidden_target(ok.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))), "{ok}");
        }
    }

    /// The one endpoint a test's receiver listens on (loopback, so private targets allowed).
    fn one_local_endpoint(url: &str) -> Endpoints {
        Endpoints {
            allow_private_webhook_targets: true,
            webhooks: vec![rampart_config::WebhookEndpoint {
                url: url.to_owned(),
                secret: "s3cret-for-the-test".to_owned().into(),
                format: rampart_config::WebhookFormat::Generic,
                previous: None,
            }],
        }
    }

    /// A lease that is never held: another node is delivering.
    struct Elsewhere;

    #[async_trait::async_trait]
    impl rampart_store::LeaderLease for Elsewhere {
        async fn held(&self) -> bool {
            false
        }
        fn holds(&self) -> bool {
            false
        }
    }

    /// Webhooks go out only from the node holding the lease: without it a due delivery
    /// is left queued for the holder; with it, the same delivery is attempted at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_lease_holder_delivers() {
        #![allow(clippy::unwrap_used)]
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(rampart_store_sqlite::SqliteStore::open(dir.path()).unwrap());
        let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", receiver.local_addr().unwrap());
        let config = one_local_endpoint(&url);
        let clock: Arc<dyn Clock> = Arc::new(rampart_core::SystemClock);
        let item = OutboxItem {
            event_id: "evt-lease".into(),
            endpoint: url,
            payload: "{}".into(),
            attempts: 0,
            next_attempt_at: rampart_types::Timestamp::from_millis(0),
        };
        store.enqueue_webhooks(vec![item]).await.unwrap();
        let run = |lease: Arc<dyn rampart_store::LeaderLease>| {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let job = tokio::spawn(deliver(
                Arc::clone(&store),
                Arc::new(std::sync::RwLock::new(config.clone())),
                Arc::clone(&clock),
                lease,
                Arc::default(),
                stopped,
            ));
            (stop, job)
        };

        let (stop, job) = run(Arc::new(Elsewhere));
        let contacted = tokio::time::timeout(POLL * 3, receiver.accept()).await;
        assert!(contacted.is_err(), "a node without the lease delivered");
        stop.send(true).unwrap();
        job.await.unwrap();
        let due = store.due_webhooks(clock.now(), 10).await.unwrap();
        assert_eq!((due.len(), due[0].attempts), (1, 0), "left queued, untouched, for the holder");

        let (stop, job) = run(Arc::new(rampart_store::SingleNode));
        let contacted = tokio::time::timeout(POLL * 6, receiver.accept()).await;
        assert!(contacted.is_ok(), "the lease holder did not deliver");
        drop(contacted); // the attempt fails at once instead of waiting for an answer
        stop.send(true).unwrap();
        let _ = job.await;
    }

    /// Deliveries addressed to an endpoint no longer configured (a provider or webhook removed
    /// from the config) must not fill every batch: the endpoints that remain are still served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_for_a_removed_endpoint_do_not_starve_the_others() {
        #![allow(clippy::unwrap_used)]
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(rampart_store_sqlite::SqliteStore::open(dir.path()).unwrap());
        let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", receiver.local_addr().unwrap());
        let config = one_local_endpoint(&url);
        let item = |id: String, endpoint: &str, at: i64| OutboxItem {
            event_id: id,
            endpoint: endpoint.to_owned(),
            payload: "{}".into(),
            attempts: 0,
            next_attempt_at: rampart_types::Timestamp::from_millis(at),
        };
        // More than a batch, all due before the one that can be delivered.
        let orphans: Vec<OutboxItem> =
            (0..60).map(|i| item(format!("evt-gone-{i}"), "https://gone.example/hook", 0)).collect();
        store.enqueue_webhooks(orphans).await.unwrap();
        store.enqueue_webhooks(vec![item("evt-live".into(), &url, 1)]).await.unwrap();
        let clock: Arc<dyn Clock> = Arc::new(rampart_core::SystemClock);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let job = tokio::spawn(deliver(
            Arc::clone(&store),
            Arc::new(std::sync::RwLock::new(config)),
            clock,
            Arc::new(rampart_store::SingleNode),
            Arc::default(),
            stopped,
        ));
        let contacted = tokio::time::timeout(POLL * 8, receiver.accept()).await;
        assert!(contacted.is_ok(), "the configured endpoint was starved by messages for a removed one");
        drop(contacted);
        stop.send(true).unwrap();
        let _ = job.await;
    }

    /// Reads one HTTP request from the receiver and answers 200; the signature header.
    async fn signature_of_next_delivery(receiver: &tokio::net::TcpListener) -> String {
        #![allow(clippy::unwrap_used)]
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = tokio::time::timeout(POLL * 8, receiver.accept()).await.unwrap().unwrap();
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 1024];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the headers ended");
            head.extend_from_slice(&buf[..n]);
        }
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        let text = String::from_utf8_lossy(&head).into_owned();
        text.lines().find_map(|l| l.strip_prefix("x-rampart-signature: ").map(str::to_owned)).unwrap()
    }

    /// After `rotate-secrets` the replaced secret signs beside the new one until its overlap
    /// ends; a receiver holding either verifies. Past the overlap only the new one signs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replaced_secret_signs_beside_the_new_one_until_its_overlap_ends() {
        #![allow(clippy::unwrap_used)]
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(rampart_store_sqlite::SqliteStore::open(dir.path()).unwrap());
        let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", receiver.local_addr().unwrap());
        let clock: Arc<dyn Clock> = Arc::new(rampart_core::SystemClock);
        let now = clock.now().as_unix_seconds();
        let mut endpoints = one_local_endpoint(&url);
        endpoints.webhooks[0].previous =
            Some(rampart_config::PreviousSecret { secret: "the-old-secret".to_owned().into(), until_unix: now + 3600 });
        let live = Arc::new(std::sync::RwLock::new(endpoints));
        let item = |id: &str| OutboxItem {
            event_id: id.to_owned(),
            endpoint: url.clone(),
            payload: "{}".into(),
            attempts: 0,
            next_attempt_at: rampart_types::Timestamp::from_millis(0),
        };
        store.enqueue_webhooks(vec![item("evt-overlap")]).await.unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let job = tokio::spawn(deliver(
            Arc::clone(&store),
            Arc::clone(&live),
            Arc::clone(&clock),
            Arc::new(rampart_store::SingleNode),
            Arc::default(),
            stopped,
        ));
        let header = signature_of_next_delivery(&receiver).await;
        assert_eq!(header.matches("v1=").count(), 2, "{header}");
        let t: i64 = header.split(',').next().unwrap().trim_start_matches("t=").parse().unwrap();
        for secret in [&b"s3cret-for-the-test"[..], b"the-old-secret"] {
            assert!(rampart_crypto::verify_webhook_signature(secret, &header, b"{}", t, 300), "{header}");
        }
        assert!(!rampart_crypto::verify_webhook_signature(b"another", &header, b"{}", t, 300));
        // The overlap over: one signature, the new secret's.
        live.write().unwrap().webhooks[0].previous.as_mut().unwrap().until_unix = now - 1;
        store.enqueue_webhooks(vec![item("evt-after")]).await.unwrap();
        let header = signature_of_next_delivery(&receiver).await;
        assert_eq!(header.matches("v1=").count(), 1, "{header}");
        stop.send(true).unwrap();
        let _ = job.await;
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert!(backoff_ms(0) < 2000 && backoff_ms(0) >= 1000);
        assert!(backoff_ms(5) >= 32_000);
        assert!(backoff_ms(40) <= MAX_BACKOFF_SECS * 1000 + 1000);
    }
}
