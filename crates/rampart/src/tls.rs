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

fn generate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let tls_dir = dir.join("tls");
    let (cert_path, key_path) = (tls_dir.join("cert.pem"), tls_dir.join("key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    ensure_dir(&tls_dir)?;
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).context("cannot generate a TLS certificate")?;
    write_private(&key_path, certified.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, certified.cert.pem()).context("cannot write the TLS certificate")?;
    tracing::info!(path = %cert_path.display(), "generated a self-signed TLS certificate");
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
    Ok(Arc::new(tls))
}
