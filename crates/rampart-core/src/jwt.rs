//! Short-lived EdDSA JWTs for downstream services, signed with keys that rotate with an
//! overlap window (retired keys stay in the JWKS while tokens they signed can be alive).

use std::sync::{Arc, RwLock};

use rampart_crypto::{generate_jwt_key, jwk_x, JwtSigner};
use rampart_store::{JwtKeyRecord, TokenStore};
use rampart_types::{SigningKeyId, TokenId};
use secrecy::SecretBox;
use serde::Serialize;
use serde_json::json;

use crate::audit::EventType;
use crate::events::Events;
use crate::keyring::KeyRing;
use crate::{Authorized, CoreError, CoreResult, Principal, RequestMeta};
use rampart_types::perm;

pub const MAX_TTL_SECS: i64 = 300;
/// Retired keys stay published this long: far beyond the longest token lifetime.
const OVERLAP_SECS: i64 = 3600;
const KEY_AAD: &[u8] = b"rampart-jwt-signing-key";

#[derive(Default)]
pub(crate) struct JwtKeys {
    signer: RwLock<Option<Arc<JwtSigner>>>,
}

/// `GET /.well-known/jwks.json` (RFC 7517): the keys that verify minted tokens.
#[derive(utoipa::ToSchema, Debug, Serialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(utoipa::ToSchema, Debug, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    /// The public key, base64url without padding.
    pub x: String,
    /// JWT keys: their `SigningKeyId`; the report signing key: `report-…`.
    pub kid: String,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub key_use: &'static str,
}

#[derive(utoipa::ToSchema, Debug, Serialize)]
pub struct MintedToken {
    pub token: String,
    pub expires_at: rampart_types::Timestamp,
    pub kid: String,
}

/// Service tokens: EdDSA JWTs for downstream services and the JWKS that verifies them.
#[derive(Clone)]
pub struct Tokens {
    token_store: Arc<dyn TokenStore>,
    keys: Arc<KeyRing>,
    jwt: Arc<JwtKeys>,
    events: Events,
    issuer: String,
}

impl Tokens {
    /// Loads the current signing key, creating the first one on a new data directory.
    pub(crate) async fn open(
        token_store: Arc<dyn TokenStore>,
        keys: Arc<KeyRing>,
        events: Events,
        issuer: String,
    ) -> CoreResult<Self> {
        let tokens = Self { token_store, keys, jwt: Arc::default(), events, issuer };
        tokens.load_jwt_key().await?;
        Ok(tokens)
    }

    fn now(&self) -> rampart_types::Timestamp {
        self.events.now()
    }

    async fn load_jwt_key(&self) -> CoreResult<()> {
        let keys = self.token_store.jwt_keys().await?;
        let Some(current) = keys.iter().rev().find(|k| k.retired_at.is_none()) else {
            return self.rotate_jwt_key(&RequestMeta::local("bootstrap")).await;
        };
        let pkcs8 = self.keys.open_secret(KEY_AAD, &current.sealed, self.now()).await?;
        let signer = JwtSigner::from_pkcs8(current.kid.as_str(), &SecretBox::new(Box::new(pkcs8)))
            .map_err(CoreError::internal)?;
        if let Ok(mut s) = self.jwt.signer.write() {
            *s = Some(Arc::new(signer));
        }
        Ok(())
    }

    /// `rotate-secrets`: a new signing key now (the previous one keeps verifying for the
    /// overlap window); returns its kid.
    pub async fn rotate_signing_key(&self, access: &Authorized<perm::KeysRotate>) -> CoreResult<String> {
        self.rotate_jwt_key(&access.who().origin).await?;
        let signer = self.jwt.signer.read().ok().and_then(|s| s.clone());
        signer.map(|s| s.kid().to_owned()).ok_or_else(|| CoreError::internal_msg("no JWT signing key"))
    }

    /// A new signing key; the previous one keeps verifying for the overlap window.
    pub(crate) async fn rotate_jwt_key(&self, meta: &RequestMeta) -> CoreResult<()> {
        let pkcs8 = generate_jwt_key().map_err(CoreError::internal)?;
        let kid: SigningKeyId = rampart_crypto::new_id();
        let signer = JwtSigner::from_pkcs8(kid.as_str(), &pkcs8).map_err(CoreError::internal)?;
        let sealed = self.keys.seal_secret(KEY_AAD, secrecy::ExposeSecret::expose_secret(&pkcs8), self.now()).await?;
        let rec = JwtKeyRecord {
            kid: kid.clone(),
            sealed,
            public_key: signer.public_key(),
            created_at: self.now(),
            retired_at: None,
        };
        let event =
            self.events.event(EventType::KeyRotate, Some("system"), meta, true, json!({ "jwt_signing_key": kid }));
        self.token_store.add_jwt_key(rec, self.now(), vec![event]).await?;
        if let Ok(mut s) = self.jwt.signer.write() {
            *s = Some(Arc::new(signer));
        }
        Ok(())
    }

    /// Mints a JWT for `audience`, valid at most five minutes.
    pub async fn mint_jwt(&self, who: &Principal, audience: &str, ttl_secs: Option<i64>) -> CoreResult<MintedToken> {
        if who.mfa_enrollment_only {
            return Err(CoreError::Forbidden("enrol MFA before minting tokens"));
        }
        let audience = audience.trim();
        if audience.is_empty() || audience.len() > 256 {
            return Err(CoreError::validation("audience", "must be 1-256 characters"));
        }
        let ttl = ttl_secs.unwrap_or(MAX_TTL_SECS);
        if !(1..=MAX_TTL_SECS).contains(&ttl) {
            return Err(CoreError::validation("ttl_secs", "must be between 1 and 300"));
        }
        let signer = self
            .jwt
            .signer
            .read()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| CoreError::internal_msg("no JWT signing key"))?;
        let now = self.now();
        let jti: TokenId = rampart_crypto::new_id();
        let claims = json!({
            "iss": self.issuer,
            "sub": who.username.as_str(),
            "roles": [who.role.name.as_str()],
            "aud": audience,
            "iat": now.as_unix_seconds(),
            "exp": now.as_unix_seconds() + ttl,
            "jti": jti,
        });
        let details = json!({ "audience": audience, "jti": jti, "kid": signer.kid(), "ttl_secs": ttl });
        self.events.record_event(EventType::JwtIssue, Some(who.username.as_str()), &who.origin, true, details).await?;
        Ok(MintedToken { token: signer.sign(&claims), expires_at: now.plus_seconds(ttl), kid: signer.kid().to_owned() })
    }

    /// The JWKS: the current key and keys retired within the overlap window.
    pub async fn jwks(&self) -> CoreResult<JwkSet> {
        let now = self.now();
        let keys = self
            .token_store
            .jwt_keys()
            .await?
            .iter()
            .filter(|k| k.retired_at.is_none_or(|r| now < r.plus_seconds(OVERLAP_SECS)))
            .map(|k| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                x: jwk_x(&k.public_key),
                kid: k.kid.as_str().to_owned(),
                alg: "EdDSA",
                key_use: "sig",
            })
            .collect();
        Ok(JwkSet { keys })
    }
}
