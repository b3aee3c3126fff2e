//! Password hashes written by other systems, accepted by `rampart user import` and checked
//! at the user's next login, when they are replaced by an Argon2id hash with Rampart's
//! parameters. Rampart never writes these formats.
//!
//! Every cost parameter is bounded: a stored hash chooses how much work a login does, so an
//! imported `$2b$31$…` or a PBKDF2 count of four billion would let one login attempt occupy
//! a hashing thread for hours.

use std::fmt;
use std::num::NonZeroU32;

use argon2::password_hash::PasswordHash;
use argon2::Params;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;

/// Highest bcrypt cost accepted (2^15 rounds, about 2 s on one core).
pub const MAX_BCRYPT_COST: u32 = 15;
/// PBKDF2 iteration counts accepted (nself writes 100,000; OWASP asks 600,000 today).
pub const PBKDF2_ITERATIONS: std::ops::RangeInclusive<u32> = 1_000..=5_000_000;
/// Argon2 costs accepted from other systems: 256 MiB, 16 passes, 16 lanes.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 262_144;
pub const MAX_ARGON2_ITERATIONS: u32 = 16;
pub const MAX_ARGON2_PARALLELISM: u32 = 16;

/// The family of an accepted hash, for import reports (never the hash itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    Argon2,
    Bcrypt,
    Pbkdf2Sha256,
}

impl HashScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            HashScheme::Argon2 => "argon2",
            HashScheme::Bcrypt => "bcrypt",
            HashScheme::Pbkdf2Sha256 => "pbkdf2-sha256",
        }
    }
}

impl fmt::Display for HashScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a hash cannot be imported. Describes the format, never the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportHashError {
    #[error("unrecognised password hash format (accepted: Argon2 PHC, bcrypt $2a$/$2b$/$2y$, PBKDF2-SHA256)")]
    Unrecognised,
    #[error("malformed {0} hash")]
    Malformed(HashScheme),
    #[error("{scheme} cost {value} is outside the accepted range ({allowed})")]
    CostOutOfRange { scheme: HashScheme, value: u64, allowed: &'static str },
}

/// A PBKDF2-SHA256 hash, decoded from any of the encodings in use.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Pbkdf2Hash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl Pbkdf2Hash {
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        ring::pbkdf2::verify(ring::pbkdf2::PBKDF2_HMAC_SHA256, self.iterations, &self.salt, password, &self.hash)
            .is_ok()
    }
}

/// A stored hash Rampart can check but does not write.
pub(crate) enum LegacyHash<'a> {
    Bcrypt(&'a str),
    Pbkdf2(Pbkdf2Hash),
}

impl LegacyHash<'_> {
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        match self {
            LegacyHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            LegacyHash::Pbkdf2(hash) => hash.verify(password),
        }
    }
}

/// Recognises a hash another system wrote; `None` for anything else (Argon2 included).
pub(crate) fn parse_legacy(stored: &str) -> Option<Result<LegacyHash<'_>, ImportHashError>> {
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| stored.starts_with(p)) {
        return Some(parse_bcrypt(stored).map(LegacyHash::Bcrypt));
    }
    if stored.starts_with("$pbkdf2-sha256$")
        || stored.starts_with("pbkdf2_sha256$")
        || stored.starts_with("pbkdf2:sha256")
    {
        return Some(parse_pbkdf2(stored).map(LegacyHash::Pbkdf2));
    }
    None
}

/// Checks that `stored` is a hash `user import` accepts, with costs in bounds.
pub fn classify_imported_hash(stored: &str) -> Result<HashScheme, ImportHashError> {
    match parse_legacy(stored) {
        Some(Ok(LegacyHash::Bcrypt(_))) => Ok(HashScheme::Bcrypt),
        Some(Ok(LegacyHash::Pbkdf2(_))) => Ok(HashScheme::Pbkdf2Sha256),
        Some(Err(e)) => Err(e),
        None => {
            let parsed = PasswordHash::new(stored).map_err(|_| ImportHashError::Unrecognised)?;
            check_argon2(&parsed)?;
            Ok(HashScheme::Argon2)
        }
    }
}

