//! The tables of organizations, teams, memberships, invitations and the audit log
//! (migrations/0006_teams.sql). A transaction that checks a limit or a last-admin rule first
//! locks the parent row (`UPDATE ... SET id = id`, portable: PostgreSQL takes the row lock, SQLite
//! the database's write lock), so two requests at once cannot both pass a count.

use anyhow::Result;
use crds::{MemberRole, Plan};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Invitation, Member, Org, OrgRole, Team, TeamMembership};
use crate::db::{Db, now};

fn member_role(s: &str) -> MemberRole {
    match s {
        "admin" => MemberRole::Admin,
        "developer" => MemberRole::Developer,
        _ => MemberRole::Viewer,
    }
}

/// The wire name of a team role.
pub fn role_str(r: MemberRole) -> &'static str {
    match r {
        MemberRole::Admin => "admin",
        MemberRole::Developer => "developer",
        MemberRole::Viewer => "viewer",
    }
}

fn org_role(s: &str) -> OrgRole {
    match s {
        "owner" => OrgRole::Owner,
        "admin" => OrgRole::Admin,
        _ => OrgRole::Member,
    }
}

fn org_of(r: &AnyRow) -> Result<Org> {
    Ok(Org {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        plan: Plan::parse(&r.try_get::<String, _>("plan")?).unwrap_or_default(),
    })
}

fn team_of(r: &AnyRow) -> Result<Team> {
    Ok(Team {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        org_id: r.try_get("org_id")?,
        org_name: r.try_get("org_name")?,
        plan: Plan::parse(&r.try_get::<String, _>("plan")?).unwrap_or_default(),
    })
}

fn invitation_of(r: &AnyRow) -> Result<Invitation> {
    Ok(Invitation {
        id: r.try_get("id")?,
        team_id: r.try_get("team_id")?,
        email: r.try_get("email")?,
        role: member_role(&r.try_get::<String, _>("role")?),
        invited_by: r.try_get("invited_by")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        last_sent_at: r.try_get("last_sent_at")?,
        revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        accepted: r.try_get::<Option<i64>, _>("accepted_at")?.is_some(),
    })
}

const TEAM_SELECT: &str = "SELECT t.id, t.name, t.org_id, o.name AS org_name, o.plan FROM teams t \
     JOIN organizations o ON o.id = t.org_id";

const INVITATION_SELECT: &str = "SELECT id, team_id, email, role, invited_by, created_at, expires_at, \
     last_sent_at, revoked_at, accepted_at FROM invitations";

