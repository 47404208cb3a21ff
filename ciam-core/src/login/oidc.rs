//! Sign-in at OpenID Connect providers (Google, customers' IdPs) with the openidconnect crate:
//! the authorization code flow with PKCE (S256), state and nonce bound to the login attempt
//! and single-use, ID tokens checked for signature (with the algorithms the connection allows,
//! RS256 by default), issuer, audience, `azp` when present, expiry and nonce. Back-channel
//! calls (discovery, keys, token) follow no redirects and time out.
//!
//! ```text
//! oidc_begin(attempt)  ──► authorization URL (302 the browser there) + the attempt to keep
//! provider ──► our callback ?code&state
//! oidc_finish(attempt, code, state) ──► verified claims ──► complete_federated ──► LoginStep
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, CsrfToken, IssuerUrl, LoginHint, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use subtle::ConstantTimeEq;

use crate::ciam::Context;
use crate::contact::EmailAddress;
use crate::login::attempt::{OidcRequest, Stage};
use crate::login::connections::{
    Federation, GOOGLE_ISSUER, OidcClientSettings, SigningAlgorithm, StoredConnection, connection,
};
use crate::login::federated::FederatedClaims;
use crate::login::flow::{open, seal};
use crate::login::{AttemptToken, Login, LoginError, LoginStep};

/// How far in the future an ID token's issue time (`iat`) may be, in seconds, for clocks that
/// differ a little between the provider and us.
pub const MAX_ISSUE_TIME_SKEW_SECONDS: i64 = 300;

/// How the OIDC client behaves.
#[derive(Clone, Debug)]
pub struct OidcOptions {
    /// Our callback URL, registered at every provider (for example
    /// `https://my.smartplan.example/login/oidc/callback`).
    pub redirect_uri: String,
    /// Time limit of each back-channel request (default 10 seconds).
    pub timeout: std::time::Duration,
    /// Time limit to connect (default 5 seconds).
    pub connect_timeout: std::time::Duration,
    /// How long a provider's discovery document and keys are reused (default 10 minutes).
    pub metadata_lifetime: Duration,
}

impl OidcOptions {
    /// Options with the default limits.
    pub fn new(redirect_uri: impl Into<String>) -> Self {
        Self {
            redirect_uri: redirect_uri.into(),
            timeout: std::time::Duration::from_secs(10),
            connect_timeout: std::time::Duration::from_secs(5),
            metadata_lifetime: Duration::minutes(10),
        }
    }
}

/// Errors of the OIDC round trip.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The options are not valid (the redirect URI is not a URL).
    #[error("invalid OIDC options: {0}")]
    Options(String),
    /// The connection is not an OIDC one.
    #[error("this identity provider does not use OpenID Connect")]
    NotOidc,
    /// The provider's discovery document or keys could not be fetched or are not valid.
    #[error("the identity provider's configuration could not be read: {0}")]
    Discovery(String),
    /// The `state` returned does not belong to this attempt.
    #[error("the sign-in response does not belong to this attempt")]
    StateMismatch,
    /// The callback of this attempt was already used.
    #[error("this sign-in response was already used")]
    Replayed,
    /// The provider refused the authorization code (used, expired, issued to someone else).
    #[error("the identity provider refused the authorization code: {0}")]
    TokenExchange(String),
    /// The token response has no ID token.
    #[error("the identity provider returned no ID token")]
    MissingIdToken,
    /// The ID token is not valid (signature, algorithm, issuer, audience, expiry, nonce, azp,
    /// access-token hash).
    #[error("the ID token is not valid: {0}")]
    InvalidIdToken(String),
}

/// Where to send the browser, and the attempt to keep (in a cookie) until the callback.
#[derive(Debug)]
pub struct OidcRedirect {
    /// The provider's authorization URL with our request.
    pub authorization_url: String,
    /// The attempt, now carrying the request's state, nonce and PKCE verifier (sealed).
    pub attempt: AttemptToken,
}

/// The OIDC client: an HTTP client that follows no redirects, our callback URL, and cached
/// provider metadata. Build one per process and share it.
pub struct OidcLogin {
    http: reqwest::Client,
    redirect_uri: RedirectUrl,
    metadata_lifetime: Duration,
    metadata: Mutex<MetadataCache>,
}

/// Discovery documents (with their keys) by issuer, with when they were fetched.
type MetadataCache = HashMap<String, (DateTime<Utc>, Arc<CoreProviderMetadata>)>;

impl std::fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcLogin")
            .field("redirect_uri", &self.redirect_uri.as_str())
            .finish_non_exhaustive()
    }
}

impl OidcLogin {
    /// A client with `options`.
    pub fn new(options: OidcOptions) -> Result<Self, OidcError> {
        let redirect_uri = RedirectUrl::new(options.redirect_uri)
            .map_err(|error| OidcError::Options(error.to_string()))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .build()
            .map_err(|error| OidcError::Options(error.to_string()))?;
        Ok(Self {
            http,
            redirect_uri,
            metadata_lifetime: options.metadata_lifetime,
            metadata: Mutex::new(HashMap::new()),
        })
    }

