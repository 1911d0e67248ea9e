//! Organizations, teams, members, invitations and the current team (issue 16; see
//! [`crate::teams`] for the roles). Outsiders get 404 for an organization or team they are not
//! in, whatever it is; members without the role get 403 naming it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use crds::MemberRole;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::{ApiJson, NameKind, path_name};
use crate::AppState;
use crate::auth::{Principal, SESSION_TEAM, Via, hash_token, random_token};
use crate::db::now;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::teams::store::{self, AuditEntry, Invited, MemberChange, role_str};
use crate::teams::{Invitation, Member, Org, OrgRole, Team, clean_name, parse_role, sandbox_members};

/// How long an invitation works: 7 days.
pub const INVITATION_TTL_SECONDS: i64 = 7 * 86_400;
/// How soon an invitation may be sent again: 10 minutes.
pub const RESEND_COOLDOWN_SECONDS: i64 = 600;
/// Most audit entries listed.
pub const AUDIT_LIMIT: i64 = 200;

/// Routes of this area.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/me/team", put(set_current_team))
        .route("/api/orgs", get(list_orgs).post(create_org))
        .route("/api/orgs/{org}", get(org_detail).patch(rename_org))
        .route("/api/orgs/{org}/audit", get(org_audit))
        .route("/api/orgs/{org}/members/{user}", put(set_org_role))
        .route("/api/orgs/{org}/teams", post(create_team))
        .route(
            "/api/teams/{team}",
            get(team_detail).patch(rename_team).delete(delete_team),
        )
        .route(
            "/api/teams/{team}/members/{user}",
            put(set_member_role).delete(remove_member),
        )
        .route("/api/teams/{team}/invitations", post(invite))
        .route(
            "/api/teams/{team}/invitations/{id}",
            axum::routing::delete(revoke_invitation),
        )
        .route("/api/teams/{team}/invitations/{id}/resend", post(resend_invitation))
        .route("/api/invitations/{token}", get(invitation_info))
        .route("/api/invitations/{token}/accept", post(accept_invitation))
}

fn rfc3339(secs: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A team as the caller sees it in lists.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamRef {
    /// Team id.
    pub id: String,
    /// Team name.
    pub name: String,
    /// Its organization's id.
    pub org_id: String,
    /// Its organization's name.
    pub org_name: String,
    /// The caller's role: admin, developer or viewer.
    pub role: String,
}

impl TeamRef {
    /// The view of `team` for a caller with `role`.
    pub fn new(team: &Team, role: MemberRole) -> TeamRef {
        TeamRef {
            id: team.id.clone(),
            name: team.name.clone(),
            org_id: team.org_id.clone(),
            org_name: team.org_name.clone(),
            role: role_str(role).into(),
        }
    }
}

/// An organization in a list.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Plan: free, business or enterprise.
    pub plan: String,
    /// The caller's role: owner, admin or member.
    pub role: OrgRole,
}

impl OrgView {
    fn new(org: &Org, role: OrgRole) -> OrgView {
        OrgView {
            id: org.id.clone(),
            name: org.name.clone(),
            plan: org.plan.as_str().into(),
            role,
        }
    }
}

/// A person in a team or organization.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// User id.
    pub user_id: String,
    /// Verified email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role: admin/developer/viewer in a team; owner/admin/member in an organization.
    pub role: String,
}

/// The plan's limits of an organization (null: unlimited).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgLimits {
    /// Most teams.
    pub teams: Option<i32>,
    /// Most members per team (pending invitations count).
    pub members_per_team: Option<i32>,
}

/// A team of an organization, in its detail.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgTeam {
    /// Team id.
    pub id: String,
    /// Team name.
    pub name: String,
    /// Its members.
    pub members: i64,
}

/// An organization with its members and teams.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgDetail {
    /// The organization.
    #[serde(flatten)]
    pub org: OrgView,
    /// Its plan's limits.
    pub limits: OrgLimits,
    /// Its members.
    pub members: Vec<MemberView>,
    /// Its teams.
    pub teams: Vec<OrgTeam>,
}

/// A pending invitation.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    /// Id.
    pub id: String,
    /// Invited address.
    pub email: String,
    /// Role it grants.
    pub role: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: it no longer works after this.
    pub expires_at: String,
    /// RFC 3339 of the last sending.
    pub last_sent_at: String,
    /// Inviter's email.
    pub invited_by: String,
    /// The accept link, only in the answer that created or resent it and only when the server sends
    /// no email (EMAIL_PROVIDER unset): the admin passes it on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl InvitationView {
    fn new(i: &Invitation, link: Option<String>) -> InvitationView {
        InvitationView {
            id: i.id.clone(),
            email: i.email.clone(),
            role: role_str(i.role).into(),
            created_at: rfc3339(i.created_at),
            expires_at: rfc3339(i.expires_at),
            last_sent_at: rfc3339(i.last_sent_at),
            invited_by: i.invited_by.clone(),
            link,
        }
    }
}

