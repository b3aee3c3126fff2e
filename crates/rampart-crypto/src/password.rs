use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};

/// The only hash parameters Rampart writes: Argon2id, 19456 KiB, t=2, p=1, 32-byte output.
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;
pub const OUTPUT_LEN: usize = 32;

/// A PHC-format password hash as stored. Not secret in itself, but never logged either.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredPasswordHash(String);

impl StoredPasswordHash {
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StoredPasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredPasswordHash(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordHashError {
    #[error("password hashing failed")]
    Hashing,
}

/// Result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordVerification {
    pub matches: bool,
    /// The stored hash uses other parameters than the current ones: rehash on success.
    pub needs_rehash: bool,
}

/// Argon2id hasher with Rampart's parameters. CPU-heavy: callers run it off the async runtime.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    /// A hash of a random password, verified against when the user does not exist so that the
    /// unknown-user path costs the same as the wrong-password path.
    dummy: StoredPasswordHash,
}

impl PasswordHasher {
    pub fn new() -> Result<Self, PasswordHashError> {
        Self::with_params(MEMORY_KIB, ITERATIONS, PARALLELISM)
    }

    /// Other parameters are for tests of the rehash path only.
    pub fn with_params(m_kib: u32, t: u32, p: u32) -> Result<Self, PasswordHashError> {
        let params = Params::new(m_kib, t, p, Some(OUTPUT_LEN)).map_err(|_| PasswordHashError::Hashing)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut hasher = Self { argon2, dummy: StoredPasswordHash(String::new()) };
        let dummy_password = SecretString::from(crate::random_password(32));
        hasher.dummy = hasher.hash(&dummy_password)?;
        Ok(hasher)
    }

    pub fn hash(&self, password: &SecretString) -> Result<StoredPasswordHash, PasswordHashError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| StoredPasswordHash(h.to_string()))
            .map_err(|_| PasswordHashError::Hashing)
    }

    /// Verifies `password` against `stored`, or against the dummy hash when `stored` is
    /// `None`, which always fails but takes the same time.
    pub fn verify(&self, password: &SecretString, stored: Option<&StoredPasswordHash>) -> PasswordVerification {
        let target = stored.unwrap_or(&self.dummy);
        let refused = || {
            // An unusable stored hash must not make this path faster than a real check.
            let _ = self.verify(password, None);
            PasswordVerification { matches: false, needs_rehash: false }
        };
        // A hash imported from another system: checked once, then replaced (`needs_rehash`).
        match crate::legacy::parse_legacy(target.as_str()) {
            Some(Ok(legacy)) => {
                let matches = legacy.verify(password.expose_secret().as_bytes());
                return PasswordVerification { matches, needs_rehash: matches };
            }
            Some(Err(_)) => return refused(),
            None => {}
        }
        let Ok(parsed) = PasswordHash::new(target.as_str()) else {
            return refused();
        };
        // The stored hash picks the work done; only costs an import would accept are run.
        if crate::legacy::check_argon2(&parsed).is_err() {
            return refused();
        }
        let matches =
            self.argon2.verify_password(password.expose_secret().as_bytes(), &parsed).is_ok() && stored.is_some();
        PasswordVerification { matches, needs_rehash: matches && !self.is_current(&parsed) }
    }

    fn is_current(&self, parsed: &PasswordHash<'_>) -> bool {
        let want = self.argon2.params();
        let Ok(have) = Params::try_from(parsed) else {
            return false;
        };
        parsed.algorithm.as_str() == "argon2id"
            && parsed.version == Some(u32::from(Version::V0x13))
            && have.m_cost() == want.m_cost()
            && have.t_cost() == want.t_cost()
            && have.p_cost() == want.p_cost()
            && parsed.hash.map(|h| h.len()) == Some(OUTPUT_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordHasher {
        PasswordHasher::with_params(64, 1, 1).expect("hasher")
    }

    #[test]
    fn stored_hash_uses_the_spec_parameters() {
        let h = PasswordHasher::new().expect("hasher");
        let stored = h.hash(&SecretString::from("Correct-Horse-42!")).expect("hash");
        let parsed = PasswordHash::new(stored.as_str()).expect("phc");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert_eq!(parsed.version, Some(0x13));
        let params = Params::try_from(&parsed).expect("params");
        assert_eq!((params.m_cost(), params.t_cost(), params.p_cost()), (19_456, 2, 1));
        assert_eq!(parsed.hash.map(|o| o.len()), Some(32));
        assert_eq!(parsed.salt.map(|s| s.decode_b64(&mut [0u8; 64]).map(|b| b.len())), Some(Ok(16)));
    }

    #[test]
    fn verify_accepts_right_and_rejects_wrong_and_unknown() {
        let h = fast();
        let pw = SecretString::from("Correct-Horse-42!");
        let stored = h.hash(&pw).expect("hash");
        assert!(h.verify(&pw, Some(&stored)).matches);
        assert!(!h.verify(&SecretString::from("wrong"), Some(&stored)).matches);
        assert!(!h.verify(&pw, None).matches);
        assert!(!h.verify(&pw, Some(&StoredPasswordHash::from_stored("garbage".into()))).matches);
    }

    #[test]
    fn old_parameters_ask_for_a_rehash() {
        let old = fast();
        let pw = SecretString::from("Correct-Horse-42!");
        let stored = old.hash(&pw).expect("hash");
        let current = PasswordHasher::with_params(128, 1, 1).expect("hasher");
        let v = current.verify(&pw, Some(&stored));
        assert!(v.matches && v.needs_rehash);
        let fresh = current.hash(&pw).expect("hash");
        assert!(!current.verify(&pw, Some(&fresh)).needs_rehash);
    }

    #[test]
    fn imported_hashes_verify_once_and_ask_to_be_replaced() {
        let h = fast();
        let pw = SecretString::from("Tr0ub4dor&3-legacy");
        let mut imported = crate::legacy::tests::pbkdf2_encodings("Tr0ub4dor&3-legacy");
        imported.push(bcrypt::hash("Tr0ub4dor&3-legacy", 4).expect("bcrypt"));
        // Argon2i from another system, with its own parameters.
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::new(32, 3, 1, None).expect("params"));
        let salt = SaltString::generate(&mut OsRng);
        imported.push(argon2i.hash_password(pw.expose_secret().as_bytes(), &salt).expect("hash").to_string());
        for stored in imported {
            let stored = StoredPasswordHash::from_stored(stored);
            let v = h.verify(&pw, Some(&stored));
            assert!(v.matches && v.needs_rehash, "{:?}", stored.as_str());
            let wrong = h.verify(&SecretString::from("Tr0ub4dor&3-legacY"), Some(&stored));
            assert!(!wrong.matches && !wrong.needs_rehash);
        }
    }

    #[test]
    fn a_stored_hash_with_runaway_costs_is_never_run() {
        let h = fast();
        let pw = SecretString::from("x");
        let stored = h.hash(&pw).expect("hash");
        // Were this run, the check would allocate 4 GiB; it is refused as if wrong instead.
        let greedy = StoredPasswordHash::from_stored(stored.as_str().replace("m=64", "m=4194304"));
        assert!(!h.verify(&pw, Some(&greedy)).matches);
    }
}