/// An Argon2 PHC hash (any variant) whose costs are within the import bounds.
pub(crate) fn check_argon2(parsed: &PasswordHash<'_>) -> Result<(), ImportHashError> {
    if !matches!(parsed.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d") {
        return Err(ImportHashError::Unrecognised);
    }
    let params = Params::try_from(parsed).map_err(|_| ImportHashError::Malformed(HashScheme::Argon2))?;
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err(ImportHashError::Malformed(HashScheme::Argon2));
    }
    let out_of_range = |value: u32, allowed| ImportHashError::CostOutOfRange {
        scheme: HashScheme::Argon2,
        value: u64::from(value),
        allowed,
    };
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB {
        return Err(out_of_range(params.m_cost(), "memory at most 262144 KiB"));
    }
    if params.t_cost() > MAX_ARGON2_ITERATIONS {
        return Err(out_of_range(params.t_cost(), "at most 16 passes"));
    }
    if params.p_cost() > MAX_ARGON2_PARALLELISM {
        return Err(out_of_range(params.p_cost(), "at most 16 lanes"));
    }
    Ok(())
}

/// `$2b$12$` + 22 characters of salt + 31 of hash.
fn parse_bcrypt(stored: &str) -> Result<&str, ImportHashError> {
    let malformed = ImportHashError::Malformed(HashScheme::Bcrypt);
    let rest = stored.get(4..).ok_or(malformed.clone())?;
    let (cost, tail) = rest.split_once('$').ok_or(malformed.clone())?;
    if cost.len() != 2 || tail.len() != 53 || !tail.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return Err(malformed);
    }
    let cost: u32 = cost.parse().map_err(|_| malformed.clone())?;
    if !(4..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(ImportHashError::CostOutOfRange {
            scheme: HashScheme::Bcrypt,
            value: u64::from(cost),
            allowed: "cost 4 to 15",
        });
    }
    Ok(stored)
}

/// The encodings PBKDF2-SHA256 hashes are found in:
/// - PHC: `$pbkdf2-sha256$i=100000,l=32$<salt b64>$<hash b64>`;
/// - passlib: `$pbkdf2-sha256$100000$<salt ab64>$<hash ab64>` ('.' for '+');
/// - Django: `pbkdf2_sha256$100000$<salt text>$<hash b64>`;
/// - Werkzeug: `pbkdf2:sha256:100000$<salt text>$<hash hex>`.
fn parse_pbkdf2(stored: &str) -> Result<Pbkdf2Hash, ImportHashError> {
    let malformed = || ImportHashError::Malformed(HashScheme::Pbkdf2Sha256);
    let (iterations, salt, hash) = if let Some(rest) = stored.strip_prefix("$pbkdf2-sha256$") {
        let mut parts = rest.split('$');
        let (params, salt, hash) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(p), Some(s), Some(h), None) => (p, s, h),
            _ => return Err(malformed()),
        };
        let iterations = match params.strip_prefix("i=") {
            Some(phc) => phc.split(',').next().unwrap_or_default(),
            None => params,
        };
        (iterations, adapted_b64(salt).ok_or_else(malformed)?, adapted_b64(hash).ok_or_else(malformed)?)
    } else if let Some(rest) = stored.strip_prefix("pbkdf2_sha256$") {
        let mut parts = rest.splitn(3, '$');
        let (iterations, salt, hash) = match (parts.next(), parts.next(), parts.next()) {
            (Some(i), Some(s), Some(h)) => (i, s, h),
            _ => return Err(malformed()),
        };
        (iterations, salt.as_bytes().to_vec(), STANDARD.decode(hash).map_err(|_| malformed())?)
    } else if let Some(rest) = stored.strip_prefix("pbkdf2:sha256") {
        // Werkzeug omits the count when it used its default of the day; refuse to guess.
        let rest = rest.strip_prefix(':').ok_or_else(malformed)?;
        let mut parts = rest.splitn(3, '$');
        let (iterations, salt, hash) = match (parts.next(), parts.next(), parts.next()) {
            (Some(i), Some(s), Some(h)) => (i, s, h),
            _ => return Err(malformed()),
        };
        (iterations, salt.as_bytes().to_vec(), hex::decode(hash).map_err(|_| malformed())?)
    } else {
        return Err(malformed());
    };
    let iterations: u32 = iterations.parse().map_err(|_| malformed())?;
    if !PBKDF2_ITERATIONS.contains(&iterations) {
        return Err(ImportHashError::CostOutOfRange {
            scheme: HashScheme::Pbkdf2Sha256,
            value: u64::from(iterations),
            allowed: "1000 to 5000000 iterations",
        });
    }
    if !(4..=128).contains(&salt.len()) || !(16..=64).contains(&hash.len()) {
        return Err(malformed());
    }
    let iterations = NonZeroU32::new(iterations).ok_or_else(malformed)?;
    Ok(Pbkdf2Hash { iterations, salt, hash })
}