/// A team with its members (and, for its admins, pending invitations).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamView {
    /// The team and the caller's role.
    #[serde(flatten)]
    pub team: TeamRef,
    /// Its sandbox namespace.
    pub namespace: String,
    /// Its members.
    pub members: Vec<MemberView>,
    /// Pending invitations (empty unless the caller is an admin).
    pub invitations: Vec<InvitationView>,
}

/// An audit entry.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    /// RFC 3339.
    pub at: String,
    /// Who (email).
    pub actor: String,
    /// What: team.created, team.renamed, team.deleted, member.added, member.role_changed,
    /// member.removed, member.left, invitation.sent, invitation.resent, invitation.revoked,
    /// invitation.accepted.
    pub action: String,
    /// The team's name.
    pub team: Option<String>,
    /// Whom (email).
    pub subject: Option<String>,
    /// More.
    pub detail: Option<String>,
}

/// What an invitation offers, for its accept page.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationInfo {
    /// The team.
    pub team_name: String,
    /// Its organization.
    pub org_name: String,
    /// The role it grants.
    pub role: String,
    /// The invited address.
    pub email: String,
    /// The inviter's email.
    pub invited_by: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// The answer to an accepted invitation.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The team joined (now the session's current team).
    pub team: TeamRef,
}

/// A name in a body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NameBody {
    /// 1-64 characters.
    pub name: String,
}

/// A role in a body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    /// admin, developer or viewer.
    pub role: String,
}

/// An invitation to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    /// The address to invite.
    pub email: String,
    /// admin, developer or viewer.
    pub role: String,
}

/// The current team to switch to.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CurrentTeam {
    /// A team id, or null for the caller's own sandbox.
    pub team: Option<String>,
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("no {what} {id:?}"))
}

fn role_of(s: &str) -> ApiResult<MemberRole> {
    parse_role(s).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "role {:?} is not valid: it must be admin, developer or viewer",
            s.chars().take(40).collect::<String>()
        ))
    })
}

fn members_view(members: &[Member]) -> Vec<MemberView> {
    members
        .iter()
        .map(|m| MemberView {
            user_id: m.user_id.clone(),
            email: m.email.clone(),
            name: m.name.clone(),
            role: role_str(m.role).into(),
        })
        .collect()
}

/// The plan limit message, e.g. "the free plan allows 1 team per organization".
fn limit_message(plan: crds::Plan, n: i32, what: &str) -> String {
    let plural = if n == 1 { "" } else { "s" };
    format!(
        "the {} plan allows {n} {what}{plural}; an organization on a bigger plan gets more",
        plan.as_str()
    )
}

async fn audit(state: &AppState, org_id: &str, e: AuditEntry) -> ApiResult<()> {
    store::audit(&state.db, org_id, &e).await?;
    Ok(())
}

fn entry(
    p: &Principal,
    action: &str,
    team: Option<&Team>,
    subject: Option<&str>,
    detail: Option<String>,
) -> AuditEntry {
    AuditEntry {
        at: now(),
        actor: p.user.email.clone(),
        action: action.into(),
        team: team.map(|t| t.name.clone()),
        subject: subject.map(str::to_string),
        detail,
    }
}

/// Organizations, teams and invitations are managed from a signed-in browser session, like API
/// tokens: a token (whatever its scopes or team) must not invite, promote or delete.
fn browser_only(p: &Principal) -> ApiResult<()> {
    if p.via == Via::Token {
        return Err(ApiError::Forbidden(
            "organizations, teams and invitations are managed from a signed-in browser session, not with an API token"
                .into(),
        ));
    }
    Ok(())
}

/// The organization `org` for the caller: 404 when they are not in it.
async fn my_org(state: &AppState, p: &Principal, org: &str) -> ApiResult<(Org, OrgRole)> {
    browser_only(p)?;
    path_name("org", org, NameKind::Id)?;
    store::org_for(&state.db, org, &p.user.id)
        .await?
        .ok_or_else(|| not_found("organization", org))
}

fn require_manager(role: OrgRole, org: &Org) -> ApiResult<()> {
    if role.manages() {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "this needs the owner or admin role in organization {} (you are a member)",
        org.name
    )))
}

