//! Ed25519 signatures over compliance evidence reports.
//!
//! The signing key is derived from the root data key (HKDF label
//! `rampart/v1/compliance-report-signing`), so every node derives the same key and a master
//! key change keeps it. Its key id is `report-` followed by the first 16 hex digits of the
//! SHA-256 of the public key: stable, and checkable against the key it names.
//!
//! What is signed is never the bare document: it is `REPORT_SIGNING_CONTEXT || canonical
//! JSON`. The context starts with a letter outside the base64url alphabet's `.`-separated
//! JWT shape and contains a newline, so no report signature is a signature over a JWT
//! signing input (`base64url(header).base64url(claims)`), and a JWT signature is never a
//! report signature: the two purposes cannot be confused even though both keys are
//! published in one JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

use crate::keys::PurposeKey;

/// Prefix of every signed report message (domain separation from JWTs and anything else).
pub const REPORT_SIGNING_CONTEXT: &[u8] = b"rampart compliance report v1\n";
/// Prefix of the report signing key's id in the JWKS.
pub const REPORT_KID_PREFIX: &str = "report-";

#[derive(Debug, thiserror::Error)]
#[error("report signing key is unusable")]
pub struct ReportKeyError;

/// The report signing key; `Debug` shows only the key id.
pub struct ReportSigner {
    kid: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for ReportSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReportSigner({})", self.kid)
    }
}

/// The key id of a report public key: `report-` and 16 hex digits of its SHA-256.
pub fn report_kid(public_key: &[u8]) -> String {
    let digest = Sha256::digest(public_key);
    format!("{REPORT_KID_PREFIX}{}", &hex::encode(digest)[..16])
}

fn message(canonical: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(REPORT_SIGNING_CONTEXT.len() + canonical.len());
    m.extend_from_slice(REPORT_SIGNING_CONTEXT);
    m.extend_from_slice(canonical);
    m
}

impl ReportSigner {
    /// The signer whose Ed25519 seed is the purpose key.
    pub fn from_purpose(seed: &PurposeKey) -> Result<Self, ReportKeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.expose()).map_err(|_| ReportKeyError)?;
        let kid = report_kid(pair.public_key().as_ref());
        Ok(Self { kid, pair })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// The signature (base64url, no padding) over the context and `canonical`.
    pub fn sign(&self, canonical: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.sign(&message(canonical)).as_ref())
    }
}

/// Whether `signature` (base64url) is `public_key`'s signature over the context and
/// `canonical`. Malformed input is simply not a valid signature.
pub fn verify_report_signature(public_key: &[u8], canonical: &[u8], signature: &str) -> bool {
    let Ok(sig) = URL_SAFE_NO_PAD.decode(signature.trim_end_matches('=')) else { return false };
    UnparsedPublicKey::new(&ED25519, public_key).verify(&message(canonical), &sig).is_ok()
}

/// The canonical form of a JSON document that report signatures cover: compact (no
/// whitespace), object members sorted by their keys' UTF-8 bytes at every level, arrays in
/// order, scalars as serde_json writes them. Parsing a signed report and writing it again
/// gives the same bytes as long as it was not changed (reports hold no floating-point
/// numbers, so no number is rewritten).
pub fn canonical_json(v: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

/// SHA-256 of `bytes`, hex: names a signed report in the audit record of its generation.
pub fn report_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The raw bytes of a JWK `x` member (base64url, no padding).
pub fn jwk_public_key(x: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(x).ok().filter(|k| k.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataKey;

    #[test]
    fn report_signatures_verify_only_for_the_exact_document_and_key() {
        let root = DataKey::generate();
        let signer = root.report_signing_key().expect("signer");
        assert_eq!(signer.kid(), root.report_signing_key().expect("again").kid(), "derived, so stable");
        assert!(signer.kid().starts_with(REPORT_KID_PREFIX));
        assert_eq!(signer.kid(), report_kid(&signer.public_key()));
        let doc = br#"{"a":1}"#;
        let sig = signer.sign(doc);
        assert!(verify_report_signature(&signer.public_key(), doc, &sig));
        assert!(!verify_report_signature(&signer.public_key(), br#"{"a":2}"#, &sig), "changed document");
        let other = DataKey::generate().report_signing_key().expect("other");
        assert!(!verify_report_signature(&other.public_key(), doc, &sig), "another key");
        assert!(!verify_report_signature(&signer.public_key(), doc, "not base64!"), "malformed");
        assert!(!format!("{signer:?}").contains(&hex::encode(signer.public_key())));
    }

    #[test]
    fn canonical_json_sorts_members_and_is_compact() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{ "b": [ 2, {"z": null, "a": "x\n"} ], "a": true, "é": 1, "B": -3 }"#)
                .expect("json");
        assert_eq!(
            String::from_utf8(canonical_json(&v)).expect("utf8"),
            r#"{"B":-3,"a":true,"b":[2,{"a":"x\n","z":null}],"é":1}"#
        );
        let again: serde_json::Value = serde_json::from_slice(&canonical_json(&v)).expect("reparse");
        assert_eq!(canonical_json(&again), canonical_json(&v));
    }

    #[test]
    fn a_report_signature_is_never_a_jwt_signature() {
        use crate::{generate_jwt_key, JwtSigner};
        let report = DataKey::generate().report_signing_key().expect("signer");
        // Whatever the report key signs starts with the context, which a JWT signing input
        // (base64url.base64url) cannot: a newline and spaces are outside base64url.
        assert!(REPORT_SIGNING_CONTEXT
            .iter()
            .any(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_' || *b == b'.')));
        let input = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0";
        let sig = URL_SAFE_NO_PAD.decode(report.sign(input.as_bytes())).expect("b64");
        let as_jwt = UnparsedPublicKey::new(&ED25519, report.public_key());
        assert!(as_jwt.verify(input.as_bytes(), &sig).is_err(), "a report signature verifies no JWT input");
        // And a JWT key's signature over a document is no report signature.
        let jwt = JwtSigner::from_pkcs8("k1", &generate_jwt_key().expect("key")).expect("jwt signer");
        let token = jwt.sign(&serde_json::json!({ "a": 1 }));
        let (_, jwt_sig) = token.rsplit_once('.').expect("three parts");
        assert!(!verify_report_signature(&jwt.public_key(), br#"{"a":1}"#, jwt_sig));
    }
}
