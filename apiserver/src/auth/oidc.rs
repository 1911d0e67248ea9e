//! Google sign-in: OpenID Connect authorization-code flow with PKCE, a state cookie and a nonce.
//!
//! `/login` keeps nothing on the server: the PKCE verifier, nonce, state, return path and start
//! time travel in the `STATE_COOKIE_NAME` cookie, encrypted and authenticated with AES-256-GCM
//! (RustCrypto `aes-gcm`; key derived from `GOOGLE_CLIENT_SECRET`, so every replica can read it;
//! the cookie name is the associated data), for 10 minutes. An anonymous caller therefore creates
//! no session (issue 15 item 9). `/oauth2/callback` requires the state in the query to be the
//! cookie's, exchanges the code (the provider accepts a code once; the state cookie is cleared on
//! every callback answer), validates the ID token with the `openidconnect` crate (signature
//! against the provider's published keys, issuer, audience, expiry, nonce) and requires
//! `email_verified`. Then the session gets a new id and the user. The provider is discovered from
//! `OIDC_ISSUER_URL` (Google by default), so tests use a real OIDC provider on loopback.

use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce as AesNonce};
use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;
use tower_sessions::Session;

use super::SESSION_USER;
use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// How long a sign-in may take: the state cookie's lifetime.
pub const LOGIN_TTL_SECS: i64 = 600;
/// The longest return path accepted by `/login` (the state cookie must stay under 4 KiB).
pub const MAX_REDIRECT_LEN: usize = 1024;
/// Provider metadata and keys are re-read this often (key rotation).
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// A sign-in in progress, kept in the encrypted state cookie.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    redirect: String,
    started: i64,
}

/// The AES-256-GCM cipher of the state cookie: its key is SHA-256 over a purpose label and
/// `GOOGLE_CLIENT_SECRET` (a high-entropy secret every replica shares; there is no sign-in without it).
fn state_cipher(state: &AppState) -> ApiResult<Aes256Gcm> {
    let secret = state
        .config
        .google_client_secret
        .as_ref()
        .map(|s| s.expose_secret())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::Unavailable("sign-in is not configured (GOOGLE_CLIENT_SECRET)".into()))?;
    let mut hasher = Sha256::new();
    hasher.update(b"k8s-scheduler/oauth-state-cookie/v1\0");
    hasher.update(secret.as_bytes());
    let key: [u8; 32] = hasher.finalize().into();
    Ok(Aes256Gcm::new(&key.into()))
}

/// The state cookie's value: base64url(nonce || AES-256-GCM(JSON of `pending`)), bound to the cookie name.
fn seal(state: &AppState, pending: &Pending) -> ApiResult<String> {
    let cipher = state_cipher(state)?;
    let json = serde_json::to_vec(pending).map_err(|e| ApiError::Internal(e.into()))?;
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let name = state.config.state_cookie();
    let ct = cipher
        .encrypt(
            &AesNonce::from(nonce),
            Payload {
                msg: &json,
                aad: name.as_bytes(),
            },
        )
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("encrypting the state cookie failed")))?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&ct);
    Ok(URL_SAFE_NO_PAD.encode(blob))
}

/// The sign-in in progress from a state cookie's value; `None` when it was not made by this
/// installation (forged, altered, or sealed under another client secret).
fn open(state: &AppState, value: &str) -> ApiResult<Option<Pending>> {
    let cipher = state_cipher(state)?;
    let Ok(blob) = URL_SAFE_NO_PAD.decode(value) else {
        return Ok(None);
    };
    if blob.len() < 12 + 16 {
        return Ok(None);
    }
    let (nonce, ct) = blob.split_at(12);
    let Ok(nonce) = <[u8; 12]>::try_from(nonce) else {
        return Ok(None);
    };
    let name = state.config.state_cookie();
    let Ok(json) = cipher.decrypt(
        &AesNonce::from(nonce),
        Payload {
            msg: ct,
            aad: name.as_bytes(),
        },
    ) else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&json).ok())
}

/// Cached discovery of the provider.
#[derive(Default)]
pub struct Provider {
    metadata: RwLock<Option<(Instant, CoreProviderMetadata)>>,
    http: reqwest::Client,
}

