//! The TLS certificate: expiry, self-signed outside localhost, key size, signature hash.
//! Read from the configured (or generated) file, or from what a live server presents.

use rampart_config::Config;
use rampart_core::Clock as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::json;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::{Findings, Severity};

/// Warn when fewer days than this remain (SPEC: certificate expiry under 30 days).
pub const EXPIRY_WARNING_DAYS: i64 = 30;
const MIN_RSA_BITS: usize = 2048;

/// The certificate `serve` would use: `--tls-cert` or the generated one.
pub fn check_configured(config: &Config, out: &mut Findings) {
    if config.server.insecure_http {
        return;
    }
    let path = config.tls.cert.clone().unwrap_or_else(|| config.server.data_dir.join("tls").join("cert.pem"));
    let Ok(chain) = CertificateDer::pem_file_iter(&path).and_then(|i| i.collect::<Result<Vec<_>, _>>()) else {
        if config.tls.cert.is_some() {
            out.flag(
                "tls_certificate",
                Severity::Critical,
                "the configured certificate cannot be read; the server would refuse to start",
                json!({ "path": path }),
                "point --tls-cert (RAMPART_TLS_CERT) at a readable PEM chain",
            );
        }
        return;
    };
    let public = !config.server.bind.ip().is_loopback();
    analyse(&chain, public, &path.display().to_string(), out);
}

/// Judges the leaf of `chain`. `public`: clients on other machines will see it.
pub fn analyse(chain: &[CertificateDer<'_>], public: bool, source: &str, out: &mut Findings) {
    let Some(Ok((_, cert))) = chain.first().map(|der| X509Certificate::from_der(der.as_ref())) else {
        out.flag(
            "tls_certificate",
            Severity::Critical,
            "the certificate is not valid X.509",
            json!({ "source": source }),
            "install a valid PEM certificate chain",
        );
        return;
    };
    let now = rampart_core::SystemClock.now().as_unix_seconds();
    let not_after = cert.validity().not_after.timestamp();
    let days_left = (not_after - now).div_euclid(86_400);
    let self_signed = cert.subject() == cert.issuer();
    let names = dns_and_ip_names(&cert);
    let evidence = json!({
        "source": source,
        "subject": cert.subject().to_string(),
        "issuer": cert.issuer().to_string(),
        "names": names,
        "not_after": cert.validity().not_after.to_string(),
        "days_left": days_left,
        "self_signed": self_signed,
        "chain_length": chain.len(),
    });
    if not_after <= now {
        out.flag(
            "tls_expiry",
            Severity::Critical,
            "the certificate has expired",
            evidence.clone(),
            renew_fix(self_signed),
        );
    } else if days_left < EXPIRY_WARNING_DAYS {
        out.flag(
            "tls_expiry",
            Severity::Warning,
            format!("the certificate expires in {days_left} days"),
            evidence.clone(),
            renew_fix(self_signed),
        );
    } else {
        out.pass("tls_expiry", format!("the certificate is valid for {days_left} more days"), evidence.clone());
    }
    out.judge(
        "tls_self_signed",
        !(self_signed && public),
        Severity::Warning,
        (
            "the certificate is CA-issued, or self-signed for loopback only",
            "a self-signed certificate on an address other machines reach: their clients cannot verify it",
        ),
        evidence,
        "give a CA-issued certificate with --tls-cert/--tls-key (RAMPART_TLS_CERT/RAMPART_TLS_KEY)",
    );
    key_and_signature(&cert, source, out);
}

fn renew_fix(self_signed: bool) -> &'static str {
    if self_signed {
        "restart the server: a generated certificate is renewed at start once under 30 days remain"
    } else {
        "renew the certificate with your CA and restart the server"
    }
}