/// Locks row `id` of `table` for the rest of the transaction (see the module's documentation).
async fn lock(tx: &mut sqlx::Transaction<'_, sqlx::Any>, table: &'static str, id: &str) -> Result<()> {
    // `table` is one of this module's constants, never input.
    sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET id = id WHERE id = $1")))
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes `user_id` from the organization of team `team_id` when they were only a `member` of
/// it through its teams and are in none of them any more.
async fn drop_idle_org_member(tx: &mut sqlx::Transaction<'_, sqlx::Any>, org_id: &str, user_id: &str) -> Result<()> {
    sqlx::query(
        "DELETE FROM org_members WHERE org_id = $1 AND user_id = $2 AND role = 'member' \
         AND NOT EXISTS (SELECT 1 FROM team_members m JOIN teams t ON t.id = m.team_id \
                         WHERE t.org_id = $1 AND m.user_id = $2)",
    )
    .bind(org_id)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Creates an organization on `plan` owned by `user_id`.
pub async fn create_org(db: &Db, user_id: &str, name: &str, plan: Plan, max_owned: u32) -> Result<Option<Org>> {
    let id = super::new_id("org");
    let at = now();
    let mut tx = db.pool().begin().await?;
    lock(&mut tx, "users", user_id).await?;
    let owned: i64 = sqlx::query("SELECT COUNT(*) AS n FROM org_members WHERE user_id = $1 AND role = 'owner'")
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
    if owned >= i64::from(max_owned) {
        return Ok(None);
    }
    sqlx::query("INSERT INTO organizations (id, name, plan, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&id)
        .bind(name)
        .bind(plan.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)")
        .bind(&id)
        .bind(user_id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(Org {
        id,
        name: name.into(),
        plan,
    }))
}

/// The organizations `user_id` belongs to, with their role, by name.
pub async fn orgs_of(db: &Db, user_id: &str) -> Result<Vec<(Org, OrgRole)>> {
    let rows = sqlx::query(
        "SELECT o.id, o.name, o.plan, m.role FROM organizations o JOIN org_members m ON m.org_id = o.id \
         WHERE m.user_id = $1 ORDER BY o.name, o.id",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((org_of(r)?, org_role(&r.try_get::<String, _>("role")?))))
        .collect()
}

/// Organization `org_id` and the role of `user_id` in it; None when they are not in it (or it
/// does not exist: the same answer).
pub async fn org_for(db: &Db, org_id: &str, user_id: &str) -> Result<Option<(Org, OrgRole)>> {
    let row = sqlx::query(
        "SELECT o.id, o.name, o.plan, m.role FROM organizations o JOIN org_members m ON m.org_id = o.id \
         WHERE o.id = $1 AND m.user_id = $2",
    )
    .bind(org_id)
    .bind(user_id)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| Ok((org_of(&r)?, org_role(&r.try_get::<String, _>("role")?))))
        .transpose()
}

/// Renames an organization.
pub async fn rename_org(db: &Db, org_id: &str, name: &str) -> Result<()> {
    sqlx::query("UPDATE organizations SET name = $2 WHERE id = $1")
        .bind(org_id)
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Sets an organization's plan (an administrator's command until billing sets it).
pub async fn set_org_plan(db: &Db, org_id: &str, plan: Plan) -> Result<bool> {
    let res = sqlx::query("UPDATE organizations SET plan = $2 WHERE id = $1")
        .bind(org_id)
        .bind(plan.as_str())
        .execute(db.pool())
        .await?;
    Ok(res.rows_affected() == 1)
}

/// The members of an organization with their organization role.
pub async fn org_members(db: &Db, org_id: &str) -> Result<Vec<(Member, OrgRole)>> {
    let rows = sqlx::query(
        "SELECT u.id, u.email, u.name, m.role FROM org_members m JOIN users u ON u.id = m.user_id \
         WHERE m.org_id = $1 ORDER BY u.email",
    )
    .bind(org_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let role = org_role(&r.try_get::<String, _>("role")?);
            Ok((
                Member {
                    user_id: r.try_get("id")?,
                    email: r.try_get("email")?,
                    name: r.try_get("name")?,
                    role: MemberRole::Viewer,
                },
                role,
            ))
        })
        .collect()
}

/// Sets the organization role of member `user_id`; refuses to leave it without an owner.
pub async fn set_org_role(db: &Db, org_id: &str, user_id: &str, role: OrgRole) -> Result<MemberChange> {
    let mut tx = db.pool().begin().await?;
    lock(&mut tx, "organizations", org_id).await?;
    let current: Option<String> = sqlx::query("SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2")
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("role"))
        .transpose()?;
    let Some(current) = current else {
        return Ok(MemberChange::NotMember);
    };
    if current == "owner" && role != OrgRole::Owner {
        let owners: i64 = sqlx::query("SELECT COUNT(*) AS n FROM org_members WHERE org_id = $1 AND role = 'owner'")
            .bind(org_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if owners <= 1 {
            return Ok(MemberChange::LastAdmin);
        }
    }
    sqlx::query("UPDATE org_members SET role = $3 WHERE org_id = $1 AND user_id = $2")
        .bind(org_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(MemberChange::Done)
}

/// The teams of an organization with their member counts, by name.
pub async fn org_teams(db: &Db, org_id: &str) -> Result<Vec<(Team, i64)>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{TEAM_SELECT} WHERE t.org_id = $1 ORDER BY t.name, t.id"
    )))
    .bind(org_id)
    .fetch_all(db.pool())
    .await?;
    let mut out = vec![];
    for r in &rows {
        let team = team_of(r)?;
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM team_members WHERE team_id = $1")
            .bind(&team.id)
            .fetch_one(db.pool())
            .await?
            .try_get("n")?;
        out.push((team, n));
    }
    Ok(out)
}

