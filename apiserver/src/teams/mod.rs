//! Organizations, teams, roles and invitations (issue 16).
//!
//! The server keeps them in its database ([`store`]); each team owns a sandbox, a UserSandbox like
//! a person's, whose owner id is the team's id and whose `spec.members` the server writes from the
//! team's members (plus the organization's owners and admins, as admins): the controller turns
//! those into RoleBindings in the team's namespace, so kubectl sees the roles the UI enforces.
//!
//! Who may do what:
//! - organization `owner`/`admin`: manage the organization and its teams; `admin` in each team;
//! - team `admin`: manage members and invitations, rename the team, and what a developer does;
//! - team `developer`: deploy, change and delete apps, manage the team's secrets;
//! - team `viewer`: read only.
//!
//! Outsiders get 404 for any organization or team they are not in: they never learn it exists.

pub mod mail;
pub mod store;

use crds::{MemberRole, Plan};
use rand::RngCore;

use crate::db::User;

/// Subject prefix of a team's sandbox owner ([`Team::owner`]): never an identity provider's.
pub const TEAM_SUBJECT_PREFIX: &str = "k8s-scheduler-team|";

/// A new id: `prefix` and 12 random base32 characters (60 bits), a DNS label without a dash.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    let mut id = prefix.to_string();
    id.push_str(&crate::db::base32(&bytes)[..12]);
    id
}

/// An organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its plan (limits teams and members).
    pub plan: Plan,
}

/// A role in an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrgRole {
    /// Created it; everything.
    Owner,
    /// Manages it and its teams.
    Admin,
    /// Belongs to it through a team.
    Member,
}

impl OrgRole {
    /// Its wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "owner",
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<OrgRole> {
        [OrgRole::Owner, OrgRole::Admin, OrgRole::Member]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Whether this role manages the organization and its teams.
    pub fn manages(self) -> bool {
        matches!(self, OrgRole::Owner | OrgRole::Admin)
    }
}

/// A team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    /// Its id, also its sandbox's owner id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its organization.
    pub org_id: String,
    /// Its organization's name.
    pub org_name: String,
    /// Its organization's plan.
    pub plan: Plan,
}

impl Team {
    /// The team as its sandbox's owner: the sandbox, secrets and apps of a team are keyed by this
    /// "user", whose id is the team's.
    pub fn owner(&self) -> User {
        User {
            id: self.id.clone(),
            email: String::new(),
            name: self.name.clone(),
            subject: format!("{TEAM_SUBJECT_PREFIX}{}", self.id),
        }
    }
}

/// A team and the caller's role in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeamMembership {
    /// The team.
    pub team: Team,
    /// The role.
    pub role: MemberRole,
}

/// A member of a team (or organization).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// User id.
    pub user_id: String,
    /// Verified email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role in the team.
    pub role: MemberRole,
}

/// An invitation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    /// Its id.
    pub id: String,
    /// The team.
    pub team_id: String,
    /// The invited address (lower-cased).
    pub email: String,
    /// The role it grants.
    pub role: MemberRole,
    /// The inviter's email.
    pub invited_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which it no longer works.
    pub expires_at: i64,
    /// Unix seconds of the last sending.
    pub last_sent_at: i64,
    /// Revoked.
    pub revoked: bool,
    /// Accepted.
    pub accepted: bool,
}

/// The caller's role in the sandbox a request acts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SandboxRole {
    /// Read only.
    Viewer,
    /// Deploys and manages secrets.
    Developer,
    /// Also manages members.
    Admin,
    /// The user's own sandbox.
    Owner,
}

impl SandboxRole {
    /// The sandbox role of a team role.
    pub fn of(r: MemberRole) -> SandboxRole {
        match r {
            MemberRole::Admin => SandboxRole::Admin,
            MemberRole::Developer => SandboxRole::Developer,
            MemberRole::Viewer => SandboxRole::Viewer,
        }
    }

