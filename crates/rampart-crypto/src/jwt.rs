//! EdDSA (Ed25519) JSON Web Tokens for downstream services, and their JWKS entries.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair};
use secrecy::{ExposeSecret, SecretBox};

#[derive(Debug, thiserror::Error)]
#[error("JWT signing key is unusable")]
pub struct JwtKeyError;

/// A signing key; `Debug` shows only the key id.
pub struct JwtSigner {
    kid: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtSigner({})", self.kid)
    }
}

/// A fresh PKCS#8 key document, to be stored sealed.
pub fn generate_jwt_key() -> Result<SecretBox<Vec<u8>>, JwtKeyError> {
    let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|_| JwtKeyError)?;
    Ok(SecretBox::new(Box::new(doc.as_ref().to_vec())))
}

impl JwtSigner {
    pub fn from_pkcs8(kid: &str, pkcs8: &SecretBox<Vec<u8>>) -> Result<Self, JwtKeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.expose_secret()).map_err(|_| JwtKeyError)?;
        Ok(Self { kid: kid.to_owned(), pair })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// `header.claims.signature`, header `{"alg":"EdDSA","typ":"JWT","kid":..}`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": self.kid });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self.pair.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// The JWKS entry for a public key (RFC 8037 OKP).
/// The `x` member of an Ed25519 JWK (RFC 8037): the public key, base64url without padding.
pub fn jwk_x(public_key: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(public_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_published_key_only() {
        let signer = JwtSigner::from_pkcs8("k1", &generate_jwt_key().expect("key")).expect("signer");
        let jwt = signer.sign(&serde_json::json!({ "sub": "a" }));
        let (input, sig) = jwt.rsplit_once('.').expect("three parts");
        let sig = URL_SAFE_NO_PAD.decode(sig).expect("b64");
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, signer.public_key());
        assert!(key.verify(input.as_bytes(), &sig).is_ok());
        assert!(key.verify(format!("{input}x").as_bytes(), &sig).is_err());
        assert!(!format!("{signer:?}").contains(&hex::encode(signer.public_key())));
    }
}
