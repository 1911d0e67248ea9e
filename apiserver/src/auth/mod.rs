//! Who is calling: a session (Google sign-in or `/dev/login`), an API token (`Authorization:
//! Bearer`), or in DEV_MODE anyone (as dev@localhost). Plus the CSRF rule for browser requests.

pub mod csrf;
pub mod oidc;

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower_sessions::Session;

use crate::AppState;
use crate::db::User;
use crate::error::ApiError;

/// Session key of the signed-in user's id.
pub const SESSION_USER: &str = "user_id";
/// Email of the DEV_MODE user.
pub const DEV_EMAIL: &str = "dev@localhost";
/// Subject of the DEV_MODE user.
pub const DEV_SUBJECT: &str = "dev-mode|dev";
/// Prefix of API tokens (recognisable in secret scanners and logs).
pub const TOKEN_PREFIX: &str = "kst_";

/// What an API token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    /// Read deployments.
    #[serde(rename = "deployments:read")]
    DeploymentsRead,
    /// Create, change and delete deployments.
    #[serde(rename = "deployments:write")]
    DeploymentsWrite,
    /// Read templates.
    #[serde(rename = "templates:read")]
    TemplatesRead,
    /// Create and change templates.
    #[serde(rename = "templates:write")]
    TemplatesWrite,
    /// Read secret names.
    #[serde(rename = "secrets:read")]
    SecretsRead,
    /// Store and delete secrets.
    #[serde(rename = "secrets:write")]
    SecretsWrite,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 6] = [
        Scope::DeploymentsRead,
        Scope::DeploymentsWrite,
        Scope::TemplatesRead,
        Scope::TemplatesWrite,
        Scope::SecretsRead,
        Scope::SecretsWrite,
    ];

    /// The scope's wire name, e.g. `deployments:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::DeploymentsRead => "deployments:read",
            Scope::DeploymentsWrite => "deployments:write",
            Scope::TemplatesRead => "templates:read",
            Scope::TemplatesWrite => "templates:write",
            Scope::SecretsRead => "secrets:read",
            Scope::SecretsWrite => "secrets:write",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A session cookie.
    Session,
    /// An API token.
    Token,
    /// DEV_MODE without a session.
    DevMode,
}

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user.
    pub user: User,
    /// Scopes of a token; sessions may do everything their user may.
    pub scopes: Option<Vec<Scope>>,
    /// How the caller authenticated.
    pub via: Via,
}

impl Principal {
    /// 403 unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        match &self.scopes {
            Some(s) if !s.contains(&scope) => {
                Err(ApiError::Forbidden(format!("this API token lacks the {scope} scope")))
            }
            _ => Ok(()),
        }
    }
}

/// A random URL-safe string of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 hex of a token: what the database keeps.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new API token: `kst_` and 32 random bytes.
pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_token(32))
}

/// 401 for the DEV_MODE user's sessions and tokens when DEV_MODE is off: anyone could mint them
/// while it was on (issue 15 item 7).
fn refuse_dev_mode_user(state: &AppState, user: &User, what: &str) -> Result<(), ApiError> {
    if user.is_dev_mode() && !state.config.dev_mode {
        return Err(ApiError::Unauthorized(format!(
            "this {what} belongs to {DEV_EMAIL}, the DEV_MODE user: it was made while authentication was off \
             and does not work while DEV_MODE is off; sign in (GET /login) and create a new one"
        )));
    }
    Ok(())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
            let value = value.to_str().unwrap_or("");
            let token = value
                .strip_prefix("Bearer ")
                .ok_or_else(|| ApiError::Unauthorized("Authorization must be 'Bearer <API token>'".into()))?;
            let hash = hash_token(token.trim());
            let found = state.db.find_token(&hash).await?;
            let (user, scopes) =
                found.ok_or_else(|| ApiError::Unauthorized("the API token is unknown, revoked or expired".into()))?;
            refuse_dev_mode_user(state, &user, "API token")?;
            state.db.touch_token(&hash).await?;
            let scopes = scopes.iter().filter_map(|s| Scope::parse(s)).collect();
            // Normally a cache hit; recreates the sandbox if it was removed since sign-in.
            state.platform.ensure_sandbox(&user).await?;
            return Ok(Principal {
                user,
                scopes: Some(scopes),
                via: Via::Token,
            });
        }
        if let Some(session) = parts.extensions.get::<Session>().cloned() {
            let user_id: Option<String> = session
                .get(SESSION_USER)
                .await
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("reading the session: {e}")))?;
            if let Some(id) = user_id
                && let Some(user) = state.db.user_by_id(&id).await?
            {
                if !state.db.user_is_active(&user.id).await? {
                    // Deactivated by an administrator (`--deactivate-user`): no access, and no
                    // sandbox is recreated.
                    return Err(ApiError::Unauthorized("this account is deactivated".into()));
                }
                refuse_dev_mode_user(state, &user, "session")?;
                state.platform.ensure_sandbox(&user).await?;
                return Ok(Principal {
                    user,
                    scopes: None,
                    via: Via::Session,
                });
            }
        }
        if state.config.dev_mode {
            let user = state
                .dev_user
                .get_or_try_init(|| async {
                    let (user, _) = state.db.upsert_user(DEV_SUBJECT, DEV_EMAIL, "Developer").await?;
                    state.platform.ensure_sandbox(&user).await?;
                    Ok::<_, ApiError>(user)
                })
                .await?;
            return Ok(Principal {
                user: user.clone(),
                scopes: None,
                via: Via::DevMode,
            });
        }
        Err(ApiError::Unauthorized(
            "sign in first (GET /login), or send an API token".into(),
        ))
    }
}
