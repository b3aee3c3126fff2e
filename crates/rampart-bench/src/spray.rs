//! Rate-limiter memory under an address spray. The limiter keeps a token bucket per client
//! address, capped at 100,000 tracked keys; an attacker who controls many addresses (or
//! forges `X-Forwarded-For` behind a trusted proxy) must not be able to grow it without
//! bound. The server runs with plain HTTP on loopback (`--insecure-http`), so that tens of
//! thousands of fresh connections measure the server, not TLS handshakes, and requests are
//! written by hand over raw TCP: no client library hides what goes on the wire.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::net::{TcpSocket, TcpStream};

use crate::http1::{Conn, Head};
use crate::load::Tally;
use crate::report::Sample;
use crate::server::Server;

/// The peer the server trusts as a proxy (`RAMPART_TRUSTED_PROXIES`), where the keep-alive
/// connections that carry forged `X-Forwarded-For` come from.
pub const TRUSTED_PROXY: &str = "127.0.0.1/32";
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Fractions of the forged addresses after which the server's RSS is sampled.
const CHECKPOINTS: [f64; 4] = [0.1, 0.25, 0.5, 1.0];

#[derive(Debug, Clone)]
pub struct SprayPlan {
    /// Distinct forged `X-Forwarded-For` addresses (10.a.b.c), one request each.
    pub forged: u64,
    /// Distinct bound source addresses (127.1.x.y), one connection and request each.
    pub direct: u64,
    /// Keep-alive connections from the trusted proxy address carrying the forged requests.
    pub connections: usize,
    /// Fresh connections from distinct source addresses open at once.
    pub direct_concurrency: usize,
}

impl SprayPlan {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.forged == 0 || self.forged > 1 << 24 {
            bail!("--spray-forged must be between 1 and 16777216 (10.0.0.0/8)");
        }
        if self.direct > 250 * 256 * 254 {
            bail!("--spray-direct must be at most 16256000");
        }
        if self.connections == 0 || self.direct_concurrency == 0 {
            bail!("--spray-connections and --spray-direct-concurrency must be at least 1");
        }
        Ok(())
    }

    /// (forged, direct) address counts at each RSS sample; the direct ones are spread
    /// over the spray in proportion.
    fn checkpoints(&self) -> Vec<(u64, u64)> {
        let mut points = vec![(0, 0)];
        for f in CHECKPOINTS {
            let forged = ((self.forged as f64 * f).round() as u64).clamp(1, self.forged);
            let direct = (u128::from(self.direct) * u128::from(forged) / u128::from(self.forged)) as u64;
            if points.last().is_some_and(|&(last, _)| forged > last) {
                points.push((forged, direct));
            }
        }
        points
    }
}

