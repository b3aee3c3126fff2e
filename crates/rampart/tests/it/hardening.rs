use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{start, ServerOpts};

async fn tls_stream(data: &std::path::Path, port: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_stream_from(data, port, "127.0.0.1").await.unwrap()
}

/// A TLS connection from the loopback address `source` (the attacker's or a bystander's).
async fn tls_stream_from(
    data: &std::path::Path,
    port: u16,
    source: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let pem = std::fs::read(data.join("tls/cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))?;
    let tcp = socket.connect(([127, 0, 0, 1], port).into()).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

fn config_with(dir: &std::path::Path, toml: &str) -> String {
    let path = dir.join("rampart.toml");
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

/// A client that never finishes its headers is disconnected after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_client_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut opts = ServerOpts::new(&data);
    opts.extra_args = vec!["--config".into(), config_with(tmp.path(), "[server]\nheader_read_timeout_secs = 1\n")];
    let server = start(opts);
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut s = tls_stream(&data, port).await;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
    s.flush().await.unwrap();
    let mut buf = Vec::new();
    // Generous bound: the server must close on its own; this only stops a hung test.
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after the header timeout");
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

/// Oversized request headers get 431, not a crash or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut s = tls_stream(&data, port).await;
    let request = format!("GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    // The server may answer and close before the whole request is written.
    let _ = s.write_all(request.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    // The server is still healthy afterwards.
    assert_eq!(server.client().get(server.url("/health")).send().await.unwrap().status(), 200);
}

/// The outside review's break: one account's client held every connection by sending a
/// JSON body one byte every 4 s, and a fresh client waited 17 s. An address now gets at
/// most `max_connections_per_ip` connections (the rest are closed at once), a body that
/// trickles in below the minimum rate is answered 408, and a client from another address
/// is served at once throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_from_one_address_cannot_hold_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut opts = ServerOpts::new(&data);
    let toml = "[server]\nmax_connections = 120\nmax_connections_per_ip = 16\nbody_idle_timeout_secs = 2\n";
    opts.extra_args = vec!["--config".into(), config_with(tmp.path(), toml)];
    let server = start(opts);
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let token = server.login(&server.client(), "admin", crate::support::ADMIN_PASSWORD).await;
    let head = format!(
        "POST /api/v1/collections HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{"
    );
    let mut attackers = Vec::new();
    for _ in 0..150 {
        // Connections beyond the address's share are closed before or during the handshake.
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(5), tls_stream_from(&data, port, "127.0.0.5")).await
        {
            if s.write_all(head.as_bytes()).await.is_ok() && s.flush().await.is_ok() {
                attackers.push(s);
            }
        }
    }
    assert!(attackers.len() <= 16, "{} connections held by one address", attackers.len());

    let bystander = {
        let pem = std::fs::read(data.join("tls/cert.pem")).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .local_address("127.0.0.6".parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let served = tokio::time::timeout(Duration::from_secs(1), bystander.get(server.url("/health")).send()).await;
    assert!(served.is_ok_and(|r| r.is_ok_and(|r| r.status() == 200)), "another address is served within 1 s");

    // The trickle: one byte every 1.5 s (under the idle timeout) is still far below the rate.
    let mut slow = attackers.pop().expect("at least one attacker connection");
    let mut answer = Vec::new();
    let trickle = async {
        for _ in 0..20 {
            if slow.write_all(b" ").await.is_err() || slow.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut buf = [0u8; 512];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(10), slow.read(&mut buf)).await {
                answer.extend_from_slice(&buf[..n]);
                if n == 0 || !answer.is_empty() {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(40), trickle).await.unwrap();
    let mut rest = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("request_id") {
        match tokio::time::timeout(Duration::from_secs(2), slow.read(&mut rest)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&rest[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "a trickled body is refused: {text:?}");
    assert!(text.contains("\"request_id\""), "as a JSON error: {text}");
    drop(attackers);
}

fn openssl_dates(cert: &std::path::Path) -> (i64, i64) {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-startdate", "-enddate", "-dateopt", "iso_8601", "-in"])
        .arg(cert)
        .output()
        .expect("openssl (installed by ./scripts/test)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let date = |key: &str| {
        let v = text.lines().find_map(|l| l.strip_prefix(key)).unwrap().trim().to_owned();
        let v = v.replace(' ', "T").replace("TZ", "Z");
        rampart_types::Timestamp::parse_rfc3339(&v).unwrap_or_else(|| panic!("{v}")).as_unix_seconds()
    };
    (date("notBefore="), date("notAfter="))
}

/// A generated certificate is valid from now for at most 397 days (scanners rated 1975 to
/// 4096 HIGH), and is renewed at start once fewer than 30 days remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_certificate_is_short_lived_and_renewed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    assert!(server.stop().success());
    let cert = data.join("tls/cert.pem");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (from, until) = openssl_dates(&cert);
    assert!((now - 7200..=now).contains(&from), "valid from about now: {from} vs {now}");
    assert!(until - from <= 398 * 86_400 && until - now >= 396 * 86_400, "at most 397 days: {from}..{until}");

    let first = std::fs::read(&cert).unwrap();
    let server = start(ServerOpts::new(&data));
    assert!(server.stop().success());
    assert_eq!(std::fs::read(&cert).unwrap(), first, "kept while far from expiry");
    std::fs::write(data.join("tls/cert.expires"), format!("{}\n", now + 10 * 86_400)).unwrap();
    let server = start(ServerOpts::new(&data));
    let served = server.client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(served.status(), 200, "the client trusts the renewed certificate");
    assert!(server.stop().success());
    assert_ne!(std::fs::read(&cert).unwrap(), first, "renewed with under 30 days left");
}

/// The newcomer trial's defect: over HTTP/2 a request refused before its body was read
/// (413, 415, 403 ip_blocked) often reached curl as a stream reset with no status. Every
/// refusal arrives as its JSON status, over HTTP/1.1 and HTTP/2 alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_body_arrive_as_their_status_on_http1_and_http2() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let admin = server.login(&server.client(), "admin", crate::support::ADMIN_PASSWORD).await;
    let res = server
        .client()
        .post(server.url("/api/v1/admin/security/block-ip"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"ip_address": "127.0.0.8", "reason": "test", "duration_hours": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let pem = std::fs::read(data.join("tls/cert.pem")).unwrap();
    let client = |h2: bool, source: &str| {
        let b = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .local_address(source.parse::<std::net::IpAddr>().unwrap());
        if h2 { b.http2_prior_knowledge() } else { b.http1_only() }.build().unwrap()
    };
    let big = vec![b'a'; 2 * 1024 * 1024];
    for h2 in [false, true] {
        let version = if h2 { reqwest::Version::HTTP_2 } else { reqwest::Version::HTTP_11 };
        let cases: Vec<(&str, &str, &str, u16)> = vec![
            ("127.0.0.1", "/api/v1/collections", "application/json", 413),
            ("127.0.0.1", "/api/v1/collections", "text/plain", 415),
            ("127.0.0.8", "/api/v1/collections", "application/json", 403),
        ];
        for (source, path, content_type, want) in cases {
            let c = client(h2, source);
            for _ in 0..10 {
                let res = c
                    .post(server.url(path))
                    .bearer_auth(&admin)
                    .header("content-type", content_type)
                    .body(big.clone())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{want} over {version:?} arrived as an error: {e}"));
                assert_eq!((res.version(), res.status().as_u16()), (version, want));
                let body: serde_json::Value = res.json().await.unwrap();
                assert!(body["code"].is_string() && body["request_id"].is_string(), "{body}");
            }
        }
    }
}