/// Creates team `name` in `org` with `creator` as its admin, unless the organization has
/// `max_teams` already (None: unlimited): then None.
pub async fn create_team(
    db: &Db,
    org: &Org,
    name: &str,
    creator: &str,
    max_teams: Option<i32>,
) -> Result<Option<Team>> {
    let id = super::new_id("tm");
    let at = now();
    let mut tx = db.pool().begin().await?;
    lock(&mut tx, "organizations", &org.id).await?;
    let res = sqlx::query(
        "INSERT INTO teams (id, org_id, name, created_at) SELECT $1, $2, $3, $4 \
         WHERE (SELECT COUNT(*) FROM teams WHERE org_id = $2) < $5",
    )
    .bind(&id)
    .bind(&org.id)
    .bind(name)
    .bind(at)
    .bind(max_teams.map_or(i64::MAX, i64::from))
    .execute(&mut *tx)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(None);
    }
    sqlx::query("INSERT INTO team_members (team_id, user_id, role, created_at) VALUES ($1, $2, 'admin', $3)")
        .bind(&id)
        .bind(creator)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(Team {
        id,
        name: name.into(),
        org_id: org.id.clone(),
        org_name: org.name.clone(),
        plan: org.plan,
    }))
}

/// Team `team_id`.
pub async fn team(db: &Db, team_id: &str) -> Result<Option<Team>> {
    let row = sqlx::query(AssertSqlSafe(format!("{TEAM_SELECT} WHERE t.id = $1")))
        .bind(team_id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(team_of).transpose()
}

/// The role of `user_id` in team `team_id`: their membership, or admin for the organization's
/// owners and admins; None for anyone else.
pub async fn team_role(db: &Db, team_id: &str, user_id: &str) -> Result<Option<MemberRole>> {
    let row = sqlx::query(
        "SELECT (SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2) AS team_role, \
                (SELECT m.role FROM org_members m JOIN teams t ON t.org_id = m.org_id \
                  WHERE t.id = $1 AND m.user_id = $2) AS org_role",
    )
    .bind(team_id)
    .bind(user_id)
    .fetch_one(db.pool())
    .await?;
    let by_org = matches!(
        row.try_get::<Option<String>, _>("org_role")?.as_deref(),
        Some("owner" | "admin")
    );
    let own = row.try_get::<Option<String>, _>("team_role")?.map(|r| member_role(&r));
    Ok(if by_org { Some(MemberRole::Admin) } else { own })
}

/// Every team `user_id` can act in (member, or owner/admin of its organization), with the role.
pub async fn teams_of(db: &Db, user_id: &str) -> Result<Vec<TeamMembership>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{TEAM_SELECT} WHERE t.id IN (SELECT team_id FROM team_members WHERE user_id = $1) \
            OR t.org_id IN (SELECT org_id FROM org_members WHERE user_id = $1 AND role IN ('owner', 'admin')) \
         ORDER BY o.name, t.name, t.id"
    )))
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    let mut out = vec![];
    for r in &rows {
        let team = team_of(r)?;
        if let Some(role) = team_role(db, &team.id, user_id).await? {
            out.push(TeamMembership { team, role });
        }
    }
    Ok(out)
}

/// The members of a team, by email.
pub async fn team_members(db: &Db, team_id: &str) -> Result<Vec<Member>> {
    let rows = sqlx::query(
        "SELECT u.id, u.email, u.name, m.role FROM team_members m JOIN users u ON u.id = m.user_id \
         WHERE m.team_id = $1 ORDER BY u.email",
    )
    .bind(team_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Member {
                user_id: r.try_get("id")?,
                email: r.try_get("email")?,
                name: r.try_get("name")?,
                role: member_role(&r.try_get::<String, _>("role")?),
            })
        })
        .collect()
}