impl Provider {
    /// A provider client; discovery happens at the first sign-in.
    pub fn new() -> anyhow::Result<Provider> {
        let http = reqwest::Client::builder()
            // The openidconnect crate requires no redirects (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Provider {
            metadata: RwLock::new(None),
            http,
        })
    }

    async fn metadata(&self, issuer: &url::Url, force: bool) -> anyhow::Result<CoreProviderMetadata> {
        if !force
            && let Some((at, m)) = self.metadata.read().await.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        let issuer_url = IssuerUrl::new(issuer.as_str().trim_end_matches('/').to_string())?;
        let m = CoreProviderMetadata::discover_async(issuer_url, &self.http)
            .await
            .with_context(|| format!("discovering the OpenID provider at {issuer} (OIDC_ISSUER_URL)"))?;
        *self.metadata.write().await = Some((Instant::now(), m.clone()));
        Ok(m)
    }
}

/// Query of `/login`.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct LoginQuery {
    /// Where to go after signing in: a same-origin relative path such as `/deployments`.
    pub redirect: Option<String>,
}

/// Whether `path` is a same-origin relative path (no scheme, no host, no `//` or `/\`).
pub fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(|c| c.is_control() || c == '\\')
}

/// Validated redirect target.
pub fn redirect_target(q: &LoginQuery) -> ApiResult<String> {
    match q.redirect.as_deref() {
        None | Some("") => Ok("/".into()),
        Some(p) if p.len() > MAX_REDIRECT_LEN => Err(ApiError::BadRequest(format!(
            "redirect must be at most {MAX_REDIRECT_LEN} characters"
        ))),
        Some(p) if is_local_path(p) => Ok(p.to_string()),
        Some(_) => Err(ApiError::BadRequest(
            "redirect must be a same-origin relative path such as /deployments".into(),
        )),
    }
}

/// Starts sign-in with Google.
#[utoipa::path(get, path = "/login", tag = "auth", params(LoginQuery),
    responses((status = 303, description = "to the identity provider"), (status = 400, description = "bad redirect")))]
pub async fn login(State(state): State<AppState>, Query(q): Query<LoginQuery>) -> ApiResult<Response> {
    let redirect = redirect_target(&q)?;
    if state.config.dev_mode {
        return Ok(Redirect::to(&format!("/dev/login?redirect={}", urlencode(&redirect))).into_response());
    }
    let client = client(&state, false).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let pending = Pending {
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        redirect,
        started: crate::db::now(),
    };
    let mut resp = Redirect::to(url.as_str()).into_response();
    let cookie = state_cookie(&state, &seal(&state, &pending)?, LOGIN_TTL_SECS);
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// Query of the OAuth callback.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct CallbackQuery {
    /// Authorization code.
    pub code: Option<String>,
    /// The state sent at `/login`.
    pub state: Option<String>,
    /// Error from the provider (e.g. access_denied).
    pub error: Option<String>,
}

/// Completes sign-in: checks state, exchanges the code, validates the ID token.
///
/// Every answer clears the state cookie: a sign-in attempt is used once.
#[utoipa::path(get, path = "/oauth2/callback", tag = "auth", params(CallbackQuery),
    responses((status = 303, description = "signed in"), (status = 400, description = "bad or replayed state"),
        (status = 403, description = "ID token or email refused")))]
pub async fn callback(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let mut resp = match complete(&state, session, headers, q).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    resp.headers_mut()
        .append(header::SET_COOKIE, state_cookie(&state, "", 0));
    resp
}