    /// Its wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxRole::Viewer => "viewer",
            SandboxRole::Developer => "developer",
            SandboxRole::Admin => "admin",
            SandboxRole::Owner => "owner",
        }
    }
}

/// Parses a team role's wire name.
pub fn parse_role(s: &str) -> Option<MemberRole> {
    match s {
        "admin" => Some(MemberRole::Admin),
        "developer" => Some(MemberRole::Developer),
        "viewer" => Some(MemberRole::Viewer),
        _ => None,
    }
}

/// The sandbox members of a team for its UserSandbox: its members with their roles, and the
/// organization's owners and admins as admins (a person listed once, with the higher role), at
/// most the CRD's 100.
pub fn sandbox_members(members: &[Member], org_managers: &[Member]) -> Vec<crds::SandboxMember> {
    let mut out: Vec<crds::SandboxMember> = vec![];
    for m in members.iter().chain(org_managers) {
        let role = if org_managers.iter().any(|o| o.user_id == m.user_id) {
            MemberRole::Admin
        } else {
            m.role
        };
        if out.iter().any(|x| x.user_id == m.user_id) {
            continue;
        }
        out.push(crds::SandboxMember {
            user_id: m.user_id.clone(),
            email: (!m.email.is_empty()).then(|| m.email.clone()),
            role,
        });
    }
    out.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    if out.len() > 100 {
        // The CRD holds 100: the others get no Kubernetes binding and see no team templates.
        tracing::warn!(
            members = out.len(),
            "a team has more than 100 members; its UserSandbox lists the first 100 by user id"
        );
        out.truncate(100);
    }
    out
}

/// A team or organization name from a request: trimmed, 1-64 characters, no control characters.
pub fn clean_name(what: &str, name: &str) -> Result<String, String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(format!(
            "{what} name {:?} is not valid: it must be 1 to 64 characters without control characters",
            n.chars().take(80).collect::<String>()
        ));
    }
    Ok(n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, role: MemberRole) -> Member {
        Member {
            user_id: id.into(),
            email: format!("{id}@example.com"),
            name: id.into(),
            role,
        }
    }

    #[test]
    fn ids_are_dns_labels_without_a_dash() {
        for p in ["tm", "org", "inv"] {
            let id = new_id(p);
            assert!(crds::is_dns_label(&id, crds::MAX_USER_ID_LEN), "{id}");
            assert!(
                !id.contains('-') && id.starts_with(p) && id.len() == p.len() + 12,
                "{id}"
            );
        }
        assert_ne!(new_id("tm"), new_id("tm"));
    }

    #[test]
    fn org_managers_are_admins_of_the_sandbox_and_listed_once() {
        let members = [m("bob", MemberRole::Viewer), m("carol", MemberRole::Developer)];
        let managers = [m("bob", MemberRole::Viewer), m("alice", MemberRole::Viewer)];
        let got = sandbox_members(&members, &managers);
        let roles: Vec<_> = got.iter().map(|s| (s.user_id.as_str(), s.role)).collect();
        assert_eq!(
            roles,
            [
                ("alice", MemberRole::Admin),
                ("bob", MemberRole::Admin),
                ("carol", MemberRole::Developer)
            ]
        );
        assert_eq!(got[0].email.as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(clean_name("team", "  Web  ").unwrap(), "Web");
        assert!(clean_name("team", "").unwrap_err().contains("team name"));
        assert!(clean_name("team", &"x".repeat(65)).is_err());
        assert!(clean_name("organization", "a\u{7}b").is_err());
    }

    #[test]
    fn sandbox_roles_are_ordered() {
        assert!(SandboxRole::Viewer < SandboxRole::Developer);
        assert!(SandboxRole::Developer < SandboxRole::Admin);
        assert!(SandboxRole::Admin < SandboxRole::Owner);
        assert_eq!(SandboxRole::of(MemberRole::Developer), SandboxRole::Developer);
    }
}
