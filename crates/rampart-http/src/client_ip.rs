use std::net::IpAddr;

use axum::http::HeaderMap;
use rampart_types::Cidr;

/// The client's address: the socket peer, unless the peer is a trusted proxy, in which
/// case the right-most `X-Forwarded-For` hop that is not itself a trusted proxy (or
/// `X-Real-IP`). A client talking to Rampart directly cannot choose its address.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // A hop that does not parse is skipped, never a reason to fall back to X-Real-IP.
        .filter_map(|hop| hop.parse::<IpAddr>().or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip())).ok())
        .collect();
    if let Some(client) = forwarded.iter().rev().find(|ip| !is_trusted(ip)) {
        return *client;
    }
    if let Some(first) = forwarded.first() {
        return *first;
    }
    headers.get("x-real-ip").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"), v.parse().expect("value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").expect("cidr")];
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(resolve(ip("203.0.113.9"), &spoof, &trusted), ip("203.0.113.9"), "untrusted peer");
        assert_eq!(resolve(ip("203.0.113.9"), &spoof, &[]), ip("203.0.113.9"), "no proxies configured");
        // The client prepends a forged hop; the proxy appends the real one: right-most wins.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(resolve(ip("10.0.0.1"), &chain, &trusted), ip("198.51.100.7"));
        let split = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.8")]);
        assert_eq!(resolve(ip("10.0.0.1"), &split, &trusted), ip("198.51.100.8"));
        let real = headers(&[("x-real-ip", "198.51.100.9")]);
        assert_eq!(resolve(ip("10.0.0.1"), &real, &trusted), ip("198.51.100.9"));
        let garbage = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(resolve(ip("10.0.0.1"), &garbage, &trusted), ip("10.0.0.1"));
        let mixed = headers(&[("x-forwarded-for", "junk, 198.51.100.3"), ("x-real-ip", "6.6.6.6")]);
        assert_eq!(resolve(ip("10.0.0.1"), &mixed, &trusted), ip("198.51.100.3"), "a bad hop does not open X-Real-IP");
    }
}
