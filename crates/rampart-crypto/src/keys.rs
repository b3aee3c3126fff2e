use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("master key must be base64 of exactly 32 bytes")]
    BadMasterKeyEncoding,
    #[error("master key does not match this data directory (key check value differs)")]
    WrongMasterKey,
    #[error("a wrapped key failed to open (wrong key-encrypting key or damaged)")]
    UnwrapFailed,
    #[error("AES-256-GCM failed")]
    Cipher,
}

/// The root secret; everything else is derived from it with HKDF-SHA256 and distinct labels.
pub struct MasterKey(SecretBox<[u8; 32]>);

/// A 256-bit key derived for one purpose (audit chain, blind index, ...).
pub struct PurposeKey(SecretBox<[u8; 32]>);

impl PurposeKey {
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
    /// HMAC-SHA256 of `data` under this key: a pseudonym that only key holders can compute.
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        hmac_sha256(self.expose(), data)
    }
    pub(crate) fn from_bytes(b: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(b)))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}
impl std::fmt::Debug for PurposeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PurposeKey(<redacted>)")
    }
}

const KCV_LABEL: &[u8] = b"rampart/v1/key-check-value";

impl MasterKey {
    pub fn generate() -> Self {
        Self(SecretBox::new(Box::new(crate::random_bytes::<32>())))
    }

    /// Parses base64 text (surrounding whitespace ignored) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let mut decoded = STANDARD.decode(text.trim()).map_err(|_| KeyError::BadMasterKeyEncoding)?;
        let result = <[u8; 32]>::try_from(decoded.as_slice())
            .map(|arr| Self(SecretBox::new(Box::new(arr))))
            .map_err(|_| KeyError::BadMasterKeyEncoding);
        zeroize::Zeroize::zeroize(&mut decoded);
        result
    }

    /// Base64 text for writing the key file; the caller must treat the result as secret.
    pub fn to_base64(&self) -> secrecy::SecretString {
        secrecy::SecretString::from(STANDARD.encode(self.0.expose_secret()))
    }

    pub fn derive(&self, label: &[u8]) -> PurposeKey {
        let hk = Hkdf::<Sha256>::new(Some(b"rampart-master-key"), self.0.expose_secret());
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let _ = hk.expand(label, &mut out);
        let key = PurposeKey(SecretBox::new(Box::new(out)));
        zeroize::Zeroize::zeroize(&mut out);
        key
    }

    /// A value stored beside the data that tells whether a later start uses the same key,
    /// without revealing anything about the key.
    pub fn check_value(&self) -> [u8; 32] {
        hmac_sha256(self.derive(KCV_LABEL).expose(), b"check")
    }

    pub fn verify_check_value(&self, stored: &[u8]) -> Result<(), KeyError> {
        if crate::ct_eq(self.check_value(), stored) {
            Ok(())
        } else {
            Err(KeyError::WrongMasterKey)
        }
    }
}

pub(crate) fn hmac_sha256(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    // HMAC is defined for keys of every length, so `new_from_slice` cannot fail here.
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Keyed blind index: equality lookups on a field without storing its value.
pub struct BlindIndexKey(PurposeKey);

impl BlindIndexKey {
    pub(crate) fn from_purpose(key: PurposeKey) -> Self {
        Self(key)
    }

    /// HMAC over collection, field and value, each length-prefixed so no two distinct
    /// triples produce the same input.
    pub fn token(&self, collection: &str, field: &str, value: &str) -> [u8; 32] {
        let mut input = Vec::with_capacity(collection.len() + field.len() + value.len() + 24);
        for part in [collection, field, value] {
            input.extend_from_slice(&(part.len() as u64).to_be_bytes());
            input.extend_from_slice(part.as_bytes());
        }
        hmac_sha256(self.0.expose(), &input)
    }
}

/// Signs device tokens (OWASP device cookies): proof that a client once completed a login
/// for an account, so the account's failure delay need not apply to it.
pub struct DeviceKey(PurposeKey);

impl DeviceKey {
    pub(crate) fn from_purpose(key: PurposeKey) -> Self {
        Self(key)
    }

    pub fn sign(&self, username: &str, device_id: &[u8; 16], issued_ms: i64) -> [u8; 32] {
        let mut input = Vec::with_capacity(username.len() + 40);
        input.extend_from_slice(b"device:");
        input.extend_from_slice(&(username.len() as u64).to_be_bytes());
        input.extend_from_slice(username.as_bytes());
        input.extend_from_slice(device_id);
        input.extend_from_slice(&issued_ms.to_be_bytes());
        hmac_sha256(self.0.expose(), &input)
    }
}

fn webhook_mac(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    #[allow(clippy::expect_used)] // HMAC takes keys of any length
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// `X-Rampart-Signature` value for a webhook body: `t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`.
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    webhook_signatures(&[secret], timestamp, body)
}

/// The same with one `v1=` per secret, in order: during a rotation's overlap the new
/// secret's signature comes first and the previous one's after it, so a receiver holding
/// either secret verifies the delivery.
pub fn webhook_signatures(secrets: &[&[u8]], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&webhook_mac(secret, timestamp, body));
    }
    header
}