fn key_and_signature(cert: &X509Certificate<'_>, source: &str, out: &mut Findings) {
    let (algorithm, bits) = match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => ("rsa", rsa.key_size()),
        Ok(PublicKey::EC(ec)) => ("ec", ec.key_size()),
        Ok(other) => (key_kind(&other), 0),
        Err(_) => ("unknown", 0),
    };
    let signature = cert.signature_algorithm.algorithm.to_id_string();
    // SHA-1 and MD5 signatures: forgeable.
    let weak_hash = matches!(
        signature.as_str(),
        "1.2.840.113549.1.1.5" | "1.2.840.113549.1.1.4" | "1.2.840.10045.4.1" | "1.3.14.3.2.29"
    );
    let weak_key = algorithm == "rsa" && bits < MIN_RSA_BITS;
    out.judge(
        "tls_key",
        !weak_key && !weak_hash,
        Severity::Critical,
        ("the certificate's key and signature are strong", "the certificate has a short RSA key or a SHA-1/MD5 signature"),
        json!({ "source": source, "key_algorithm": algorithm, "key_bits": bits, "signature_algorithm": signature, "min_rsa_bits": MIN_RSA_BITS }),
        "issue a new certificate with an ECDSA P-256 or RSA 3072 key and a SHA-256 signature",
    );
}

fn key_kind(key: &PublicKey<'_>) -> &'static str {
    match key {
        PublicKey::DSA(_) => "dsa",
        PublicKey::GostR3410(_) | PublicKey::GostR3410_2012(_) => "gost",
        _ => "other",
    }
}

fn dns_and_ip_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else { return Vec::new() };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => <[u8; 4]>::try_from(*ip).ok().map(|a| std::net::IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*ip).ok().map(|a| std::net::IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(days: i64) -> CertificateDer<'static> {
        let now = time::OffsetDateTime::now_utc();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn expiry_under_thirty_days_warns_and_an_expired_certificate_is_critical() {
        let mut out = Findings::default();
        analyse(&[cert(10)], false, "test", &mut out);
        assert_eq!(out.get("tls_expiry").unwrap().severity, Severity::Warning);
        let mut out = Findings::default();
        analyse(&[cert(-2)], false, "test", &mut out);
        assert_eq!(out.get("tls_expiry").unwrap().severity, Severity::Critical);
        let mut out = Findings::default();
        analyse(&[cert(200)], false, "test", &mut out);
        assert_eq!(out.get("tls_expiry").unwrap().severity, Severity::Ok);
        assert_eq!(out.get("tls_key").unwrap().severity, Severity::Ok, "{:?}", out.get("tls_key"));
        assert_eq!(out.get("tls_key").unwrap().evidence["key_algorithm"], "ec");
    }

    #[test]
    fn self_signed_is_fine_on_loopback_and_a_warning_when_others_connect() {
        let mut out = Findings::default();
        analyse(&[cert(200)], false, "test", &mut out);
        assert_eq!(out.get("tls_self_signed").unwrap().severity, Severity::Ok);
        let mut out = Findings::default();
        analyse(&[cert(200)], true, "test", &mut out);
        assert_eq!(out.get("tls_self_signed").unwrap().severity, Severity::Warning);
        assert_eq!(out.get("tls_self_signed").unwrap().evidence["names"], json!(["localhost"]));
    }

    /// rcgen (on ring) makes no RSA keys: openssl (installed by scripts/test) makes the weak one.
    #[test]
    fn a_short_rsa_key_and_a_sha1_signature_are_critical() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("weak.pem");
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:1024", "-sha1", "-nodes", "-days", "90", "-subj", "/CN=weak"])
            .arg("-keyout")
            .arg(dir.path().join("weak.key"))
            .arg("-out")
            .arg(&pem)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed by scripts/test");
        assert!(status.success());
        let chain: Vec<_> = CertificateDer::pem_file_iter(&pem).unwrap().map(Result::unwrap).collect();
        let mut out = Findings::default();
        analyse(&chain, false, "test", &mut out);
        let f = out.get("tls_key").unwrap();
        assert_eq!(f.severity, Severity::Critical, "{f:?}");
        assert_eq!(f.evidence["key_algorithm"], "rsa");
        assert_eq!(f.evidence["key_bits"], 1024);
    }

    #[test]
    fn garbage_is_reported_not_panicked_on() {
        let mut out = Findings::default();
        analyse(&[CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])], false, "test", &mut out);
        assert_eq!(out.get("tls_certificate").unwrap().severity, Severity::Critical);
    }
}