/// Renames a team; false when the organization has a team of that name.
pub async fn rename_team(db: &Db, team_id: &str, name: &str) -> Result<bool> {
    match sqlx::query("UPDATE teams SET name = $2 WHERE id = $1")
        .bind(team_id)
        .bind(name)
        .execute(db.pool())
        .await
    {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a team (its members and invitations go with it).
pub async fn delete_team(db: &Db, team_id: &str) -> Result<()> {
    let mut tx = db.pool().begin().await?;
    let org: Option<String> = sqlx::query("SELECT org_id FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("org_id"))
        .transpose()?;
    let members: Vec<String> = sqlx::query("SELECT user_id FROM team_members WHERE team_id = $1")
        .bind(team_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("user_id"))
        .collect::<Result<_, _>>()?;
    sqlx::query("DELETE FROM teams WHERE id = $1")
        .bind(team_id)
        .execute(&mut *tx)
        .await?;
    // Tokens bound to it act nowhere now.
    sqlx::query("DELETE FROM api_tokens WHERE team_id = $1")
        .bind(team_id)
        .execute(&mut *tx)
        .await?;
    if let Some(org) = org {
        for m in members {
            drop_idle_org_member(&mut tx, &org, &m).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Every team, for the periodic resync of their sandboxes.
pub async fn all_teams(db: &Db) -> Result<Vec<Team>> {
    let rows = sqlx::query(TEAM_SELECT).fetch_all(db.pool()).await?;
    rows.iter().map(team_of).collect()
}

/// What changing a member did.
#[derive(Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// Done.
    Done,
    /// Not a member.
    NotMember,
    /// The team would have no admin left.
    LastAdmin,
}

/// Sets the role of member `user_id`, or removes them (`role` None); refuses to leave the team
/// without an admin. One transaction: two admins demoting each other cannot both succeed.
pub async fn change_member(db: &Db, team_id: &str, user_id: &str, role: Option<MemberRole>) -> Result<MemberChange> {
    let mut tx = db.pool().begin().await?;
    lock(&mut tx, "teams", team_id).await?;
    let current: Option<String> = sqlx::query("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("role"))
        .transpose()?;
    let Some(current) = current else {
        return Ok(MemberChange::NotMember);
    };
    let stays_admin = role == Some(MemberRole::Admin);
    if current == "admin" && !stays_admin {
        let admins: i64 = sqlx::query("SELECT COUNT(*) AS n FROM team_members WHERE team_id = $1 AND role = 'admin'")
            .bind(team_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if admins <= 1 {
            return Ok(MemberChange::LastAdmin);
        }
    }
    match role {
        Some(r) => {
            sqlx::query("UPDATE team_members SET role = $3 WHERE team_id = $1 AND user_id = $2")
                .bind(team_id)
                .bind(user_id)
                .bind(role_str(r))
                .execute(&mut *tx)
                .await?;
        }
        None => {
            sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
                .bind(team_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            let org: String = sqlx::query("SELECT org_id FROM teams WHERE id = $1")
                .bind(team_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("org_id")?;
            drop_idle_org_member(&mut tx, &org, user_id).await?;
        }
    }
    tx.commit().await?;
    Ok(MemberChange::Done)
}

/// What creating an invitation did.
#[derive(Debug)]
pub enum Invited {
    /// Created.
    Created(Invitation),
    /// The plan's members per team (members and pending invitations) are used.
    Full,
    /// That email is a member already or has a pending invitation.
    Exists,
    /// The team sent [`INVITATIONS_PER_HOUR`] invitations in the last hour (each is an email).
    TooMany,
}

/// Most invitations one team may send in an hour: each is an email with names its admins chose,
/// so invite-revoke loops must not turn the platform into a mailer.
pub const INVITATIONS_PER_HOUR: i64 = 20;

/// An invitation to make.
pub struct NewInvitation<'a> {
    /// The team.
    pub team_id: &'a str,
    /// The address (lower-cased).
    pub email: &'a str,
    /// The role it grants.
    pub role: MemberRole,
    /// SHA-256 of its token.
    pub token_hash: &'a str,
    /// The inviter's email.
    pub invited_by: &'a str,
    /// Seconds it works.
    pub ttl_seconds: i64,
}

/// Invites `n.email` into a team, unless members and pending invitations reach `max_members`
/// (None: unlimited) or the email is already in or invited.
pub async fn invite(db: &Db, n: &NewInvitation<'_>, max_members: Option<i32>) -> Result<Invited> {
    let NewInvitation {
        team_id,
        email,
        role,
        token_hash,
        invited_by,
        ttl_seconds,
    } = *n;
    let at = now();
    let mut tx = db.pool().begin().await?;
    lock(&mut tx, "teams", team_id).await?;
    let exists: i64 = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM team_members m JOIN users u ON u.id = m.user_id \
                  WHERE m.team_id = $1 AND LOWER(u.email) = $2) + \
                (SELECT COUNT(*) FROM invitations WHERE team_id = $1 AND email = $2 \
                  AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3) AS n",
    )
    .bind(team_id)
    .bind(email)
    .bind(at)
    .fetch_one(&mut *tx)
    .await?
    .try_get("n")?;
    if exists > 0 {
        return Ok(Invited::Exists);
    }
    let recent: i64 = sqlx::query("SELECT COUNT(*) AS n FROM invitations WHERE team_id = $1 AND last_sent_at > $2")
        .bind(team_id)
        .bind(at - 3600)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
    if recent >= INVITATIONS_PER_HOUR {
        return Ok(Invited::TooMany);
    }
    let id = super::new_id("inv");
    let res = sqlx::query(
        "INSERT INTO invitations (id, team_id, email, role, token_hash, invited_by, created_at, expires_at, last_sent_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $7 \
         WHERE (SELECT COUNT(*) FROM team_members WHERE team_id = $2) + \
               (SELECT COUNT(*) FROM invitations WHERE team_id = $2 AND accepted_at IS NULL \
                  AND revoked_at IS NULL AND expires_at > $7) < $9",
    )
    .bind(&id)
    .bind(team_id)
    .bind(email)
    .bind(role_str(role))
    .bind(token_hash)
    .bind(invited_by)
    .bind(at)
    .bind(at + ttl_seconds)
    .bind(max_members.map_or(i64::MAX, i64::from))
    .execute(&mut *tx)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(Invited::Full);
    }
    tx.commit().await?;
    Ok(Invited::Created(Invitation {
        id,
        team_id: team_id.into(),
        email: email.into(),
        role,
        invited_by: invited_by.into(),
        created_at: at,
        expires_at: at + ttl_seconds,
        last_sent_at: at,
        revoked: false,
        accepted: false,
    }))
}

/// The pending invitations of a team (not accepted, revoked or expired), newest first.
pub async fn pending_invitations(db: &Db, team_id: &str) -> Result<Vec<Invitation>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{INVITATION_SELECT} WHERE team_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL \
         AND expires_at > $2 ORDER BY created_at DESC, id"
    )))
    .bind(team_id)
    .bind(now())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(invitation_of).collect()
}

/// A pending invitation of team `team_id` by id.
pub async fn pending_invitation(db: &Db, team_id: &str, id: &str) -> Result<Option<Invitation>> {
    Ok(pending_invitations(db, team_id).await?.into_iter().find(|i| i.id == id))
}

/// The invitation whose token hashes to `token_hash`, if it is still pending.
pub async fn invitation_by_token(db: &Db, token_hash: &str) -> Result<Option<Invitation>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "{INVITATION_SELECT} WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2"
    )))
    .bind(token_hash)
    .bind(now())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(invitation_of).transpose()
}

