//! The OpenID Connect adapter of core's `OidcProvider` port, on the `openidconnect` crate:
//! discovery (at start, and again lazily while the provider was unreachable), the
//! authorization request (code flow, PKCE S256, state, nonce) and the code exchange with ID
//! token validation (issuer, audience and authorized party, expiry against the core's
//! clock, signature against the discovered JWKS, nonce).
//!
//! HTTP goes through reqwest with rustls only, redirects never followed. The client secret
//! is held as a `SecretString` and handed to `openidconnect` only when the client is built;
//! no error or log line here carries it, nor any token or code.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, SignatureVerificationError,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use rampart_config::OidcConfig;
use rampart_core::oidc::{AuthorizationRequest, ExternalClaims, ProviderError};
use rampart_core::OidcProvider;
use rampart_types::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// The claims `openidconnect` has no field for (`groups`, ...), kept so the configured
/// username and role claims can be read whatever they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllClaims {
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
}
impl AdditionalClaims for AllClaims {}

type IdFields = IdTokenFields<
    AllClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type OidcClient = Client<
    AllClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    StandardTokenResponse<IdFields, CoreTokenType>,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why the adapter could not be built (bad settings, unreadable CA file). Never a secret.
#[derive(Debug, thiserror::Error)]
pub enum OidcSetupError {
    #[error("invalid value for {0}")]
    Invalid(&'static str),
    #[error("cannot read auth.oidc.ca_cert {path}: {reason}")]
    CaCert { path: String, reason: String },
}

/// A provider, discovered once it answers. Discovery runs at start and, while it has not
/// succeeded, again on each login (one at a time): a provider down at start is a clear
/// error then, and a 503 until it is back.
pub struct OidcAdapter {
    settings: OidcConfig,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: reqwest::Client,
    client: Mutex<Option<Arc<OidcClient>>>,
}

impl std::fmt::Debug for OidcAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcAdapter").field("issuer", &self.settings.issuer).finish_non_exhaustive()
    }
}

impl OidcAdapter {
    /// Builds the adapter without contacting the provider.
    pub fn new(settings: OidcConfig) -> Result<Self, OidcSetupError> {
        let issuer =
            IssuerUrl::new(settings.issuer.clone()).map_err(|_| OidcSetupError::Invalid("auth.oidc.issuer"))?;
        let redirect = RedirectUrl::new(settings.redirect_url.clone())
            .map_err(|_| OidcSetupError::Invalid("auth.oidc.redirect_url"))?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .tls_built_in_webpki_certs(true);
        if let Some(path) = &settings.ca_cert {
            let ca_err = |reason: String| OidcSetupError::CaCert { path: path.display().to_string(), reason };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.kind().to_string()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.to_string()))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|_| OidcSetupError::Invalid("auth.oidc (HTTP client)"))?;
        Ok(Self { settings, issuer, redirect, http, client: Mutex::new(None) })
    }

    /// Discovers the provider now; `Err` (the reason, for the operator) while unreachable.
    pub async fn discover(&self) -> Result<(), String> {
        self.client()
            .await
            .map(|_| ())
            .map_err(|_| format!("OpenID Connect discovery at {} failed", self.settings.issuer))
    }

    /// Discovers again, unless another login already replaced `stale`.
    async fn rediscover(&self, stale: &Arc<OidcClient>) -> Result<Arc<OidcClient>, ProviderError> {
        {
            let mut slot = self.client.lock().await;
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, stale)) {
                *slot = None;
            }
        }
        self.client().await
    }

    async fn client(&self) -> Result<Arc<OidcClient>, ProviderError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(Arc::clone(c));
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http).await.map_err(|e| {
            tracing::warn!(issuer = %self.settings.issuer, error = %e, "OpenID Connect discovery failed");
            ProviderError::Unavailable
        })?;
        let secret = ClientSecret::new(self.settings.client_secret.expose_secret().to_owned());
        let client = Arc::new(
            OidcClient::from_provider_metadata(metadata, ClientId::new(self.settings.client_id.clone()), Some(secret))
                .set_redirect_uri(self.redirect.clone()),
        );
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }
}

