//! How a node reaches its database: the libpq-style URL, and TLS when it asks for it.
//! `sslmode=require`, `verify-ca` and `verify-full` all verify the server's certificate
//! against `sslrootcert=PATH` and its name against the host (stricter than libpq's
//! `require`); without `sslmode`, or with `disable`, the connection is plain, for a local
//! socket or loopback. Nothing here ever prints the URL: it may carry a password.

use std::sync::Arc;

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};
use rampart_store::{StoreError, StoreResult};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::map_err;

#[derive(Clone)]
pub(crate) struct Connector {
    config: Config,
    tls: Option<MakeRustlsConnect>,
}

fn refused(why: &str) -> StoreError {
    StoreError::Unavailable(Box::new(std::io::Error::other(format!("database URL: {why}"))))
}

impl Connector {
    pub(crate) fn parse(url: &str) -> StoreResult<Self> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let (mut mode, mut root_cert, mut rest) = (None, None, Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", v)) => mode = Some(v.to_owned()),
                Some(("sslrootcert", v)) => root_cert = Some(v.to_owned()),
                _ => rest.push(pair),
            }
        }
        let plain = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
        let mut config: Config = plain.parse().map_err(|_| refused("not a valid postgres:// URL"))?;
        let tls = match mode.as_deref() {
            None | Some("disable") => {
                config.ssl_mode(SslMode::Disable);
                None
            }
            Some("require" | "verify-ca" | "verify-full") => {
                let path = root_cert.ok_or_else(|| {
                    refused("TLS needs sslrootcert=PATH (the CA that signed the server's certificate)")
                })?;
                config.ssl_mode(SslMode::Require);
                Some(MakeRustlsConnect::new(client_config(&path)?))
            }
            Some(_) => return Err(refused("sslmode must be disable, require, verify-ca or verify-full")),
        };
        Ok(Self { config, tls })
    }

    pub(crate) fn connect(&self) -> StoreResult<Client> {
        match &self.tls {
            None => self.config.connect(NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        }
        .map_err(map_err)
    }
}

/// Verifies the server against the CA certificates in `path` (PEM), nothing else.
fn client_config(path: &str) -> StoreResult<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|_| refused("cannot read the sslrootcert file"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|_| refused("the sslrootcert file is not PEM certificates"))?;
        roots.add(cert).map_err(|_| refused("the sslrootcert file holds an unusable certificate"))?;
    }
    if roots.is_empty() {
        return Err(refused("the sslrootcert file holds no certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| refused("no TLS protocol version available"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
