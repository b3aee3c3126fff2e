//! The key hierarchy below the master key:
//!
//! ```text
//! master key ──HKDF("rampart/v1/kek/<version>")──► key-encrypting key (KEK), versioned
//!     KEK ──AES-256-GCM wrap──► data keys (random 256-bit): root, one per collection,
//!                                one per data subject
//!     root ──HKDF(label)──► audit-chain key, blind-index key, backup key
//! ```
//!
//! Purpose keys come from the wrapped root rather than straight from the master key, so a
//! master key change re-wraps a handful of keys and leaves audit MACs, blind indexes and
//! backups valid.

use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use crate::keys::{AuditMacKey, BlindIndexKey, DeviceKey, KeyError, MasterKey, PurposeKey};
use crate::stream::SealingKey;

/// A random 256-bit key that seals records (or, for the root, derives purpose keys).
pub struct DataKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    pub fn generate() -> Self {
        Self(SecretBox::new(Box::new(crate::random_bytes::<32>())))
    }

    pub fn sealing_key(&self) -> Result<SealingKey, KeyError> {
        SealingKey::new(self.0.expose_secret()).map_err(|_| KeyError::Cipher)
    }

    fn derive(&self, label: &[u8]) -> PurposeKey {
        let hk = Hkdf::<Sha256>::new(Some(b"rampart-root-key"), self.0.expose_secret());
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit, so expand cannot fail.
        let _ = hk.expand(label, &mut out);
        let key = PurposeKey::from_bytes(out);
        zeroize::Zeroize::zeroize(&mut out);
        key
    }

    /// Purpose keys derived from the root key.
    pub fn audit_key(&self) -> AuditMacKey {
        AuditMacKey::from_purpose(self.derive(b"rampart/v1/audit-chain"))
    }
    pub fn blind_index_key(&self) -> BlindIndexKey {
        BlindIndexKey::from_purpose(self.derive(b"rampart/v1/blind-index"))
    }
    pub fn backup_key(&self) -> PurposeKey {
        self.derive(b"rampart/v1/backup")
    }
    /// Keys the names under which shared rate-limit budgets are kept outside the database.
    pub fn rate_limit_key(&self) -> PurposeKey {
        self.derive(b"rampart/v1/rate-limit-keys")
    }
    /// Keys the names of the login delay's buckets in the database (shared by the nodes).
    pub fn login_delay_key(&self) -> PurposeKey {
        self.derive(b"rampart/v1/login-delay-buckets")
    }
    /// The Ed25519 key that signs compliance evidence reports (its seed is the purpose key).
    pub fn report_signing_key(&self) -> Result<crate::ReportSigner, crate::ReportKeyError> {
        crate::ReportSigner::from_purpose(&self.derive(b"rampart/v1/compliance-report-signing"))
    }
    pub fn device_key(&self) -> DeviceKey {
        DeviceKey::from_purpose(self.derive(b"rampart/v1/device-token"))
    }
}

/// A key-encrypting key: wraps data keys, bound to their key id.
pub struct Kek {
    version: u32,
    key: PurposeKey,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek(v{})", self.version)
    }
}

fn wrap_aad(key_id: &str, version: u32) -> Vec<u8> {
    format!("rampart-wrap\0{key_id}\0{version}").into_bytes()
}

impl Kek {
    pub fn version(&self) -> u32 {
        self.version
    }

    fn cipher(&self) -> Result<SealingKey, KeyError> {
        SealingKey::new(self.key.expose()).map_err(|_| KeyError::Cipher)
    }

    pub fn wrap(&self, key_id: &str, key: &DataKey) -> Result<Vec<u8>, KeyError> {
        self.cipher()?.seal(&wrap_aad(key_id, self.version), key.0.expose_secret()).map_err(|_| KeyError::Cipher)
    }

    /// Fails for another KEK, another key id, or any change to the bytes.
    pub fn unwrap(&self, key_id: &str, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        let mut plain =
            self.cipher()?.open(&wrap_aad(key_id, self.version), wrapped).map_err(|_| KeyError::UnwrapFailed)?;
        let key = <[u8; 32]>::try_from(plain.as_slice()).map_err(|_| KeyError::UnwrapFailed);
        zeroize::Zeroize::zeroize(&mut plain);
        key.map(|k| DataKey(SecretBox::new(Box::new(k))))
    }
}

impl MasterKey {
    /// The key-encrypting key of `version`.
    pub fn kek(&self, version: u32) -> Kek {
        let label = format!("rampart/v1/kek/{version}");
        Kek { version, key: self.derive(label.as_bytes()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_keys_open_only_with_their_kek_and_id() {
        let master = MasterKey::generate();
        let (k1, k2) = (master.kek(1), master.kek(2));
        let dk = DataKey::generate();
        let wrapped = k1.wrap("c-1", &dk).expect("wrap");
        let back = k1.unwrap("c-1", &wrapped).expect("unwrap");
        assert_eq!(back.0.expose_secret(), dk.0.expose_secret());
        assert!(k2.unwrap("c-1", &wrapped).is_err(), "other version");
        assert!(k1.unwrap("c-2", &wrapped).is_err(), "other key id");
        assert!(MasterKey::generate().kek(1).unwrap("c-1", &wrapped).is_err(), "other master");
        let mut flipped = wrapped.clone();
        flipped[20] ^= 1;
        assert!(k1.unwrap("c-1", &flipped).is_err());
        assert!(!wrapped.windows(32).any(|w| w == dk.0.expose_secret()), "no plaintext key in the wrap");
    }

    #[test]
    fn purpose_keys_differ_and_are_stable() {
        let root = DataKey::generate();
        let a = root.audit_key().chain(&[0; 32], b"x");
        assert_eq!(a, root.audit_key().chain(&[0; 32], b"x"));
        assert_ne!(a, DataKey::generate().audit_key().chain(&[0; 32], b"x"));
        assert_ne!(root.backup_key().expose(), root.derive(b"rampart/v1/audit-chain").expose());
        assert_ne!(root.login_delay_key().expose(), root.rate_limit_key().expose());
    }
}
