//! Verifying a signed SOC 2 evidence report against trusted keys only (the local
//! deployment's, or a JWKS), as `rampart compliance verify-report` does offline.

use rampart_crypto::canonical_json;
use serde_json::Value;

/// A public key a report may be verified with: from the local deployment or a JWKS.
#[derive(Debug, Clone)]
pub struct ReportKey {
    pub kid: String,
    pub public_key: Vec<u8>,
}

/// Why a report does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("malformed report: {0}")]
    Malformed(&'static str),
    #[error("unsupported signature algorithm {0:?} (expected EdDSA)")]
    Algorithm(String),
    #[error("signed by an unknown key {0:?}: not this deployment's report key")]
    UnknownKey(String),
    #[error("the signature does not match the report: it was changed after signing, or signed by another key")]
    BadSignature,
}

/// The report signing keys of a JWKS document (`/.well-known/jwks.json`): Ed25519 entries
/// whose kid starts with `report-` and is the one their key yields. JWT keys are skipped.
pub fn report_keys_from_jwks(jwks: &Value) -> Vec<ReportKey> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else { return Vec::new() };
    keys.iter()
        .filter(|k| k.get("kty").and_then(Value::as_str) == Some("OKP"))
        .filter(|k| k.get("crv").and_then(Value::as_str) == Some("Ed25519"))
        .filter_map(|k| {
            let kid = k.get("kid")?.as_str()?;
            let public_key = rampart_crypto::jwk_public_key(k.get("x")?.as_str()?)?;
            (kid.starts_with(rampart_crypto::REPORT_KID_PREFIX) && rampart_crypto::report_kid(&public_key) == kid)
                .then(|| ReportKey { kid: kid.to_owned(), public_key })
        })
        .collect()
}

/// Checks a signed report envelope `{"report", "signature": {"alg", "kid", "value"}}`
/// against `trusted` keys only: a key inside the report itself anchors nothing and is never
/// used. Returns the kid that verified it.
pub fn verify_report(envelope: &Value, trusted: &[ReportKey]) -> Result<String, ReportError> {
    let report = envelope.get("report").filter(|r| r.is_object()).ok_or(ReportError::Malformed("no report object"))?;
    let sig = envelope.get("signature").ok_or(ReportError::Malformed("no signature"))?;
    let text = |k: &'static str| sig.get(k).and_then(Value::as_str).ok_or(ReportError::Malformed(k));
    let alg = text("alg")?;
    if alg != "EdDSA" {
        return Err(ReportError::Algorithm(alg.chars().take(32).collect()));
    }
    let kid = text("kid")?;
    let value = text("value")?;
    let key =
        trusted.iter().find(|k| k.kid == kid).ok_or_else(|| ReportError::UnknownKey(kid.chars().take(64).collect()))?;
    if rampart_crypto::verify_report_signature(&key.public_key, &canonical_json(report), value) {
        Ok(key.kid.clone())
    } else {
        Err(ReportError::BadSignature)
    }
}
