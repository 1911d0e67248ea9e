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
use crate::teams::SandboxRole;

/// Session key of the signed-in user's id.
pub const SESSION_USER: &str = "user_id";
/// Session key of the current team's id (absent: the user's own sandbox).
pub const SESSION_TEAM: &str = "team_id";
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

    /// Whether the scope changes things (a team viewer holds none of these).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Scope::DeploymentsWrite | Scope::TemplatesWrite | Scope::SecretsWrite
        )
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
    /// The sandbox the request acts in and the caller's role there.
    pub tenant: Tenant,
}

/// The sandbox a request acts in: the caller's own, or the current team's (the session's
/// current team, or the team an API token is bound to).
#[derive(Clone, Debug)]
pub struct Tenant {
    /// The sandbox's owner: the user, or the team as an owner ([`crate::teams::Team::owner`]).
    /// Sandbox, apps and secrets are keyed by its id.
    pub owner: User,
    /// The caller's role there.
    pub role: SandboxRole,
    /// The team, when it is a team's sandbox.
    pub team: Option<crate::teams::Team>,
}

impl Tenant {
    /// The user's own sandbox.
    pub fn personal(user: &User) -> Tenant {
        Tenant {
            owner: user.clone(),
            role: SandboxRole::Owner,
            team: None,
        }
    }
}

impl Principal {
    /// 403 unless the caller's role in the current sandbox is at least `need`, naming both.
    pub fn require_role(&self, need: SandboxRole) -> Result<(), ApiError> {
        if self.tenant.role >= need {
            return Ok(());
        }
        let team = self.tenant.team.as_ref().map(|t| t.name.as_str()).unwrap_or("");
        Err(ApiError::Forbidden(format!(
            "this needs the {} role in team {team} (you are a {})",
            need.as_str(),
            self.tenant.role.as_str()
        )))
    }

    /// The current sandbox as the API shows it.
    pub fn sandbox(&self, state: &AppState) -> crate::platform::SandboxInfo {
        state.platform.sandbox(&self.tenant.owner)
    }

    /// 403 unless the caller holds `scope` (API tokens) and their role in the current sandbox
    /// allows it: a write (deployments, templates, secrets) needs the developer role, a read any.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        match &self.scopes {
            Some(s) if !s.contains(&scope) => {
                return Err(ApiError::Forbidden(format!("this API token lacks the {scope} scope")));
            }
            _ => {}
        }
        if scope.writes() {
            self.require_role(SandboxRole::Developer)?;
        }
        Ok(())
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
            let found = state.db.find_token_and_team(&hash).await?;
            let (user, scopes, team) =
                found.ok_or_else(|| ApiError::Unauthorized("the API token is unknown, revoked or expired".into()))?;
            refuse_dev_mode_user(state, &user, "API token")?;
            state.db.touch_token(&hash).await?;
            let scopes = scopes.iter().filter_map(|s| Scope::parse(s)).collect();
            // Normally a cache hit; recreates the sandbox if it was removed since sign-in.
            state.platform.ensure_sandbox(&user).await?;
            let tenant = match team {
                None => Tenant::personal(&user),
                Some(team) => team_tenant(state, &user, &team).await?.ok_or_else(|| {
                    ApiError::Forbidden(
                        "this API token acts in a team you are no longer a member of; create a new token".into(),
                    )
                })?,
            };
            return Ok(Principal {
                user,
                scopes: Some(scopes),
                via: Via::Token,
                tenant,
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
                let tenant = session_tenant(state, &session, &user).await?;
                return Ok(Principal {
                    user,
                    scopes: None,
                    via: Via::Session,
                    tenant,
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
            let tenant = match parts.extensions.get::<Session>() {
                Some(session) => session_tenant(state, session, user).await?,
                None => Tenant::personal(user),
            };
            return Ok(Principal {
                user: user.clone(),
                scopes: None,
                via: Via::DevMode,
                tenant,
            });
        }
        Err(ApiError::Unauthorized(
            "sign in first (GET /login), or send an API token".into(),
        ))
    }
}

/// The session's current team as the request's sandbox; a team the user no longer belongs to is
/// dropped from the session (back to their own sandbox).
async fn session_tenant(state: &AppState, session: &Session, user: &User) -> Result<Tenant, ApiError> {
    let team: Option<String> = session
        .get(SESSION_TEAM)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("reading the session: {e}")))?;
    let Some(team) = team else {
        return Ok(Tenant::personal(user));
    };
    match team_tenant(state, user, &team).await? {
        Some(t) => Ok(t),
        None => {
            let _ = session.remove::<String>(SESSION_TEAM).await;
            Ok(Tenant::personal(user))
        }
    }
}

/// Team `team_id`'s sandbox with the user's role there; None when they are not in it (or it is
/// gone). Recreates the team's sandbox, with its members, if it was removed.
pub async fn team_tenant(state: &AppState, user: &User, team_id: &str) -> Result<Option<Tenant>, ApiError> {
    let Some(team) = crate::teams::store::team(&state.db, team_id).await? else {
        return Ok(None);
    };
    let Some(role) = crate::teams::store::team_role(&state.db, team_id, &user.id).await? else {
        return Ok(None);
    };
    let owner = team.owner();
    if !state.platform.has_sandbox(&owner) {
        crate::http::teams::sync_sandbox(state, &team).await?;
    }
    Ok(Some(Tenant {
        owner,
        role: SandboxRole::of(role),
        team: Some(team),
    }))
}