/// Team `team` with the caller's role: 404 when they are not in it.
async fn my_team(state: &AppState, p: &Principal, team: &str) -> ApiResult<(Team, MemberRole)> {
    browser_only(p)?;
    path_name("team", team, NameKind::Id)?;
    let t = store::team(&state.db, team)
        .await?
        .ok_or_else(|| not_found("team", team))?;
    let role = store::team_role(&state.db, team, &p.user.id)
        .await?
        .ok_or_else(|| not_found("team", team))?;
    Ok((t, role))
}

fn require_team_admin(role: MemberRole, team: &Team) -> ApiResult<()> {
    if role == MemberRole::Admin {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "this needs the admin role in team {} (you are a {})",
        team.name,
        role_str(role)
    )))
}

/// Writes team `team`'s sandbox: its plan and members (the org's owners and admins as admins).
pub async fn sync_sandbox(state: &AppState, team: &Team) -> ApiResult<()> {
    let members = store::team_members(&state.db, &team.id).await?;
    let managers: Vec<Member> = store::org_members(&state.db, &team.org_id)
        .await?
        .into_iter()
        .filter(|(_, r)| r.manages())
        .map(|(m, _)| m)
        .collect();
    state
        .platform
        .put_sandbox(
            &team.owner(),
            team.plan,
            sandbox_members(&members, &managers),
            Some(&team.org_id),
        )
        .await
}

/// How often every team's sandbox is written again from the database: repairs a member change
/// whose write to Kubernetes failed, an organization plan set with `--set-org-plan`, and a
/// sandbox edited by hand.
pub const RESYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// Writes every team's sandbox from the database at once and then every [`RESYNC_INTERVAL`].
pub fn spawn_resync(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RESYNC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let teams = match store::all_teams(&state.db).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "listing the teams to resync their sandboxes failed");
                    continue;
                }
            };
            for team in teams {
                if let Err(e) = sync_sandbox(&state, &team).await {
                    tracing::warn!(team = %team.id, error = %e, "writing a team's sandbox failed; retried at the next resync");
                }
            }
        }
    })
}

async fn team_view(state: &AppState, team: &Team, role: MemberRole) -> ApiResult<TeamView> {
    let members = store::team_members(&state.db, &team.id).await?;
    let invitations = if role == MemberRole::Admin {
        store::pending_invitations(&state.db, &team.id)
            .await?
            .iter()
            .map(|i| InvitationView::new(i, None))
            .collect()
    } else {
        vec![]
    };
    Ok(TeamView {
        team: TeamRef::new(team, role),
        namespace: state.platform.sandbox(&team.owner()).namespace,
        members: members_view(&members),
        invitations,
    })
}

/// Switches the session's current team (null: the caller's own sandbox); the answer is `/api/me`.
#[utoipa::path(put, path = "/api/me/team", tag = "teams", request_body = CurrentTeam,
    responses((status = 200, body = super::system::Me), (status = 400, body = ErrorBody),
        (status = 403, description = "called with an API token (a token's team is fixed at its creation)", body = ErrorBody),
        (status = 404, description = "not a member of that team", body = ErrorBody)))]
pub async fn set_current_team(
    State(state): State<AppState>,
    p: Principal,
    session: Session,
    ApiJson(body): ApiJson<CurrentTeam>,
) -> ApiResult<Json<super::system::Me>> {
    if p.via == Via::Token {
        return Err(ApiError::Forbidden(
            "an API token's team is fixed when it is created; switch teams in a browser session".into(),
        ));
    }
    let tenant = match &body.team {
        None => crate::auth::Tenant::personal(&p.user),
        Some(team) => {
            path_name("team", team, NameKind::Id)?;
            crate::auth::team_tenant(&state, &p.user, team)
                .await?
                .ok_or_else(|| not_found("team", team))?
        }
    };
    let result = match &body.team {
        Some(t) => session.insert(SESSION_TEAM, t).await,
        None => session.remove::<String>(SESSION_TEAM).await.map(|_| ()),
    };
    result.map_err(|e| ApiError::Internal(anyhow::anyhow!("writing the session: {e}")))?;
    let p = Principal { tenant, ..p };
    Ok(Json(super::system::me_of(&state, p).await?))
}

/// The caller's organizations.
#[utoipa::path(get, path = "/api/orgs", tag = "teams", responses((status = 200, body = Vec<OrgView>), (status = 403, description = "called with an API token", body = ErrorBody)))]
pub async fn list_orgs(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Vec<OrgView>>> {
    browser_only(&p)?;
    let orgs = store::orgs_of(&state.db, &p.user.id).await?;
    Ok(Json(orgs.iter().map(|(o, r)| OrgView::new(o, *r)).collect()))
}

/// Creates an organization; the caller is its owner.
#[utoipa::path(post, path = "/api/orgs", tag = "teams", request_body = NameBody,
    responses((status = 201, description = "created on ORG_DEFAULT_PLAN", body = OrgView), (status = 400, body = ErrorBody),
        (status = 403, description = "called with an API token, or the caller owns ORGS_MAX_PER_USER organizations", body = ErrorBody)))]