    async fn provider_metadata(
        &self,
        issuer: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<CoreProviderMetadata>, OidcError> {
        if let Some((fetched, metadata)) = self.cache().get(issuer) {
            if now < *fetched + self.metadata_lifetime {
                return Ok(metadata.clone());
            }
        }
        let issuer_url = IssuerUrl::new(issuer.to_owned())
            .map_err(|error| OidcError::Discovery(error.to_string()))?;
        // Checks that the document's issuer is the one asked for, and fetches the keys.
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &self.http)
            .await
            .map_err(|error| OidcError::Discovery(error_chain(&error)))?;
        let metadata = Arc::new(metadata);
        self.cache()
            .insert(issuer.to_owned(), (now, metadata.clone()));
        Ok(metadata)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, MetadataCache> {
        // A panic while holding the lock leaves a consistent map: reuse it.
        self.metadata
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn random_text(ctx: &Context) -> String {
    let mut bytes = [0u8; 32];
    ctx.random.fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn oidc_settings(stored: &StoredConnection) -> Result<&OidcClientSettings, LoginError> {
    stored
        .connection
        .oidc
        .as_ref()
        .ok_or(LoginError::Oidc(OidcError::NotOidc))
}

fn algorithm(alg: SigningAlgorithm) -> CoreJwsSigningAlgorithm {
    match alg {
        SigningAlgorithm::Rs256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        SigningAlgorithm::Es256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    }
}

impl Login<'_> {
    /// Starts the OIDC round trip of a federated attempt (from [`LoginStep::Federated`],
    /// [`Login::start_at_provider`] or [`Login::start_invitation_at_provider`]): returns the
    /// provider's authorization URL and the attempt to keep until the callback.
    pub async fn oidc_begin(
        &self,
        oidc: &OidcLogin,
        attempt: &AttemptToken,
    ) -> Result<OidcRedirect, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let mut state = open(ctx, attempt, now)?;
        let Stage::Federated {
            provider,
            email,
            oidc: request,
            ..
        } = &mut state.stage
        else {
            return Err(LoginError::WrongStep);
        };
        let stored = connection(ctx, provider)
            .await?
            .ok_or(LoginError::UnknownProvider)?;
        let settings = oidc_settings(&stored)?;
        let metadata = oidc.provider_metadata(&settings.issuer, now).await?;
        let client = CoreClient::from_provider_metadata(
            (*metadata).clone(),
            ClientId::new(settings.client_id.clone()),
            None,
        )
        .set_redirect_uri(oidc.redirect_uri.clone());
        let csrf = random_text(ctx);
        let nonce = random_text(ctx);
        let verifier = random_text(ctx);
        let challenge =
            PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.clone()));
        let (csrf_for_url, nonce_for_url) = (csrf.clone(), nonce.clone());
        let mut authorization = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(csrf_for_url),
                move || Nonce::new(nonce_for_url),
            )
            .set_pkce_challenge(challenge);
        for scope in &settings.scopes {
            authorization = authorization.add_scope(Scope::new(scope.clone()));
        }
        if let Some(hint) = email.as_ref().filter(|hint| !hint.is_empty()) {
            authorization = authorization.set_login_hint(LoginHint::new(hint.clone()));
        }
        let (url, _, _) = authorization.url();
        *request = Some(OidcRequest {
            state: csrf,
            nonce,
            pkce_verifier: verifier,
            redirect_uri: oidc.redirect_uri.as_str().to_owned(),
        });
        Ok(OidcRedirect {
            authorization_url: url.to_string(),
            attempt: seal(ctx, &state)?,
        })
    }

    /// Finishes the OIDC round trip: checks `state` against the attempt (once), exchanges the
    /// code with the PKCE verifier, verifies the ID token and completes the sign-in with its
    /// claims ([`Login::complete_federated`]).
    pub async fn oidc_finish(
        &self,
        oidc: &OidcLogin,
        attempt: &AttemptToken,
        code: &str,
        state: &str,
        source: Option<&str>,
    ) -> Result<LoginStep, LoginError> {
        let claims = self.oidc_verify(oidc, attempt, code, state).await?;
        self.complete_federated(attempt, claims, source).await
    }

    /// The verification part of [`Login::oidc_finish`]: the claims of a valid callback.
    pub async fn oidc_verify(
        &self,
        oidc: &OidcLogin,
        attempt: &AttemptToken,
        code: &str,
        returned_state: &str,
    ) -> Result<FederatedClaims, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let state = open(ctx, attempt, now)?;
        let Stage::Federated {
            provider,
            oidc: Some(request),
            ..
        } = &state.stage
        else {
            return Err(LoginError::WrongStep);
        };
        if !bool::from(request.state.as_bytes().ct_eq(returned_state.as_bytes())) {
            return Err(OidcError::StateMismatch.into());
        }
        if !ctx
            .store
            .consume_once(&state.key("oidc-callback"), now, state.expires_at)
            .await?
        {
            return Err(OidcError::Replayed.into());
        }
        let stored = connection(ctx, provider)
            .await?
            .ok_or(LoginError::UnknownProvider)?;
        let settings = oidc_settings(&stored)?;
        let secret = Federation::open_client_secret(ctx, &settings.client_secret)?;
        let metadata = oidc.provider_metadata(&settings.issuer, now).await?;
        let redirect_uri = RedirectUrl::new(request.redirect_uri.clone())
            .map_err(|error| OidcError::Options(error.to_string()))?;
        let client = CoreClient::from_provider_metadata(
            (*metadata).clone(),
            ClientId::new(settings.client_id.clone()),
            Some(openidconnect::ClientSecret::new(secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect_uri);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|error| OidcError::Discovery(error.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(request.pkce_verifier.clone()))
            .request_async(&oidc.http)
            .await
            .map_err(|error| OidcError::TokenExchange(error_chain(&error)))?;
        let id_token = token.id_token().ok_or(OidcError::MissingIdToken)?;
        let clock = ctx.clock.clone();
        let issue_clock = ctx.clock.clone();
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(settings.allowed_algs.iter().copied().map(algorithm))
            // The issuer is compared below (Google's tokens may say `accounts.google.com`).
            .require_issuer_match(false)
            .set_time_fn(move || clock.now())
            // A token issued in the future (beyond a small clock skew) is refused.
            .set_issue_time_verifier_fn(move |issued_at| {
                let latest = issue_clock.now() + Duration::seconds(MAX_ISSUE_TIME_SKEW_SECONDS);
                if issued_at > latest {
                    Err(format!("issued at {issued_at}, in the future"))
                } else {
                    Ok(())
                }
            });
        let invalid = |why: String| LoginError::Oidc(OidcError::InvalidIdToken(why));
        let claims = id_token
            .claims(&verifier, &Nonce::new(request.nonce.clone()))
            .map_err(|error| invalid(error_chain(&error)))?;
        let issuer = claims.issuer().as_str();
        let google_short = settings.issuer == GOOGLE_ISSUER && issuer == "accounts.google.com";
        if issuer != settings.issuer && !google_short {
            return Err(invalid(format!(
                "issuer {issuer} is not {}",
                settings.issuer
            )));
        }
        if let Some(azp) = claims.authorized_party() {
            if azp.as_str() != settings.client_id {
                return Err(invalid(format!(
                    "azp {} is not our client id",
                    azp.as_str()
                )));
            }
        }
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|error| invalid(error.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|error| invalid(error.to_string()))?;
            let actual = AccessTokenHash::from_token(token.access_token(), alg, key)
                .map_err(|error| invalid(error.to_string()))?;
            if actual != *expected {
                return Err(invalid("the access token hash does not match".into()));
            }
        }
        // Every claim of the verified token, for role mapping (`groups`, ...).
        let attributes = payload_claims(&id_token.to_string());
        let email = claims
            .email()
            .and_then(|email| EmailAddress::parse(email.as_str()).ok());
        let mfa = claims
            .auth_method_refs()
            .is_some_and(|amr| amr.iter().any(|method| method.as_str() == "mfa"));
        Ok(FederatedClaims {
            provider: stored.key.clone(),
            subject: claims.subject().as_str().to_owned(),
            email,
            email_verified: claims.email_verified().unwrap_or(false),
            given_name: claims
                .given_name()
                .and_then(|name| name.get(None))
                .map(|name| name.as_str().to_owned()),
            family_name: claims
                .family_name()
                .and_then(|name| name.get(None))
                .map(|name| name.as_str().to_owned()),
            attributes,
            mfa,
        })
    }
}