/// Standard base64 without padding, or passlib's variant with '.' in place of '+'.
fn adapted_b64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=').replace('.', "+");
    STANDARD_NO_PAD.decode(s).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn pbkdf2_raw(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; 32];
        let n = NonZeroU32::new(iterations).expect("nonzero");
        ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, n, salt, password, &mut out);
        out
    }

    /// The four encodings of one nself-style hash (100,000 iterations, 32-byte salt).
    pub(crate) fn pbkdf2_encodings(password: &str) -> Vec<String> {
        let salt = [7u8; 32];
        let hash = pbkdf2_raw(password.as_bytes(), &salt, 100_000);
        let text_salt = "s4ltS4ltS4ltS4lt";
        let text_hash = pbkdf2_raw(password.as_bytes(), text_salt.as_bytes(), 100_000);
        vec![
            format!("$pbkdf2-sha256$i=100000,l=32${}${}", STANDARD_NO_PAD.encode(salt), STANDARD_NO_PAD.encode(&hash)),
            format!(
                "$pbkdf2-sha256$100000${}${}",
                STANDARD_NO_PAD.encode(salt).replace('+', "."),
                STANDARD_NO_PAD.encode(&hash).replace('+', ".")
            ),
            format!("pbkdf2_sha256$100000${text_salt}${}", STANDARD.encode(&text_hash)),
            format!("pbkdf2:sha256:100000${text_salt}${}", hex::encode(&text_hash)),
        ]
    }

    #[test]
    fn every_pbkdf2_encoding_verifies_the_right_password_only() {
        for stored in pbkdf2_encodings("Tr0ub4dor&3-legacy") {
            let Some(Ok(legacy)) = parse_legacy(&stored) else { panic!("not parsed: {stored}") };
            assert!(legacy.verify(b"Tr0ub4dor&3-legacy"), "{stored}");
            assert!(!legacy.verify(b"Tr0ub4dor&3-legacY"), "{stored}");
            assert_eq!(classify_imported_hash(&stored), Ok(HashScheme::Pbkdf2Sha256));
        }
    }

    #[test]
    fn bcrypt_verifies_and_its_cost_is_bounded() {
        let stored = bcrypt::hash("Tr0ub4dor&3-legacy", 4).expect("bcrypt");
        let Some(Ok(legacy)) = parse_legacy(&stored) else { panic!("not parsed") };
        assert!(legacy.verify(b"Tr0ub4dor&3-legacy"));
        assert!(!legacy.verify(b"tr0ub4dor&3-legacy"));
        assert_eq!(classify_imported_hash(&stored), Ok(HashScheme::Bcrypt));
        // The same hash claiming cost 31 would take days per login attempt.
        let expensive = stored.replacen("$04$", "$31$", 1);
        assert!(matches!(classify_imported_hash(&expensive), Err(ImportHashError::CostOutOfRange { .. })));
        assert!(matches!(parse_legacy(&expensive), Some(Err(_))));
    }

    #[test]
    fn pbkdf2_iteration_counts_are_bounded() {
        let huge = "$pbkdf2-sha256$4000000000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(matches!(classify_imported_hash(huge), Err(ImportHashError::CostOutOfRange { .. })));
        let tiny = "pbkdf2_sha256$1$salt$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(matches!(classify_imported_hash(tiny), Err(ImportHashError::CostOutOfRange { .. })));
    }

    #[test]
    fn argon2_from_elsewhere_is_accepted_within_bounds() {
        let mine = crate::PasswordHasher::with_params(64, 1, 1).expect("hasher");
        let stored = mine.hash(&secrecy::SecretString::from("x")).expect("hash");
        assert_eq!(classify_imported_hash(stored.as_str()), Ok(HashScheme::Argon2));
        let greedy = stored.as_str().replace("m=64", "m=4194304");
        assert!(matches!(classify_imported_hash(&greedy), Err(ImportHashError::CostOutOfRange { .. })));
    }

    #[test]
    fn garbage_and_other_schemes_are_refused_without_echoing_them() {
        for bad in ["", "plaintext-password", "$1$md5$crypt", "$pbkdf2-sha512$1000$a$b", "$scrypt$ln=16,r=8,p=1$a$b"] {
            let err = classify_imported_hash(bad).expect_err(bad);
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
            }
        }
        assert_eq!(classify_imported_hash("$2b$12$short"), Err(ImportHashError::Malformed(HashScheme::Bcrypt)));
    }
}