/// The `i`th forged client address: 10.0.0.0/8 in order.
fn forged_address(i: u64) -> Ipv4Addr {
    Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

/// The `j`th bound source address: 127.1.0.1, 127.1.0.2, ... (host part 1..=250, so no
/// address ends in .0 or .255).
fn direct_address(j: u64) -> Ipv4Addr {
    let block = j / 250;
    Ipv4Addr::new(127, 1 + (block / 256) as u8, (block % 256) as u8, 1 + (j % 250) as u8)
}

/// One measured spray against a fresh server started with the limiter on.
pub async fn run_once(server: &Server, plan: &SprayPlan, run: usize) -> anyhow::Result<Vec<Sample>> {
    let addr = server.addr;
    let mut connections = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let mut conn = connect(addr).await?;
        // Warm-up without a forwarded header: counted under the proxy's own address.
        expect_limited(&conn.exchange(&request(addr, None, true), IO_TIMEOUT).await?)?;
        connections.push(conn);
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut samples = Vec::new();
    let mut rss = Vec::new();
    let mut tally = Tally::default();
    let mut elapsed = Duration::ZERO;
    let points = plan.checkpoints();
    let mut previous = (0, 0);
    for &(forged, direct) in &points {
        if (forged, direct) != previous {
            eprintln!("run {run}: spraying up to {forged} forged + {direct} direct addresses");
            let started = Instant::now();
            let (conns, stage) =
                spray(addr, connections, previous.0..forged, previous.1..direct, plan.direct_concurrency).await?;
            elapsed += started.elapsed();
            connections = conns;
            tally.merge(stage);
            previous = (forged, direct);
        }
        let kib = server.rss_kib()?;
        rss.push(kib);
        samples.push(Sample {
            key: format!("spray_rss_{forged}"),
            label: if forged == 0 {
                "Server RSS before the spray (after one request per connection)".to_owned()
            } else {
                format!("Server RSS after {} forged + {} direct addresses", count(forged), count(direct))
            },
            unit: "MiB",
            value: mib(kib),
            errors: 0,
        });
    }
    if let (Some(&first), Some(&second), Some(&last)) = (rss.first(), rss.get(1), rss.last()) {
        samples.push(Sample {
            key: "spray_growth_first".to_owned(),
            label: format!("RSS growth over the first {} addresses", count(points.get(1).map_or(0, |p| p.0 + p.1))),
            unit: "MiB",
            value: mib(second.saturating_sub(first)),
            errors: 0,
        });
        let before_last = rss.len().checked_sub(2).and_then(|i| rss.get(i)).copied().unwrap_or(first);
        let span = |p: Option<&(u64, u64)>| p.map_or(0, |p| p.0 + p.1);
        let tail = span(points.last()) - span(points.len().checked_sub(2).and_then(|i| points.get(i)));
        samples.push(Sample {
            key: "spray_growth_last".to_owned(),
            label: format!("RSS growth over the last {} addresses", count(tail)),
            unit: "MiB",
            value: mib(last.saturating_sub(before_last)),
            errors: 0,
        });
    }
    tally.seconds = elapsed.as_secs_f64();
    if let Some(e) = &tally.first_error {
        eprintln!("warning: spray: {} failed requests, first: {e}", tally.errors);
    }
    samples.push(Sample {
        key: "spray_rps".to_owned(),
        label: format!(
            "Requests/s during the spray ({} keep-alive + {} one-shot connections)",
            plan.connections, plan.direct_concurrency
        ),
        unit: "req/s",
        value: tally.per_second(),
        errors: tally.errors,
    });
    Ok(samples)
}

/// 1000000 as "1M", 250000 as "250k".
fn count(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(10_000) {
        format!("{}M", n as f64 / 1e6)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// Sends one request per forged address in `forged` over the keep-alive `connections`, and
/// one connection per bound address in `direct`, at the same time. Returns the connections
/// for the next stage.
async fn spray(
    addr: SocketAddr,
    connections: Vec<Conn>,
    forged: Range<u64>,
    direct: Range<u64>,
    direct_concurrency: usize,
) -> anyhow::Result<(Vec<Conn>, Tally)> {
    let next_forged = Arc::new(AtomicU64::new(forged.start));
    let next_direct = Arc::new(AtomicU64::new(direct.start));
    let mut keepalive = tokio::task::JoinSet::new();
    for mut conn in connections {
        let (next, end) = (Arc::clone(&next_forged), forged.end);
        keepalive.spawn(async move {
            let mut tally = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let result = conn.exchange(&request(addr, Some(forged_address(i)), true), IO_TIMEOUT).await;
                let failed = result.is_err();
                tally.record(result.and_then(|head| expect_limited(&head)));
                if failed {
                    // The connection is in an unknown state: start a new one.
                    match connect(addr).await {
                        Ok(fresh) => conn = fresh,
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok((conn, tally))
        });
    }
    let mut one_shot = tokio::task::JoinSet::new();
    for _ in 0..direct_concurrency {
        let (next, end) = (Arc::clone(&next_direct), direct.end);
        one_shot.spawn(async move {
            let mut tally = Tally::default();
            loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                if j >= end {
                    break;
                }
                tally.record(direct_request(addr, direct_address(j)).await);
            }
            tally
        });
    }
    let mut total = Tally::default();
    let mut conns = Vec::new();
    while let Some(worker) = keepalive.join_next().await {
        let (conn, tally) = worker.context("spray worker")??;
        conns.push(conn);
        total.merge(tally);
    }
    while let Some(worker) = one_shot.join_next().await {
        total.merge(worker.context("spray worker")?);
    }
    Ok((conns, total))
}

/// One request on a new connection from `source`, closed afterwards.
async fn direct_request(addr: SocketAddr, source: Ipv4Addr) -> anyhow::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0))).with_context(|| format!("binding {source}"))?;
    let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(addr)).await.context("connect timed out")??;
    expect_limited(&Conn::new(stream).exchange(&request(addr, None, false), IO_TIMEOUT).await?)
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
    let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr)).await.context("connect timed out")??;
    Ok(Conn::new(stream))
}