/// The claims of a JWT whose signature was verified, as lists of strings (strings, numbers and
/// booleans, and arrays of them).
fn payload_claims(jwt: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some(payload) = jwt.split('.').nth(1) else {
        return out;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload) else {
        return out;
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&bytes) else {
        return out;
    };
    let scalar = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        serde_json::Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    };
    for (name, value) in map {
        let values: Vec<String> = match &value {
            serde_json::Value::Array(items) => items.iter().filter_map(scalar).collect(),
            other => scalar(other).into_iter().collect(),
        };
        if !values.is_empty() {
            out.insert(name, values);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_claims_flatten_scalars_and_lists() {
        let payload = URL_SAFE_NO_PAD
            .encode(br#"{"sub":"a","groups":["energy","staff"],"n":3,"ok":true,"o":{"x":1}}"#);
        let claims = payload_claims(&format!("h.{payload}.s"));
        assert_eq!(claims["groups"], vec!["energy", "staff"]);
        assert_eq!(claims["sub"], vec!["a"]);
        assert_eq!(claims["n"], vec!["3"]);
        assert_eq!(claims["ok"], vec!["true"]);
        assert!(!claims.contains_key("o"));
        assert!(payload_claims("not a jwt").is_empty());
    }

    #[test]
    fn the_client_follows_no_redirects_and_needs_a_valid_callback_url() {
        assert!(matches!(
            OidcLogin::new(OidcOptions::new("not a url")),
            Err(OidcError::Options(_))
        ));
        let oidc = OidcLogin::new(OidcOptions::new("https://my.example/cb")).unwrap();
        assert!(format!("{oidc:?}").contains("https://my.example/cb"));
    }
}