pub async fn create_org(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<NameBody>,
) -> ApiResult<impl IntoResponse> {
    browser_only(&p)?;
    let name = clean_name("organization", &body.name).map_err(ApiError::BadRequest)?;
    let max = state.config.orgs_max_per_user;
    let org = store::create_org(&state.db, &p.user.id, &name, state.config.org_default_plan, max)
        .await?
        .ok_or_else(|| {
            ApiError::Forbidden(format!(
                "you own {max} organizations already, the most allowed (ORGS_MAX_PER_USER); use one of them, or \
                 ask an administrator to raise the limit"
            ))
        })?;
    tracing::info!(user = %p.user.id, org = %org.id, "organization created");
    Ok((StatusCode::CREATED, Json(OrgView::new(&org, OrgRole::Owner))))
}

/// An organization with its members, teams and limits.
#[utoipa::path(get, path = "/api/orgs/{org}", tag = "teams", params(("org" = String, Path)),
    responses((status = 200, body = OrgDetail), (status = 403, description = "called with an API token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn org_detail(
    State(state): State<AppState>,
    p: Principal,
    Path(org): Path<String>,
) -> ApiResult<Json<OrgDetail>> {
    let (org, role) = my_org(&state, &p, &org).await?;
    let members = store::org_members(&state.db, &org.id).await?;
    let teams = store::org_teams(&state.db, &org.id).await?;
    let limits = org.plan.limits();
    Ok(Json(OrgDetail {
        limits: OrgLimits {
            teams: limits.teams_per_org,
            members_per_team: limits.members_per_team,
        },
        members: members
            .iter()
            .map(|(m, r)| MemberView {
                user_id: m.user_id.clone(),
                email: m.email.clone(),
                name: m.name.clone(),
                role: r.as_str().into(),
            })
            .collect(),
        teams: teams
            .iter()
            .map(|(t, n)| OrgTeam {
                id: t.id.clone(),
                name: t.name.clone(),
                members: *n,
            })
            .collect(),
        org: OrgView::new(&org, role),
    }))
}

/// Renames an organization (owner or admin).
#[utoipa::path(patch, path = "/api/orgs/{org}", tag = "teams", params(("org" = String, Path)), request_body = NameBody,
    responses((status = 200, body = OrgView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn rename_org(
    State(state): State<AppState>,
    p: Principal,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<NameBody>,
) -> ApiResult<Json<OrgView>> {
    let (mut org, role) = my_org(&state, &p, &org).await?;
    require_manager(role, &org)?;
    let name = clean_name("organization", &body.name).map_err(ApiError::BadRequest)?;
    store::rename_org(&state.db, &org.id, &name).await?;
    org.name = name;
    Ok(Json(OrgView::new(&org, role)))
}

/// Sets a member's organization role: owner, admin or member (owner only). Owners and admins
/// act as admins in every team of the organization.
#[utoipa::path(put, path = "/api/orgs/{org}/members/{user}", tag = "teams",
    params(("org" = String, Path), ("user" = String, Path)), request_body = RoleBody,
    responses((status = 200, body = OrgDetail), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the organization would have no owner", body = ErrorBody)))]
pub async fn set_org_role(
    State(state): State<AppState>,
    p: Principal,
    Path((org, user)): Path<(String, String)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult<Json<OrgDetail>> {
    let (o, role) = my_org(&state, &p, &org).await?;
    if role != OrgRole::Owner {
        return Err(ApiError::Forbidden(format!(
            "this needs the owner role in organization {} (you are a{} {})",
            o.name,
            if role == OrgRole::Admin { "n" } else { "" },
            role.as_str()
        )));
    }
    path_name("user", &user, NameKind::Label)?;
    let new = OrgRole::parse(&body.role).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "role {:?} is not valid: it must be owner, admin or member",
            body.role.chars().take(40).collect::<String>()
        ))
    })?;
    let email = store::org_members(&state.db, &o.id)
        .await?
        .into_iter()
        .find(|(m, _)| m.user_id == user)
        .map(|(m, _)| m.email)
        .ok_or_else(|| not_found("member", &user))?;
    match store::set_org_role(&state.db, &o.id, &user, new).await? {
        MemberChange::Done => {}
        MemberChange::NotMember => return Err(not_found("member", &user)),
        MemberChange::LastAdmin => {
            return Err(ApiError::Conflict(format!(
                "organization {} would have no owner: make another member owner first",
                o.name
            )));
        }
    }
    // Owners and admins are admins of every team's sandbox.
    for (t, _) in store::org_teams(&state.db, &o.id).await? {
        sync_sandbox(&state, &t).await?;
    }
    audit(
        &state,
        &o.id,
        entry(
            &p,
            "member.role_changed",
            None,
            Some(&email),
            Some(format!("organization {}", new.as_str())),
        ),
    )
    .await?;
    org_detail(State(state), p, Path(org)).await
}

/// The organization's audit of membership changes, newest first (owner or admin).
#[utoipa::path(get, path = "/api/orgs/{org}/audit", tag = "teams", params(("org" = String, Path)),
    responses((status = 200, body = Vec<AuditView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn org_audit(
    State(state): State<AppState>,
    p: Principal,
    Path(org): Path<String>,
) -> ApiResult<Json<Vec<AuditView>>> {
    let (org, role) = my_org(&state, &p, &org).await?;
    require_manager(role, &org)?;
    let entries = store::audit_log(&state.db, &org.id, AUDIT_LIMIT).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| AuditView {
                at: rfc3339(e.at),
                actor: e.actor,
                action: e.action,
                team: e.team,
                subject: e.subject,
                detail: e.detail,
            })
            .collect(),
    ))
}

