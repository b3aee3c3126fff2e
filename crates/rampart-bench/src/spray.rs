//! Rate-limiter memory under an address spray. The limiter keeps a token bucket per client
//! address, capped at 100,000 tracked keys; an attacker who controls many addresses (or
//! forges `X-Forwarded-For` behind a trusted proxy) must not be able to grow it without
//! bound. The server runs with plain HTTP on loopback (`--insecure-http`), so that tens of
//! thousands of fresh connections measure the server, not TLS handshakes, and requests are
//! written by hand over raw TCP: no client library hides what goes on the wire.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::net::TcpSocket;

use crate::http1::{Conn, Head};
use crate::load::{drive, Tally};
use crate::report::{rss_kib, with_cpu, Report, Sample};
use crate::server::{Server, Transport};
use crate::Cli;

const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub fn check(c: &Cli) -> anyhow::Result<()> {
    if c.spray_forged == 0 || c.spray_forged > 1 << 24 {
        bail!("--spray-forged must be between 1 and 16777216 (10.0.0.0/8)");
    }
    if c.spray_direct > 250 * 256 * 254 {
        bail!("--spray-direct must be at most 16256000");
    }
    if c.spray_connections == 0 || c.spray_direct_concurrency == 0 {
        bail!("--spray-connections and --spray-direct-concurrency must be at least 1");
    }
    Ok(())
}

/// One fresh server per run, limiter on, trusting 127.0.0.1 (where the keep-alive
/// connections that carry forged `X-Forwarded-For` come from) as a proxy.
pub async fn spray(c: &Cli) -> anyhow::Result<Report> {
    let env = [("RAMPART_RATE_LIMIT_ENABLED", "true"), ("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32")];
    let mut report = Report::default();
    for run in 1..=c.runs {
        let server = Server::start(c, "rate limiting on, plain HTTP", &env, Transport::PlainHttp)?;
        let samples = with_cpu(&[server.pid()], run_once(c, &server, run)).await;
        let stopped = server.stop();
        report.add_run(samples?);
        stopped.context("stopping the server")?;
    }
    Ok(report.over("HTTP/1.1 (plain, --insecure-http)".to_owned()))
}

