use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::{Rng as _, RngCore as _};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// Opaque identifiers without a type of their own (data key ids, request ids of local
/// work): `N` random bytes as lowercase hex.
pub fn random_id<const N: usize>() -> String {
    hex::encode(random_bytes::<N>())
}

/// A fresh server-made id of type `T` (session, alert, refresh family, `kid`, `jti`).
pub fn new_id<T: rampart_types::RandomId>() -> T {
    let mut bytes = vec![0u8; T::BYTES];
    OsRng.fill_bytes(&mut bytes);
    T::from_random(&bytes)
}

/// A random password that passes the policy: drawn from all four classes.
pub fn random_password(len: usize) -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"!#%+-=?@^_~";
    let classes = [UPPER, LOWER, DIGIT, SYMBOL];
    let len = len.max(classes.len());
    let mut out: Vec<u8> = classes.iter().map(|c| c[OsRng.gen_range(0..c.len())]).collect();
    let all: Vec<u8> = classes.concat();
    while out.len() < len {
        out.push(all[OsRng.gen_range(0..all.len())]);
    }
    // Fisher-Yates so the class-guaranteed characters are not always first.
    for i in (1..out.len()).rev() {
        out.swap(i, OsRng.gen_range(0..=i));
    }
    out.into_iter().map(char::from).collect()
}

/// The SHA-256 of a bearer token: the only form in which a token is stored.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A freshly minted 256-bit bearer token, with its hash for storage.
pub struct SessionToken {
    pub token: SecretString,
    pub hash: TokenHash,
}

impl SessionToken {
    /// `prefix` makes token types recognisable to secret scanners (`rps_` for sessions).
    pub fn generate(prefix: &str) -> Self {
        let raw = random_bytes::<32>();
        let token = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(raw));
        let hash = TokenHash::of(&token);
        Self { token: SecretString::from(token), hash }
    }
    pub fn expose(&self) -> &str {
        self.token.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_hash_matches() {
        let t = SessionToken::generate("rps_");
        let body = t.expose().strip_prefix("rps_").expect("prefix");
        assert_eq!(URL_SAFE_NO_PAD.decode(body).expect("b64").len(), 32);
        assert_eq!(TokenHash::of(t.expose()), t.hash);
        assert_ne!(SessionToken::generate("rps_").expose(), t.expose());
    }

    #[test]
    fn random_passwords_pass_the_policy() {
        for _ in 0..20 {
            let pw = random_password(20);
            assert_eq!(pw.chars().count(), 20);
            crate::check_password_policy(&pw, "admin").expect("policy");
        }
    }
}