/// Creates a team (organization owner or admin); the caller is its admin. Its sandbox is made.
#[utoipa::path(post, path = "/api/orgs/{org}/teams", tag = "teams", params(("org" = String, Path)), request_body = NameBody,
    responses((status = 201, body = TeamView), (status = 400, body = ErrorBody),
        (status = 403, description = "not an owner or admin, or the plan's teams per organization are used (the \
            message names the limit)", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "a team of that name exists", body = ErrorBody)))]
pub async fn create_team(
    State(state): State<AppState>,
    p: Principal,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<NameBody>,
) -> ApiResult<impl IntoResponse> {
    let (org, role) = my_org(&state, &p, &org).await?;
    require_manager(role, &org)?;
    let name = clean_name("team", &body.name).map_err(ApiError::BadRequest)?;
    if store::org_teams(&state.db, &org.id)
        .await?
        .iter()
        .any(|(t, _)| t.name == name)
    {
        return Err(ApiError::Conflict(format!(
            "organization {} has a team {name:?} already",
            org.name
        )));
    }
    let max = org.plan.limits().teams_per_org;
    let team = store::create_team(&state.db, &org, &name, &p.user.id, max)
        .await?
        .ok_or_else(|| ApiError::Forbidden(limit_message(org.plan, max.unwrap_or(0), "team per organization")))?;
    sync_sandbox(&state, &team).await?;
    audit(&state, &org.id, entry(&p, "team.created", Some(&team), None, None)).await?;
    tracing::info!(user = %p.user.id, team = %team.id, org = %org.id, "team created");
    Ok((
        StatusCode::CREATED,
        Json(team_view(&state, &team, MemberRole::Admin).await?),
    ))
}

