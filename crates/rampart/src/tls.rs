//! TLS: rustls with TLS 1.2 and 1.3 only, ECDHE AEAD suites, no session tickets. A
//! self-signed certificate for localhost/127.0.0.1 is generated on first start when the
//! operator gives none.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use rampart_config::Config;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, SupportedCipherSuite};

use crate::datadir::{ensure_dir, write_private};

/// A generated certificate is valid from now for this long (the CA/Browser Forum's cap)...
const VALIDITY_DAYS: i64 = 397;
/// ...and replaced at start once fewer than this many days remain.
const RENEW_BEFORE_DAYS: i64 = 30;
/// Beside a generated certificate: when it expires (Unix seconds). Operator-supplied
/// certificates have none and are never touched.
const EXPIRY_FILE: &str = "cert.expires";

fn generate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    use rampart_core::Clock as _;
    let tls_dir = dir.join("tls");
    let (cert_path, key_path, expiry_path) =
        (tls_dir.join("cert.pem"), tls_dir.join("key.pem"), tls_dir.join(EXPIRY_FILE));
    let now = rampart_core::SystemClock.now().as_unix_seconds();
    let expires: Option<i64> = std::fs::read_to_string(&expiry_path).ok().and_then(|t| t.trim().parse().ok());
    let fresh = expires.is_some_and(|e| e - now > RENEW_BEFORE_DAYS * 86_400);
    if cert_path.exists() && key_path.exists() && fresh {
        return Ok((cert_path, key_path));
    }
    ensure_dir(&tls_dir)?;
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    // An hour of slack for clients whose clocks run a little behind.
    params.not_before = time::OffsetDateTime::from_unix_timestamp(now - 3600).context("certificate start")?;
    let not_after = now + VALIDITY_DAYS * 86_400;
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).context("certificate end")?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let key = rcgen::KeyPair::generate().context("cannot generate a TLS key")?;
    let cert = params.self_signed(&key).context("cannot generate a TLS certificate")?;
    for p in [&key_path, &cert_path, &expiry_path] {
        let _ = std::fs::remove_file(p);
    }
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem()).context("cannot write the TLS certificate")?;
    std::fs::write(&expiry_path, format!("{not_after}\n")).context("cannot write the certificate expiry")?;
    let why = if expires.is_some() {
        "renewed the generated TLS certificate (under 30 days left)"
    } else {
        "generated a self-signed TLS certificate"
    };
    tracing::info!(path = %cert_path.display(), valid_days = VALIDITY_DAYS, "{why}");
    Ok((cert_path, key_path))
}

fn strong_suite(s: &SupportedCipherSuite) -> bool {
    match s {
        // Every TLS 1.3 suite is AEAD with ephemeral key exchange.
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(_) => {
            let name = format!("{:?}", s.suite());
            name.contains("ECDHE") && (name.contains("GCM") || name.contains("CHACHA20_POLY1305"))
        }
    }
}

pub fn server_config(config: &Config) -> anyhow::Result<Arc<ServerConfig>> {
    let (cert_path, key_path) = match (&config.tls.cert, &config.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => generate(&config.server.data_dir)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("cannot read {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert_path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("cannot read a private key from {}", key_path.display()))?;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(strong_suite);
    let provider = CryptoProvider { ..provider };
    let mut tls = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // No session tickets: resumption secrets never leave the server.
    tls.send_tls13_tickets = 0;
    // The server's suite order (strongest first) wins over the client's.
    tls.ignore_client_order = true;
    Ok(Arc::new(tls))
}