/// Checks a webhook signature the way a receiver should: constant-time MAC comparison (any
/// one `v1=` may match: several are sent while a secret is being rotated) and a timestamp
/// no older than `tolerance_secs` (replays of old deliveries are refused).
pub fn verify_webhook_signature(secret: &[u8], header: &str, body: &[u8], now_unix: i64, tolerance_secs: i64) -> bool {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now_unix - t).abs() > tolerance_secs {
        return false;
    }
    let expected = webhook_mac(secret, t, body);
    // Every candidate is compared, so the time taken does not say which one matched.
    signatures.iter().fold(false, |found, v1| crate::ct_eq(&expected, v1) | found)
}

#[cfg(test)]
mod webhook_signature_tests {
    use super::*;

    #[test]
    fn during_an_overlap_either_secret_verifies_and_no_other() {
        let header = webhook_signatures(&[b"new-secret", b"old-secret"], 1000, b"{}");
        assert_eq!(header.matches("v1=").count(), 2);
        assert!(verify_webhook_signature(b"new-secret", &header, b"{}", 1000, 300));
        assert!(verify_webhook_signature(b"old-secret", &header, b"{}", 1000, 300));
        assert!(!verify_webhook_signature(b"other-secret", &header, b"{}", 1000, 300));
        assert!(!verify_webhook_signature(b"new-secret", &header, b"{!}", 1000, 300), "body bound");
        assert!(!verify_webhook_signature(b"new-secret", &header, b"{}", 2000, 300), "stale");
        assert_eq!(webhook_signature(b"k", 5, b"x"), webhook_signatures(&[b"k"], 5, b"x"));
    }
}

/// Key of the tamper-evident audit chain: `hash = HMAC(key, prev_hash || record)`.
pub struct AuditMacKey(PurposeKey);

impl AuditMacKey {
    pub(crate) fn from_purpose(key: PurposeKey) -> Self {
        Self(key)
    }

    pub fn chain(&self, prev_hash: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
        let mut input = Vec::with_capacity(32 + canonical.len());
        input.extend_from_slice(prev_hash);
        input.extend_from_slice(canonical);
        hmac_sha256(self.0.expose(), &input)
    }

    pub fn head_mac(&self, seq: i64, hash: &[u8; 32]) -> [u8; 32] {
        let mut input = Vec::with_capacity(45);
        input.extend_from_slice(b"head:");
        input.extend_from_slice(&seq.to_be_bytes());
        input.extend_from_slice(hash);
        hmac_sha256(self.0.expose(), &input)
    }

    /// Whether `mac` is this key's signature of the head (compared in constant time).
    pub fn head_is_signed(&self, seq: i64, hash: &[u8; 32], mac: &[u8; 32]) -> bool {
        crate::ct_eq(self.head_mac(seq, hash), mac)
    }

    /// MAC of a checkpoint that leaves the database (audit.log, webhooks): the chain
    /// reached `seq` with `hash` at `at_ms`. Domain-separated from the head MAC.
    pub fn checkpoint_mac(&self, seq: i64, hash: &[u8; 32], at_ms: i64) -> [u8; 32] {
        let mut input = Vec::with_capacity(59);
        input.extend_from_slice(b"checkpoint:");
        input.extend_from_slice(&seq.to_be_bytes());
        input.extend_from_slice(hash);
        input.extend_from_slice(&at_ms.to_be_bytes());
        hmac_sha256(self.0.expose(), &input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_parsing_is_strict() {
        assert_eq!(MasterKey::from_base64("short").err(), Some(KeyError::BadMasterKeyEncoding));
        assert!(MasterKey::from_base64(&STANDARD.encode([7u8; 31])).is_err());
        assert!(MasterKey::from_base64(&STANDARD.encode([7u8; 33])).is_err());
        let k = MasterKey::from_base64(&format!(" {}\n", STANDARD.encode([7u8; 32]))).expect("k");
        assert!(format!("{k:?}").contains("redacted"));
    }

    #[test]
    fn webhook_signatures_verify_and_reject_forgeries_and_replays() {
        let sig = webhook_signature(b"s3cret", 1_000, b"{}");
        assert!(verify_webhook_signature(b"s3cret", &sig, b"{}", 1_010, 300));
        assert!(!verify_webhook_signature(b"other", &sig, b"{}", 1_010, 300), "wrong secret");
        assert!(!verify_webhook_signature(b"s3cret", &sig, b"{ }", 1_010, 300), "changed body");
        assert!(!verify_webhook_signature(b"s3cret", &sig, b"{}", 2_000, 300), "too old");
        assert!(!verify_webhook_signature(b"s3cret", "t=1000,v1=00", b"{}", 1_000, 300));
    }

    #[test]
    fn check_value_detects_another_key() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert!(a.verify_check_value(&a.check_value()).is_ok());
        assert_eq!(a.verify_check_value(&b.check_value()), Err(KeyError::WrongMasterKey));
    }

    #[test]
    fn derived_keys_differ_by_label_and_blind_index_is_unambiguous() {
        let m = MasterKey::generate();
        assert_ne!(m.derive(b"a").expose(), m.derive(b"b").expose());
        let bi = BlindIndexKey::from_purpose(m.derive(b"bi"));
        assert_eq!(bi.token("c", "email", "x"), bi.token("c", "email", "x"));
        assert_ne!(bi.token("c", "ab", "c"), bi.token("c", "a", "bc"));
        assert_ne!(bi.token("c1", "f", "v"), bi.token("c2", "f", "v"));
    }
}
