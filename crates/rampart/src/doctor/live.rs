//! Checks against the running server (`--url`): it answers, which TLS versions it accepts
//! (TLS 1.0 and 1.1 must be refused), the certificate it presents, its security headers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_config::Config;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, ProtocolVersion, SignatureScheme};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{certs, Findings, Severity};

const TIMEOUT: Duration = Duration::from_secs(5);
/// Headers every response carries (SPEC section 6); a proxy that strips them shows here.
const SECURITY_HEADERS: [&str; 4] =
    ["strict-transport-security", "x-content-type-options", "content-security-policy", "x-frame-options"];

pub async fn check(url: &str, ca_cert: Option<&Path>, config: &Config, out: &mut Findings) {
    let Some((https, host, addr)) = target(url).await else {
        out.flag(
            "server_reachable",
            Severity::Critical,
            "the --url cannot be resolved to an address",
            json!({ "url": url }),
            "give the server's address as https://HOST:PORT",
        );
        return;
    };
    if !https {
        out.flag(
            "transport",
            if addr.ip().is_loopback() { Severity::Warning } else { Severity::Critical },
            "the server is reached over plain HTTP",
            json!({ "url": url }),
            "serve TLS (drop --insecure-http) and use an https:// URL",
        );
    } else {
        tls_versions(addr, &host, out).await;
    }
    let ca = ca_cert.map(Path::to_path_buf).or_else(|| {
        Some(config.server.data_dir.join("tls").join("cert.pem")).filter(|p| p.exists() && config.tls.cert.is_none())
    });
    headers(url, ca.as_deref(), out).await;
}

async fn target(url: &str) -> Option<(bool, String, SocketAddr)> {
    let (https, rest) = match url.split_once("://")? {
        ("https", r) => (true, r),
        ("http", r) => (false, r),
        _ => return None,
    };
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?.to_owned(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_owned(),
    };
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if https { 443 } else { 80 })
    };
    let addr = tokio::net::lookup_host(with_port).await.ok()?.next()?;
    Some((https, host, addr))
}

/// TLS 1.0 and 1.1 by hand (rustls speaks neither): a ClientHello offering only that
/// version, answered with a ServerHello (accepted) or an alert / a closed connection.
async fn legacy_accepted(addr: SocketAddr, version: [u8; 2]) -> Option<bool> {
    let hello = legacy_client_hello(version);
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await.ok()?.ok()?;
    stream.write_all(&hello).await.ok()?;
    let mut head = [0u8; 3];
    match tokio::time::timeout(TIMEOUT, stream.read_exact(&mut head)).await {
        // A handshake record in the offered version: the server went on with it.
        Ok(Ok(_)) => Some(head[0] == 0x16 && head[1..3] == version),
        Ok(Err(_)) => Some(false),
        Err(_) => None,
    }
}

/// A minimal ClientHello for `version` with CBC and GCM suites the old versions used.
pub(crate) fn legacy_client_hello(version: [u8; 2]) -> Vec<u8> {
    let suites: [u16; 6] = [0xc013, 0xc014, 0xc009, 0xc00a, 0x002f, 0x0035];
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&rand::random::<[u8; 32]>());
    body.push(0); // no session id
    body.extend_from_slice(&u16::try_from(suites.len() * 2).unwrap_or(0).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression only
                                     // supported_groups (secp256r1, x25519) and ec_point_formats (uncompressed).
    let extensions: [u8; 16] =
        [0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x1d, 0x00, 0x0b, 0x00, 0x02, 0x01, 0x00];
    body.extend_from_slice(&u16::try_from(extensions.len()).unwrap_or(0).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap_or(0).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

async fn tls_versions(addr: SocketAddr, host: &str, out: &mut Findings) {
    let mut accepted_legacy = Vec::new();
    let mut unknown = Vec::new();
    for (name, version) in [("TLS 1.0", [3, 1]), ("TLS 1.1", [3, 2])] {
        match legacy_accepted(addr, version).await {
            Some(true) => accepted_legacy.push(name),
            Some(false) => {}
            None => unknown.push(name),
        }
    }
    let mut modern = Vec::new();
    let mut presented: Option<Vec<CertificateDer<'static>>> = None;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        if let Some((v, chain)) = handshake(addr, host, version).await {
            modern.push(match v {
                ProtocolVersion::TLSv1_3 => "TLS 1.3",
                _ => "TLS 1.2",
            });
            presented.get_or_insert(chain);
        }
    }
    let accepted: Vec<&str> = accepted_legacy.iter().chain(&modern).copied().collect();
    let evidence = json!({ "address": addr.to_string(), "legacy_probes_unanswered": unknown, "accepted": accepted });
    if modern.is_empty() {
        out.flag(
            "tls_versions",
            Severity::Critical,
            "no TLS 1.2 or 1.3 handshake succeeded: is this a Rampart server?",
            evidence,
            "check the --url and that the server is running",
        );
    } else {
        out.judge(
            "tls_versions",
            accepted_legacy.is_empty(),
            Severity::Critical,
            (
                "only TLS 1.2 and 1.3 are accepted",
                "TLS 1.0 or 1.1 is accepted (by this server or a proxy in front of it)",
            ),
            evidence,
            "allow only TLS 1.2 and 1.3 on whatever terminates TLS (Rampart itself never offers older versions)",
        );
    }
    if let Some(chain) = presented {
        certs::analyse(&chain, !addr.ip().is_loopback(), &format!("presented by {addr}"), out);
    }
}