fn request(addr: SocketAddr, forwarded_for: Option<Ipv4Addr>, keep_alive: bool) -> Vec<u8> {
    let mut req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n");
    if let Some(ip) = forwarded_for {
        req.push_str(&format!("X-Forwarded-For: {ip}\r\n"));
    }
    if !keep_alive {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// 200 with `X-RateLimit-Limit` (the limiter looked at the request); anything else fails.
fn expect_limited(head: &Head) -> anyhow::Result<()> {
    match (head.status()?, head.header("x-ratelimit-limit").is_some()) {
        (200, true) => Ok(()),
        (200, false) => bail!("no X-RateLimit-Limit header: is the limiter on?"),
        (status, _) => bail!("HTTP {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_and_in_range() {
        assert_eq!(forged_address(0), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(forged_address(999_999), Ipv4Addr::new(10, 15, 66, 63));
        assert_eq!(direct_address(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(direct_address(249), Ipv4Addr::new(127, 1, 0, 250));
        assert_eq!(direct_address(250), Ipv4Addr::new(127, 1, 1, 1));
        let direct: std::collections::HashSet<_> = (0..100_000).map(direct_address).collect();
        assert_eq!(direct.len(), 100_000);
        assert!(direct.iter().all(|a| a.octets()[3] != 0 && a.octets()[3] != 255));
    }

    #[test]
    fn checkpoints_scale_direct_addresses_with_forged_ones() {
        let plan = SprayPlan { forged: 1_000_000, direct: 20_000, connections: 1, direct_concurrency: 1 };
        assert_eq!(
            plan.checkpoints(),
            [(0, 0), (100_000, 2_000), (250_000, 5_000), (500_000, 10_000), (1_000_000, 20_000)]
        );
        let tiny = SprayPlan { forged: 2, direct: 0, ..plan };
        assert_eq!(tiny.checkpoints(), [(0, 0), (1, 0), (2, 0)]);
    }

    #[test]
    fn only_limited_200s_pass() {
        let head = |text: &str| crate::http1::parse_head(text.as_bytes()).unwrap().unwrap().0;
        assert!(expect_limited(&head("HTTP/1.1 200 OK\r\nx-ratelimit-limit: 1000\r\n\r\n")).is_ok());
        assert!(expect_limited(&head("HTTP/1.1 200 OK\r\n\r\n")).is_err());
        assert!(expect_limited(&head("HTTP/1.1 429 Too Many Requests\r\nx-ratelimit-limit: 1\r\n\r\n")).is_err());
        let req =
            String::from_utf8(request(SocketAddr::from(([127, 0, 0, 1], 80)), Some(forged_address(1)), false)).unwrap();
        assert_eq!(
            req,
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:80\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn counts_read_well() {
        assert_eq!(count(1_000_000), "1M");
        assert_eq!(count(1_020_000), "1.02M");
        assert_eq!(count(250_000), "250k");
        assert_eq!(count(1234), "1234");
    }
}