async fn complete(state: &AppState, session: Session, headers: HeaderMap, q: CallbackQuery) -> ApiResult<Response> {
    if let Some(e) = q.error {
        return Err(ApiError::Forbidden(format!(
            "the identity provider refused sign-in ({e}); try /login again"
        )));
    }
    let (Some(code), Some(query_state)) = (q.code, q.state) else {
        return Err(ApiError::BadRequest(
            "code and state are required; start again at /login".into(),
        ));
    };
    let cookie = cookie_value(&headers, &state.config.state_cookie());
    let Some(cookie) = cookie.filter(|c| !c.is_empty()) else {
        return Err(ApiError::BadRequest(
            "no sign-in in progress for this browser (already completed or expired); start again at /login".into(),
        ));
    };
    let Some(pending) = open(state, &cookie)? else {
        return Err(ApiError::BadRequest(
            "the sign-in state cookie is not valid; start again at /login".into(),
        ));
    };
    if query_state != pending.state {
        return Err(ApiError::BadRequest(
            "sign-in state does not match; start again at /login".into(),
        ));
    }
    let age = crate::db::now() - pending.started;
    if !(0..=LOGIN_TTL_SECS).contains(&age) {
        return Err(ApiError::BadRequest(
            "sign-in took too long; start again at /login".into(),
        ));
    }
    let client = client(state, false).await?;
    let exchange = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("the provider has no token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()));
    let token = exchange.request_async(&state.oidc.http).await.map_err(|e| {
        tracing::warn!(error = %e, "authorization code exchange refused");
        ApiError::Forbidden("the identity provider refused the authorization code; start again at /login".into())
    })?;
    let id_token = token
        .id_token()
        .ok_or_else(|| ApiError::Forbidden("the identity provider sent no ID token".into()))?;
    let nonce = Nonce::new(pending.nonce.clone());
    let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
        Ok(c) => c.clone(),
        Err(first) => {
            // The provider may have rotated its keys: re-read them once.
            let fresh = self::client(state, true).await?;
            id_token
                .claims(&fresh.id_token_verifier(), &nonce)
                .cloned()
                .map_err(|_| {
                    tracing::warn!(error = %first, "ID token refused");
                    ApiError::Forbidden(format!("the ID token was refused: {first}"))
                })?
        }
    };
    let Some(email) = claims.email().map(|e| e.as_str().to_string()) else {
        return Err(ApiError::Forbidden("the ID token carries no email address".into()));
    };
    if claims.email_verified() != Some(true) {
        return Err(ApiError::Forbidden(format!(
            "the email address {email} is not verified with the identity provider"
        )));
    }
    let name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().to_string())
        .unwrap_or_default();
    let subject = format!("{}|{}", claims.issuer().as_str(), claims.subject().as_str());
    let (user, created) = state.db.upsert_user(&subject, &email, &name).await?;
    if !state.db.user_is_active(&user.id).await? {
        tracing::warn!(user = %user.id, "sign-in of a deactivated user refused");
        return Err(ApiError::Forbidden(
            "this account is deactivated; ask the platform's administrator".into(),
        ));
    }
    state.platform.ensure_sandbox(&user).await?;
    session.cycle_id().await.map_err(session_error)?;
    session.insert(SESSION_USER, &user.id).await.map_err(session_error)?;
    tracing::info!(user = %user.id, created, "signed in");
    Ok(Redirect::to(&pending.redirect).into_response())
}

async fn client(
    state: &AppState,
    force: bool,
) -> ApiResult<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
> {
    let c = &state.config;
    let (Some(id), Some(secret), Some(redirect)) =
        (&c.google_client_id, &c.google_client_secret, &c.google_redirect_url)
    else {
        return Err(ApiError::Unavailable(
            "sign-in is not configured (GOOGLE_CLIENT_ID)".into(),
        ));
    };
    let metadata = state.oidc.metadata(&c.oidc_issuer_url, force).await.map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "OpenID provider discovery failed");
        ApiError::Unavailable("the identity provider cannot be reached; try again shortly".into())
    })?;
    let redirect =
        RedirectUrl::new(redirect.to_string()).map_err(|e| ApiError::Internal(anyhow::anyhow!("redirect url: {e}")))?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(id.clone()),
        Some(ClientSecret::new(secret.expose_secret().to_string())),
    )
    .set_redirect_uri(redirect))
}

fn session_error(e: tower_sessions::session::Error) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("session store: {e}"))
}

fn state_cookie(state: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let c = &state.config;
    let secure = if c.cookie_secure { "; Secure" } else { "" };
    let v = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        c.state_cookie()
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A cookie's value from the request headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::is_local_path;

    #[test]
    fn only_same_origin_paths_are_redirect_targets() {
        for ok in ["/", "/deployments", "/a?b=c#d"] {
            assert!(is_local_path(ok), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "/a\nb",
            "/\\/x",
            "",
        ] {
            assert!(!is_local_path(bad), "{bad}");
        }
    }
}