/// A team with its members (and pending invitations for its admins).
#[utoipa::path(get, path = "/api/teams/{team}", tag = "teams", params(("team" = String, Path)),
    responses((status = 200, body = TeamView), (status = 403, description = "called with an API token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn team_detail(
    State(state): State<AppState>,
    p: Principal,
    Path(team): Path<String>,
) -> ApiResult<Json<TeamView>> {
    let (team, role) = my_team(&state, &p, &team).await?;
    Ok(Json(team_view(&state, &team, role).await?))
}

/// Renames a team (team admin).
#[utoipa::path(patch, path = "/api/teams/{team}", tag = "teams", params(("team" = String, Path)), request_body = NameBody,
    responses((status = 200, body = TeamView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rename_team(
    State(state): State<AppState>,
    p: Principal,
    Path(team): Path<String>,
    ApiJson(body): ApiJson<NameBody>,
) -> ApiResult<Json<TeamView>> {
    let (mut team, role) = my_team(&state, &p, &team).await?;
    require_team_admin(role, &team)?;
    let name = clean_name("team", &body.name).map_err(ApiError::BadRequest)?;
    if !store::rename_team(&state.db, &team.id, &name).await? {
        return Err(ApiError::Conflict(format!(
            "organization {} has a team {name:?} already",
            team.org_name
        )));
    }
    let detail = Some(format!("{} -> {name}", team.name));
    team.name = name;
    audit(
        &state,
        &team.org_id,
        entry(&p, "team.renamed", Some(&team), None, detail),
    )
    .await?;
    Ok(Json(team_view(&state, &team, role).await?))
}

/// Deletes a team with its sandbox and apps (organization owner or admin).
#[utoipa::path(delete, path = "/api/teams/{team}", tag = "teams", params(("team" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_team(
    State(state): State<AppState>,
    p: Principal,
    Path(team): Path<String>,
) -> ApiResult<StatusCode> {
    let (team, _) = my_team(&state, &p, &team).await?;
    let (org, org_role) = my_org(&state, &p, &team.org_id).await?;
    require_manager(org_role, &org)?;
    state.platform.delete_sandbox(&team.owner()).await?;
    delete_secrets(&state, &team).await?;
    store::delete_team(&state.db, &team.id).await?;
    audit(&state, &org.id, entry(&p, "team.deleted", Some(&team), None, None)).await?;
    tracing::info!(user = %p.user.id, team = %team.id, "team deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes every secret value the team stored (they are keyed by its id; nothing else may read
/// them once the team is gone). At most SECRETS_MAX_PER_USER of them.
async fn delete_secrets(state: &AppState, team: &Team) -> ApiResult<()> {
    use crate::secrets::Scope;
    let owner = team.owner();
    for s in state.secrets.list(&owner.id).await? {
        let scope = match (s.scope.as_str(), s.template, s.deployment, s.service) {
            ("user", ..) => Scope::User,
            ("template", Some(t), ..) => Scope::Template(t),
            ("deployment", _, Some(d), _) => Scope::Deployment(d),
            ("service", _, Some(deployment), Some(service)) => Scope::Service { deployment, service },
            (other, ..) => {
                tracing::warn!(team = %team.id, scope = other, "a team secret of an unknown scope is left");
                continue;
            }
        };
        state.secrets.delete(&owner.id, &scope, &s.name).await?;
    }
    Ok(())
}

/// Sets a member's role (team admin).
#[utoipa::path(put, path = "/api/teams/{team}/members/{user}", tag = "teams",
    params(("team" = String, Path), ("user" = String, Path)), request_body = RoleBody,
    responses((status = 200, body = TeamView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the team would have no admin", body = ErrorBody)))]
pub async fn set_member_role(
    State(state): State<AppState>,
    p: Principal,
    Path((team, user)): Path<(String, String)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult<Json<TeamView>> {
    let (team, role) = my_team(&state, &p, &team).await?;
    require_team_admin(role, &team)?;
    path_name("user", &user, NameKind::Label)?;
    let new = role_of(&body.role)?;
    let email = member_email(&state, &team, &user).await?;
    match store::change_member(&state.db, &team.id, &user, Some(new)).await? {
        MemberChange::Done => {}
        MemberChange::NotMember => return Err(not_found("member", &user)),
        MemberChange::LastAdmin => return Err(last_admin(&team)),
    }
    sync_sandbox(&state, &team).await?;
    audit(
        &state,
        &team.org_id,
        entry(
            &p,
            "member.role_changed",
            Some(&team),
            Some(&email),
            Some(role_str(new).into()),
        ),
    )
    .await?;
    Ok(Json(team_view(&state, &team, role).await?))
}

fn last_admin(team: &Team) -> ApiError {
    ApiError::Conflict(format!(
        "team {} would have no admin: make another member admin first",
        team.name
    ))
}

async fn member_email(state: &AppState, team: &Team, user: &str) -> ApiResult<String> {
    store::team_members(&state.db, &team.id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user)
        .map(|m| m.email)
        .ok_or_else(|| not_found("member", user))
}

/// Removes a member (team admin), or leaves the team (the member themselves).
#[utoipa::path(delete, path = "/api/teams/{team}/members/{user}", tag = "teams",
    params(("team" = String, Path), ("user" = String, Path)),
    responses((status = 204, description = "removed"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the team would have no admin", body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    p: Principal,
    session: Session,
    Path((team, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (team, role) = my_team(&state, &p, &team).await?;
    path_name("user", &user, NameKind::Label)?;
    let leaving = user == p.user.id;
    if !leaving {
        require_team_admin(role, &team)?;
    }
    let email = member_email(&state, &team, &user).await?;
    match store::change_member(&state.db, &team.id, &user, None).await? {
        MemberChange::Done => {}
        MemberChange::NotMember => return Err(not_found("member", &user)),
        MemberChange::LastAdmin => return Err(last_admin(&team)),
    }
    sync_sandbox(&state, &team).await?;
    // Streams the removed member holds on the team's sandbox end at their next recheck
    // (events::until_invalid checks the membership of a team's stream).
    if leaving && session.get::<String>(SESSION_TEAM).await.ok().flatten().as_deref() == Some(team.id.as_str()) {
        let _ = session.remove::<String>(SESSION_TEAM).await;
    }
    let action = if leaving { "member.left" } else { "member.removed" };
    audit(&state, &team.org_id, entry(&p, action, Some(&team), Some(&email), None)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The link of an invitation's token.
fn invitation_link(state: &AppState, token: &str) -> String {
    let mut url = state.config.base_url.clone();
    url.set_path(&format!("/invitations/{token}"));
    url.to_string()
}

/// Queues the invitation email (when the server sends email) and says what the answer carries:
/// the link when there is no email to carry it.
async fn send_invitation(state: &AppState, team: &Team, inv: &Invitation, token: &str) -> ApiResult<Option<String>> {
    let link = invitation_link(state, token);
    if !crate::teams::mail::send_invitation(state, team, inv, &link).await? {
        return Ok(Some(link));
    }
    Ok(None)
}

/// Invites someone by email (team admin).
#[utoipa::path(post, path = "/api/teams/{team}/invitations", tag = "teams", params(("team" = String, Path)),
    request_body = InviteBody,
    responses((status = 201, body = InvitationView), (status = 400, body = ErrorBody),
        (status = 403, description = "not a team admin, or the plan's members per team are used (the message names \
            the limit)", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "that address is a member or has a pending invitation", body = ErrorBody),
        (status = 429, description = "the team sent 20 invitations in the last hour", body = ErrorBody)))]
pub async fn invite(
    State(state): State<AppState>,
    p: Principal,
    Path(team): Path<String>,
    ApiJson(body): ApiJson<InviteBody>,
) -> ApiResult<impl IntoResponse> {
    let (team, role) = my_team(&state, &p, &team).await?;
    require_team_admin(role, &team)?;
    let email = crate::teams::mail::clean_email(&body.email).map_err(ApiError::BadRequest)?;
    let new = role_of(&body.role)?;
    let token = random_token(32);
    let max = team.plan.limits().members_per_team;
    let hash = hash_token(&token);
    let asked = store::NewInvitation {
        team_id: &team.id,
        email: &email,
        role: new,
        token_hash: &hash,
        invited_by: &p.user.email,
        ttl_seconds: INVITATION_TTL_SECONDS,
    };
    let inv = match store::invite(&state.db, &asked, max).await? {
        Invited::Created(inv) => inv,
        Invited::Full => {
            return Err(ApiError::Forbidden(limit_message(
                team.plan,
                max.unwrap_or(0),
                "member per team",
            )));
        }
        Invited::TooMany => {
            return Err(ApiError::TooManyRequests(format!(
                "team {} sent {} invitations in the last hour, the most allowed; try again later",
                team.name,
                store::INVITATIONS_PER_HOUR
            )));
        }
        Invited::Exists => {
            return Err(ApiError::Conflict(format!(
                "{email} is a member of team {} or has a pending invitation already",
                team.name
            )));
        }
    };
    let link = send_invitation(&state, &team, &inv, &token).await?;
    audit(
        &state,
        &team.org_id,
        entry(
            &p,
            "invitation.sent",
            Some(&team),
            Some(&email),
            Some(role_str(new).into()),
        ),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(InvitationView::new(&inv, link))))
}

/// Sends an invitation again with a new link (the old one stops working; team admin).
#[utoipa::path(post, path = "/api/teams/{team}/invitations/{id}/resend", tag = "teams",
    params(("team" = String, Path), ("id" = String, Path)),
    responses((status = 202, body = InvitationView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, description = "sent less than 10 minutes ago", body = ErrorBody)))]
pub async fn resend_invitation(
    State(state): State<AppState>,
    p: Principal,
    Path((team, id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let (team, role) = my_team(&state, &p, &team).await?;
    require_team_admin(role, &team)?;
    path_name("id", &id, NameKind::Id)?;
    let inv = store::pending_invitation(&state.db, &team.id, &id)
        .await?
        .ok_or_else(|| not_found("pending invitation", &id))?;
    let token = random_token(32);
    let before = inv.clone();
    if !store::resend(&state.db, &inv.id, &hash_token(&token), RESEND_COOLDOWN_SECONDS).await? {
        return Err(ApiError::TooManyRequests(format!(
            "the invitation to {} was sent less than {} minutes ago; try again at {}",
            inv.email,
            RESEND_COOLDOWN_SECONDS / 60,
            rfc3339(inv.last_sent_at + RESEND_COOLDOWN_SECONDS)
        )));
    }
    let inv = store::pending_invitation(&state.db, &team.id, &id)
        .await?
        .ok_or_else(|| not_found("pending invitation", &id))?;
    // The earlier email's link no longer works: not sent yet, it is withdrawn.
    crate::teams::mail::withdraw_invitation(&state, &before, "resent with a new link").await?;
    let link = send_invitation(&state, &team, &inv, &token).await?;
    audit(
        &state,
        &team.org_id,
        entry(&p, "invitation.resent", Some(&team), Some(&inv.email), None),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(InvitationView::new(&inv, link))))
}

/// Revokes a pending invitation (team admin).
#[utoipa::path(delete, path = "/api/teams/{team}/invitations/{id}", tag = "teams",
    params(("team" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "revoked"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    p: Principal,
    Path((team, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (team, role) = my_team(&state, &p, &team).await?;
    require_team_admin(role, &team)?;
    path_name("id", &id, NameKind::Id)?;
    let inv = store::pending_invitation(&state.db, &team.id, &id)
        .await?
        .ok_or_else(|| not_found("pending invitation", &id))?;
    if !store::revoke(&state.db, &inv.id).await? {
        return Err(not_found("pending invitation", &id));
    }
    crate::teams::mail::withdraw_invitation(&state, &inv, "the invitation was revoked").await?;
    audit(
        &state,
        &team.org_id,
        entry(&p, "invitation.revoked", Some(&team), Some(&inv.email), None),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn invalid_invitation() -> ApiError {
    ApiError::NotFound("this invitation is no longer valid (used, revoked or expired): ask for a new one".into())
}

async fn pending_by_token(state: &AppState, token: &str) -> ApiResult<(Invitation, Team)> {
    if token.is_empty() || token.len() > 128 {
        return Err(invalid_invitation());
    }
    let inv = store::invitation_by_token(&state.db, &hash_token(token))
        .await?
        .ok_or_else(invalid_invitation)?;
    let team = store::team(&state.db, &inv.team_id)
        .await?
        .ok_or_else(invalid_invitation)?;
    Ok((inv, team))
}

/// What an invitation offers (signed in; the token is the secret of the email's link).
#[utoipa::path(get, path = "/api/invitations/{token}", tag = "teams", params(("token" = String, Path)),
    responses((status = 200, body = InvitationInfo), (status = 403, description = "called with an API token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn invitation_info(
    State(state): State<AppState>,
    p: Principal,
    Path(token): Path<String>,
) -> ApiResult<Json<InvitationInfo>> {
    browser_only(&p)?;
    let (inv, team) = pending_by_token(&state, &token).await?;
    Ok(Json(InvitationInfo {
        team_name: team.name,
        org_name: team.org_name,
        role: role_str(inv.role).into(),
        email: inv.email,
        invited_by: inv.invited_by,
        expires_at: rfc3339(inv.expires_at),
    }))
}

/// Accepts an invitation: the signed-in user, whose verified email must be the invited one,
/// becomes a member with its role, and the team becomes the session's current team.
#[utoipa::path(post, path = "/api/invitations/{token}/accept", tag = "teams", params(("token" = String, Path)),
    responses((status = 200, body = Accepted),
        (status = 403, description = "signed in with another address than the invited one, or with an API token", body = ErrorBody),
        (status = 404, description = "unknown, used, revoked or expired", body = ErrorBody)))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    p: Principal,
    session: Session,
    Path(token): Path<String>,
) -> ApiResult<Json<Accepted>> {
    if p.via == Via::Token {
        return Err(ApiError::Forbidden(
            "accept an invitation in a signed-in browser session".into(),
        ));
    }
    let (inv, team) = pending_by_token(&state, &token).await?;
    if !p.user.email.eq_ignore_ascii_case(&inv.email) {
        return Err(ApiError::Forbidden(
            "this invitation is for another email address; sign in as that address to accept it".into(),
        ));
    }
    if !store::accept(&state.db, &inv, &p.user.id).await? {
        return Err(invalid_invitation());
    }
    sync_sandbox(&state, &team).await?;
    let role = store::team_role(&state.db, &team.id, &p.user.id)
        .await?
        .unwrap_or(inv.role);
    session
        .insert(SESSION_TEAM, &team.id)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("writing the session: {e}")))?;
    audit(
        &state,
        &team.org_id,
        entry(
            &p,
            "invitation.accepted",
            Some(&team),
            Some(&inv.email),
            Some(role_str(inv.role).into()),
        ),
    )
    .await?;
    tracing::info!(user = %p.user.id, team = %team.id, "invitation accepted");
    Ok(Json(Accepted {
        team: TeamRef::new(&team, role),
    }))
}