/// (forged, direct) address counts at each RSS sample: before the spray, then after 10%,
/// 25%, 50% and all of the forged ones, the direct ones spread over the spray in proportion.
fn checkpoints(forged: u64, direct: u64) -> Vec<(u64, u64)> {
    let mut points = vec![(0, 0)];
    for f in [0.1, 0.25, 0.5, 1.0] {
        let at = ((forged as f64 * f).round() as u64).clamp(1, forged);
        if points.last().is_some_and(|&(last, _)| at > last) {
            points.push((at, (u128::from(direct) * u128::from(at) / u128::from(forged)) as u64));
        }
    }
    points
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

/// One measured spray: one request per forged address over the keep-alive connections, and
/// at the same time one connection per direct address; the server's RSS at each checkpoint.
async fn run_once(c: &Cli, server: &Server, run: usize) -> anyhow::Result<Vec<Sample>> {
    let addr = server.addr;
    let mut conns = Vec::with_capacity(c.spray_connections);
    for _ in 0..c.spray_connections {
        let mut conn = connect(addr, None).await?;
        // Warm-up without a forwarded header: counted under the proxy's own address.
        expect_limited(&conn.exchange(&request(addr, None, true), IO_TIMEOUT).await?)?;
        conns.push(conn);
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let (points, mut samples, mut rss, mut tally) =
        (checkpoints(c.spray_forged, c.spray_direct), vec![], vec![], Tally::default());
    let (mut elapsed, mut previous) = (Duration::ZERO, (0, 0));
    for &(forged, direct) in &points {
        if (forged, direct) != previous {
            eprintln!("run {run}: spraying up to {forged} forged + {direct} direct addresses");
            let started = Instant::now();
            let keepalive = drive(conns, previous.0..forged, None, move |mut conn: Conn, i| async move {
                let result = conn.exchange(&request(addr, Some(forged_address(i)), true), IO_TIMEOUT).await;
                if result.is_err() {
                    // The connection is in an unknown state: start a new one.
                    match connect(addr, None).await {
                        Ok(fresh) => conn = fresh,
                        Err(e) => return (conn, Err(e)),
                    }
                }
                (conn, result.and_then(|head| expect_limited(&head)))
            });
            let one_shot =
                drive(vec![(); c.spray_direct_concurrency], previous.1..direct, None, move |(), j| async move {
                    let conn = connect(addr, Some(direct_address(j))).await;
                    let head = async { conn?.exchange(&request(addr, None, false), IO_TIMEOUT).await };
                    ((), head.await.and_then(|head| expect_limited(&head)))
                });
            let ((kept, keepalive), (_, one_shot)) = tokio::try_join!(keepalive, one_shot)?;
            elapsed += started.elapsed();
            (conns, previous) = (kept, (forged, direct));
            tally.merge(keepalive);
            tally.merge(one_shot);
        }
        rss.push(rss_kib(server.pid())?);
        let label = match forged {
            0 => "Server RSS before the spray (after one request per connection)".to_owned(),
            _ => format!("Server RSS after {} forged + {} direct addresses", count(forged), count(direct)),
        };
        samples.push(Sample::new(format!("spray_rss_{forged}"), label, "MiB", mib(rss[rss.len() - 1])));
    }
    let (n, addresses) = (points.len(), |i: usize| points[i].0 + points[i].1);
    let label = format!("RSS growth over the first {} addresses", count(addresses(1)));
    samples.push(Sample::new("spray_growth_first", label, "MiB", mib(rss[1].saturating_sub(rss[0]))));
    let label = format!("RSS growth over the last {} addresses", count(addresses(n - 1) - addresses(n - 2)));
    samples.push(Sample::new("spray_growth_last", label, "MiB", mib(rss[n - 1].saturating_sub(rss[n - 2]))));
    tally.seconds = elapsed.as_secs_f64();
    tally.warn("spray");
    let (keepalive, one_shot) = (c.spray_connections, c.spray_direct_concurrency);
    let label = format!("Requests/s during the spray ({keepalive} keep-alive + {one_shot} one-shot connections)");
    samples.push(Sample::new("spray_rps", label, "req/s", tally.per_second()).errors(tally.errors));
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

/// A new connection, from `source` if given.
async fn connect(addr: SocketAddr, source: Option<Ipv4Addr>) -> anyhow::Result<Conn> {
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(SocketAddr::from((source, 0))).with_context(|| format!("binding {source}"))?;
    }
    Ok(Conn::new(tokio::time::timeout(IO_TIMEOUT, socket.connect(addr)).await.context("connect timed out")??))
}

fn request(addr: SocketAddr, forwarded_for: Option<Ipv4Addr>, keep_alive: bool) -> Vec<u8> {
    let forwarded = forwarded_for.map(|ip| format!("X-Forwarded-For: {ip}\r\n")).unwrap_or_default();
    let close = if keep_alive { "" } else { "Connection: close\r\n" };
    format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n{forwarded}{close}\r\n").into_bytes()
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
        assert_eq!(
            (forged_address(0), forged_address(999_999)),
            (Ipv4Addr::new(10, 0, 0, 0), Ipv4Addr::new(10, 15, 66, 63))
        );
        assert_eq!(
            (direct_address(0), direct_address(249)),
            (Ipv4Addr::new(127, 1, 0, 1), Ipv4Addr::new(127, 1, 0, 250))
        );
        assert_eq!(direct_address(250), Ipv4Addr::new(127, 1, 1, 1));
        let direct: std::collections::HashSet<_> = (0..100_000).map(direct_address).collect();
        assert_eq!(direct.len(), 100_000);
        assert!(direct.iter().all(|a| a.octets()[3] != 0 && a.octets()[3] != 255));
    }

    #[test]
    fn checkpoints_scale_direct_addresses_with_forged_ones() {
        let points = [(0, 0), (100_000, 2_000), (250_000, 5_000), (500_000, 10_000), (1_000_000, 20_000)];
        assert_eq!(checkpoints(1_000_000, 20_000), points);
        assert_eq!(checkpoints(2, 0), [(0, 0), (1, 0), (2, 0)]);
        assert_eq!(
            (count(1_000_000), count(1_020_000), count(250_000), count(1234)),
            ("1M".into(), "1.02M".into(), "250k".into(), "1234".into())
        );
    }

    #[test]
    fn only_limited_200s_pass() {
        let head = |text: &str| crate::http1::parse_head(text.as_bytes()).unwrap().unwrap().0;
        assert!(expect_limited(&head("HTTP/1.1 200 OK\r\nx-ratelimit-limit: 1000\r\n\r\n")).is_ok());
        assert!(expect_limited(&head("HTTP/1.1 200 OK\r\n\r\n")).is_err());
        assert!(expect_limited(&head("HTTP/1.1 429 Too Many Requests\r\nx-ratelimit-limit: 1\r\n\r\n")).is_err());
        let req = request(SocketAddr::from(([127, 0, 0, 1], 80)), Some(forged_address(1)), false);
        let want =
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:80\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: close\r\n\r\n";
        assert_eq!(String::from_utf8(req).unwrap(), want);
    }
}