/// The configured claim as a list of strings (a string is a list of one).
fn strings(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

fn reason(e: &ClaimsVerificationError) -> &'static str {
    match e {
        ClaimsVerificationError::Expired(_) => "id_token_expired",
        ClaimsVerificationError::InvalidAudience(_) => "id_token_wrong_audience",
        ClaimsVerificationError::InvalidIssuer(_) => "id_token_wrong_issuer",
        ClaimsVerificationError::InvalidNonce(_) => "id_token_nonce_mismatch",
        ClaimsVerificationError::SignatureVerification(_) => "id_token_bad_signature",
        _ => "id_token_invalid",
    }
}

#[async_trait::async_trait]
impl OidcProvider for OidcAdapter {
    fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    async fn warm_up(&self) {
        if let Err(why) = self.discover().await {
            tracing::warn!("{why}: OpenID Connect logins answer 503 until the provider is reachable");
        }
    }

    async fn authorization_request(&self) -> Result<AuthorizationRequest, ProviderError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req =
            client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        Ok(AuthorizationRequest {
            url: url.to_string(),
            state: SecretString::from(state.secret().clone()),
            nonce: SecretString::from(nonce.secret().clone()),
            pkce_verifier: SecretString::from(verifier.secret().clone()),
        })
    }

    async fn complete(
        &self,
        code: &str,
        pkce_verifier: SecretString,
        nonce: &str,
        now: Timestamp,
    ) -> Result<ExternalClaims, ProviderError> {
        let client = self.client().await?;
        let request = client.exchange_code(AuthorizationCode::new(code.to_owned())).map_err(|_| {
            tracing::warn!("the provider's discovery document names no token endpoint");
            ProviderError::Unavailable
        })?;
        let response = request
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose_secret().to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    tracing::info!(error = %r.error(), "the provider refused the authorization code");
                    ProviderError::CodeRefused
                }
                RequestTokenError::Request(_) => ProviderError::Unavailable,
                RequestTokenError::Parse(..) | RequestTokenError::Other(_) => {
                    ProviderError::InvalidIdToken("token_response_invalid")
                }
            })?;
        let id_token = response.id_token().ok_or(ProviderError::InvalidIdToken("id_token_missing"))?;
        let at = chrono::DateTime::from_timestamp_millis(now.as_millis())
            .ok_or(ProviderError::InvalidIdToken("clock_out_of_range"))?;
        let nonce = Nonce::new(nonce.to_owned());
        // Several audiences: accepted only when `azp` names us (checked by the verifier);
        // other audiences are never trusted. Standard claims (`preferred_username`, ...)
        // and the others alike end up in one JSON object.
        let verify = |c: &OidcClient| -> Result<serde_json::Value, ClaimsVerificationError> {
            let verifier = c.id_token_verifier().set_time_fn(move || at);
            let claims = id_token.claims(&verifier, &nonce)?;
            serde_json::to_value(claims).map_err(|_| ClaimsVerificationError::Other("claims".into()))
        };
        let all = match verify(&client) {
            // A key id we do not know: the provider rotated its key. Its key set is read
            // again (once, for this login) and the token checked against it.
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                let fresh = self.rediscover(&client).await?;
                verify(&fresh)
            }
            other => other,
        }
        .map_err(|e| ProviderError::InvalidIdToken(reason(&e)))?;
        let extra = all.as_object().ok_or(ProviderError::InvalidIdToken("id_token_invalid"))?;
        let username = extra.get(&self.settings.username_claim).and_then(|v| v.as_str()).map(str::to_owned);
        let role_values = match &self.settings.role_claim {
            Some(c) => strings(extra.get(c)),
            None => Vec::new(),
        };
        let text = |k: &str| extra.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let (Some(issuer), Some(subject)) = (text("iss"), text("sub")) else {
            return Err(ProviderError::InvalidIdToken("id_token_invalid"));
        };
        Ok(ExternalClaims { issuer, subject, username, role_values })
    }
}

/// The core's OIDC port for `[auth.oidc]`: the adapter, discovered now if the provider
/// answers (otherwise a warning naming the issuer, and discovery again at the next login),
/// and the claim-to-role mapping.
/// The adapter and its role mapping, without contacting the provider: discovery happens at
/// the first login, or earlier when the server calls `warm_up` (CLI verbs never wait for it).
pub fn open(settings: &OidcConfig) -> Result<(Arc<dyn OidcProvider>, rampart_core::RoleMapping), OidcSetupError> {
    let adapter = OidcAdapter::new(settings.clone())?;
    let mapping =
        rampart_core::RoleMapping { map: settings.role_map.clone(), default_role: settings.default_role.clone() };
    Ok((Arc::new(adapter), mapping))
}
