//! `/api/tokens`: API tokens for scripts and CI. A token is shown once, at creation; the database
//! keeps its SHA-256. Tokens are managed from a browser session only (a token cannot mint tokens).
//! A token may expire (`expiresInDays`; an expired token answers 401), and a user holds at most
//! `API_TOKENS_MAX_PER_USER` unexpired tokens (409 beyond).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::ApiJson;
use crate::AppState;
use crate::auth::{Principal, Scope, Via, hash_token, new_api_token};
use crate::db::TokenInfo;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// Routes of this area.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tokens", get(list).post(create))
        .route("/api/tokens/{id}", delete(revoke))
}

/// Body of a token creation.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A name to recognise it by (1-64 characters).
    pub name: String,
    /// Scopes, e.g. `["deployments:read", "deployments:write"]`.
    pub scopes: Vec<Scope>,
    /// Days until the token stops working (1 to 3650); omitted: it does not expire.
    #[serde(rename = "expiresInDays", default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<i64>,
    /// A team id: the token acts in that team's sandbox, with the creator's role there (checked on
    /// every request). Omitted: the creator's own sandbox.
    #[serde(default)]
    pub team: Option<String>,
}

/// The longest token lifetime that can be asked for: ten years.
pub const MAX_TOKEN_DAYS: i64 = 3650;

/// A new token: the only time its value is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The token; send it as `Authorization: Bearer <token>`. It cannot be shown again.
    pub token: String,
    /// Its listing.
    #[serde(flatten)]
    pub info: TokenInfo,
}

fn session_only(p: &Principal) -> ApiResult<()> {
    if p.via == Via::Token {
        return Err(ApiError::Forbidden(
            "API tokens are managed from a signed-in browser session".into(),
        ));
    }
    Ok(())
}

/// The caller's tokens (never their values).
#[utoipa::path(get, path = "/api/tokens", tag = "tokens", responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Vec<TokenInfo>>> {
    session_only(&p)?;
    Ok(Json(state.db.list_tokens(&p.user.id).await?))
}

/// Creates a token.
#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody),
        (status = 404, description = "the team named is not one of the caller's", body = ErrorBody),
        (status = 409, description = "the caller holds API_TOKENS_MAX_PER_USER unexpired tokens already, or the \
            caller's sandbox belongs to another identity or installation", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<impl IntoResponse> {
    session_only(&p)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("name must be 1 to 64 printable characters".into()));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "scopes must name at least one of: {}",
            Scope::ALL.map(|s| s.as_str()).join(", ")
        )));
    }
    let expires_at = match body.expires_in_days {
        None => None,
        Some(days) if (1..=MAX_TOKEN_DAYS).contains(&days) => Some(crate::db::now() + days * 86_400),
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "expiresInDays must be 1 to {MAX_TOKEN_DAYS}, or omitted for a token that does not expire"
            )));
        }
    };
    if let Some(team) = &body.team {
        super::path_name("team", team, super::NameKind::Id)?;
        if crate::teams::store::team_role(&state.db, team, &p.user.id)
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound(format!("no team {team:?}")));
        }
    }
    let mut scopes: Vec<String> = body.scopes.iter().map(|s| s.to_string()).collect();
    scopes.sort();
    scopes.dedup();
    let token = new_api_token();
    let max = state.config.api_tokens_max_per_user;
    let info = state
        .db
        .insert_token_limited(&p.user.id, name, &hash_token(&token), &scopes, expires_at, max)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "you already hold {max} API tokens, the most allowed (API_TOKENS_MAX_PER_USER); revoke one first"
            ))
        })?;
    if let Some(team) = &body.team {
        crate::teams::store::bind_token(&state.db, &p.user.id, &info.id, team).await?;
    }
    tracing::info!(user = %p.user.id, token_id = %info.id, team = body.team.as_deref().unwrap_or(""), "API token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info })))
}

/// Revokes a token.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204, description = "revoked"), (status = 404, body = ErrorBody)))]
pub async fn revoke(State(state): State<AppState>, p: Principal, Path(id): Path<String>) -> ApiResult<StatusCode> {
    session_only(&p)?;
    super::path_name("id", &id, super::NameKind::Id)?;
    let hash = super::events::token_hash(&state, &p.user.id, &id).await?;
    if state.db.revoke_token(&p.user.id, &id).await? {
        // Its open event and log streams end with it.
        if let Some(hash) = hash {
            state.streams.end_token(&hash);
            state.log_follows.end_token(&hash);
        }
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("token {id:?} not found")))
    }
}