/// One handshake pinned to `version`, keeping whatever chain the server presents (the
/// chain is judged, not trusted: nothing is sent over this connection).
async fn handshake(
    addr: SocketAddr,
    host: &str,
    version: &'static rustls::SupportedProtocolVersion,
) -> Option<(ProtocolVersion, Vec<CertificateDer<'static>>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(ChainRecorder { provider: provider.clone(), chain: Mutex::new(Vec::new()) });
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).ok()?;
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await.ok()?.ok()?;
    let stream = tokio::time::timeout(TIMEOUT, tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp))
        .await
        .ok()?
        .ok()?;
    let negotiated = stream.get_ref().1.protocol_version()?;
    let chain = recorder.chain.lock().map(|c| c.clone()).unwrap_or_default();
    Some((negotiated, chain))
}

#[derive(Debug)]
struct ChainRecorder {
    provider: Arc<rustls::crypto::CryptoProvider>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for ChainRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.chain.lock() {
            *chain = std::iter::once(end_entity).chain(intermediates).map(|c| c.clone().into_owned()).collect();
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `GET /health` through a verifying client: reachable, trusted, and its headers.
async fn headers(url: &str, ca: Option<&Path>, out: &mut Findings) {
    let mut builder = reqwest::Client::builder().timeout(TIMEOUT).use_rustls_tls();
    let mut roots = 0;
    if let Some(ca) = ca {
        for cert in CertificateDer::pem_file_iter(ca).into_iter().flatten().flatten() {
            if let Ok(c) = reqwest::Certificate::from_der(&cert) {
                builder = builder.add_root_certificate(c);
                roots += 1;
            }
        }
    }
    let Ok(client) = builder.build() else { return };
    let health = format!("{}/health", url.trim_end_matches('/'));
    let response = match client.get(&health).send().await {
        Ok(r) => r,
        Err(e) => {
            let untrusted = error_chain(&e).to_ascii_lowercase().contains("certificate");
            out.flag(
                "server_reachable",
                if untrusted { Severity::Warning } else { Severity::Critical },
                if untrusted {
                    "the server's certificate is not trusted by the given CA (--ca-cert) or the system"
                } else {
                    "the server does not answer /health"
                },
                json!({ "url": health, "ca_certificates": roots, "error": error_chain(&e) }),
                if untrusted {
                    "pass the CA that issued the certificate with --ca-cert"
                } else {
                    "start the server, or check --url"
                },
            );
            return;
        }
    };
    let status = response.status().as_u16();
    out.judge(
        "server_reachable",
        status == 200,
        Severity::Critical,
        ("the server answers /health over a verified connection", "the server's /health does not answer 200"),
        json!({ "url": health, "status": status }),
        "check the server's log",
    );
    let missing: Vec<&str> =
        SECURITY_HEADERS.iter().copied().filter(|h| !response.headers().contains_key(*h)).collect();
    out.judge(
        "security_headers",
        missing.is_empty(),
        Severity::Warning,
        ("security headers arrive at the client", "security headers are missing (a proxy in front may strip them)"),
        json!({ "missing": missing, "expected": SECURITY_HEADERS }),
        "let the reverse proxy pass Rampart's response headers through unchanged",
    );
}

/// An error and its sources, for matching on what went wrong.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_hello_is_a_well_formed_record() {
        let hello = legacy_client_hello([3, 2]);
        assert_eq!(&hello[..3], &[0x16, 0x03, 0x01]);
        let record_len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        assert_eq!(record_len, hello.len() - 5);
        assert_eq!(hello[5], 0x01, "ClientHello");
        let body_len = usize::from(hello[7]) << 8 | usize::from(hello[8]);
        assert_eq!(body_len, hello.len() - 9);
        assert_eq!(&hello[9..11], &[3, 2], "offers TLS 1.1 only");
    }
}