/// Marks an invitation sent again with a new token, if its last sending is at least
/// `cooldown_seconds` old; false otherwise.
pub async fn resend(db: &Db, id: &str, token_hash: &str, cooldown_seconds: i64) -> Result<bool> {
    let at = now();
    let res = sqlx::query(
        "UPDATE invitations SET last_sent_at = $2, token_hash = $3 WHERE id = $1 AND last_sent_at <= $4 \
         AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(id)
    .bind(at)
    .bind(token_hash)
    .bind(at - cooldown_seconds)
    .execute(db.pool())
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Revokes a pending invitation; false when it was not pending.
pub async fn revoke(db: &Db, id: &str) -> Result<bool> {
    let res = sqlx::query(
        "UPDATE invitations SET revoked_at = $2 WHERE id = $1 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(now())
    .execute(db.pool())
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Accepts invitation `inv` for `user_id`: marks it used (once: a second accept finds it used)
/// and makes the user a member with its role (a member already keeps the higher of the two).
pub async fn accept(db: &Db, inv: &Invitation, user_id: &str) -> Result<bool> {
    let at = now();
    let mut tx = db.pool().begin().await?;
    lock(&mut tx, "teams", &inv.team_id).await?;
    let res = sqlx::query(
        "UPDATE invitations SET accepted_at = $2, accepted_by = $3 WHERE id = $1 AND accepted_at IS NULL \
         AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(&inv.id)
    .bind(at)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(false);
    }
    let current: Option<String> = sqlx::query("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
        .bind(&inv.team_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("role"))
        .transpose()?;
    let rank = |r: MemberRole| match r {
        MemberRole::Viewer => 0,
        MemberRole::Developer => 1,
        MemberRole::Admin => 2,
    };
    match current.map(|c| member_role(&c)) {
        Some(c) if rank(c) >= rank(inv.role) => {}
        Some(_) => {
            sqlx::query("UPDATE team_members SET role = $3 WHERE team_id = $1 AND user_id = $2")
                .bind(&inv.team_id)
                .bind(user_id)
                .bind(role_str(inv.role))
                .execute(&mut *tx)
                .await?;
        }
        None => {
            sqlx::query("INSERT INTO team_members (team_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&inv.team_id)
                .bind(user_id)
                .bind(role_str(inv.role))
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
    }
    // Team members belong to the organization (as members unless they are more already).
    sqlx::query(
        "INSERT INTO org_members (org_id, user_id, role, created_at) \
         SELECT org_id, $2, 'member', $3 FROM teams WHERE id = $1 \
         AND NOT EXISTS (SELECT 1 FROM org_members m JOIN teams t ON t.org_id = m.org_id WHERE t.id = $1 AND m.user_id = $2)",
    )
    .bind(&inv.team_id)
    .bind(user_id)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    /// Who did it (email).
    pub actor: String,
    /// What, e.g. `member.added`.
    pub action: String,
    /// The team's name, when about a team.
    pub team: Option<String>,
    /// Whom (email), when about a person.
    pub subject: Option<String>,
    /// More, e.g. `developer -> viewer`.
    pub detail: Option<String>,
}

/// Records an audit entry of organization `org_id`.
pub async fn audit(db: &Db, org_id: &str, e: &AuditEntry) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, org_id, team_name, actor, action, subject, detail, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(super::new_id("au"))
    .bind(org_id)
    .bind(&e.team)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.subject)
    .bind(&e.detail)
    .bind(e.at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The newest `limit` audit entries of an organization, newest first.
pub async fn audit_log(db: &Db, org_id: &str, limit: i64) -> Result<Vec<AuditEntry>> {
    let rows = sqlx::query(
        "SELECT at, actor, action, team_name, subject, detail FROM audit_log WHERE org_id = $1 \
         ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(org_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                team: r.try_get("team_name")?,
                subject: r.try_get("subject")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect()
}

/// Binds API token `id` of `user_id` to team `team_id`.
pub async fn bind_token(db: &Db, user_id: &str, id: &str, team_id: &str) -> Result<()> {
    sqlx::query("UPDATE api_tokens SET team_id = $3 WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .bind(team_id)
        .execute(db.pool())
        .await?;
    Ok(())
}
