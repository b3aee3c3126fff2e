use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{start, ServerOpts};

async fn tls_stream(data: &std::path::Path, port: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
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
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
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
