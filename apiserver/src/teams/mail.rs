//! The invitation email: plain text and HTML, the team, the role, who invites, until when, and
//! the link. It never carries a secret other than the link's single-use token, which is the
//! point of the email.

use super::{Invitation, Team};
use crate::AppState;
use crate::error::ApiResult;
use crate::teams::store::role_str;

/// An address from a request, lower-cased: one `@` with something on both sides, at most 254
/// characters, no spaces or control characters.
pub fn clean_email(email: &str) -> Result<String, String> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= 254
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
        && e.split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if ok {
        Ok(e)
    } else {
        Err(format!(
            "email {:?} is not an email address",
            email.chars().take(80).collect::<String>()
        ))
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Subject, plain text and HTML of an invitation to `team` with `link`.
pub fn invitation_message(team: &Team, inv: &Invitation, link: &str) -> (String, String, String) {
    let expires = k8s_openapi::jiff::Timestamp::from_second(inv.expires_at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let role = role_str(inv.role);
    let subject = format!("{} invites you to team {} on k8s-scheduler", inv.invited_by, team.name);
    let text = format!(
        "{inviter} invites you to join the team {team} of {org} on k8s-scheduler as a {role}.\n\n\
         Accept the invitation (sign in as {email}):\n{link}\n\n\
         The link works once, until {expires}. If you did not expect this email, ignore it.\n",
        inviter = inv.invited_by,
        team = team.name,
        org = team.org_name,
        email = inv.email,
    );
    let html = format!(
        "<!doctype html><html><body>\
         <p>{inviter} invites you to join the team <strong>{team}</strong> of {org} on k8s-scheduler as a {role}.</p>\
         <p><a href=\"{link}\">Accept the invitation</a> (sign in as {email}).</p>\
         <p>The link works once, until {expires}. If you did not expect this email, ignore it.</p>\
         </body></html>",
        inviter = escape(&inv.invited_by),
        team = escape(&team.name),
        org = escape(&team.org_name),
        email = escape(&inv.email),
        link = escape(link),
    );
    (subject, text, html)
}

/// The outbox key of an invitation's email: one per sending (the invitation and the moment it was
/// (re)sent).
fn outbox_key(inv: &Invitation) -> String {
    format!("invitation:{}:{}", inv.id, inv.last_sent_at)
}

/// Withdraws the invitation's queued email if it has not gone out yet (the invitation was revoked,
/// or resent with a new link that makes this one's dead).
pub async fn withdraw_invitation(state: &AppState, inv: &Invitation, why: &str) -> ApiResult<()> {
    if let Some(outbox) = &state.outbox {
        outbox.cancel(&outbox_key(inv), why).await?;
    }
    Ok(())
}

/// Queues the invitation email; false when the server sends no email (EMAIL_PROVIDER unset).
pub async fn send_invitation(state: &AppState, team: &Team, inv: &Invitation, link: &str) -> ApiResult<bool> {
    let Some(outbox) = &state.outbox else {
        return Ok(false);
    };
    let (subject, text, html) = invitation_message(team, inv, link);
    let message = crate::email::Message {
        to: inv.email.clone(),
        subject,
        text,
        html,
    };
    let key = outbox_key(inv);
    outbox.enqueue(&message, &key).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{MemberRole, Plan};

    #[test]
    fn emails_are_checked_and_lower_cased() {
        assert_eq!(clean_email(" Bob@Example.COM ").unwrap(), "bob@example.com");
        for bad in ["", "bob", "@x", "bob@", "a@b@c", "a b@c", "<a@b>", "a@b,c@d"] {
            assert!(clean_email(bad).is_err(), "{bad:?}");
        }
        assert!(clean_email(&format!("{}@x.y", "a".repeat(260))).is_err());
    }

    #[test]
    fn the_message_has_both_parts_and_escapes_names() {
        let team = Team {
            id: "tmabc".into(),
            name: "<Web & Co>".into(),
            org_id: "org1".into(),
            org_name: "Acme".into(),
            plan: Plan::Business,
        };
        let inv = Invitation {
            id: "inv1".into(),
            team_id: "tmabc".into(),
            email: "bob@example.com".into(),
            role: MemberRole::Developer,
            invited_by: "alice@example.com".into(),
            created_at: 0,
            expires_at: 7 * 86_400,
            last_sent_at: 0,
            revoked: false,
            accepted: false,
        };
        let (subject, text, html) = invitation_message(&team, &inv, "https://k8s.example.com/invitations/tok");
        assert_eq!(
            subject,
            "alice@example.com invites you to team <Web & Co> on k8s-scheduler"
        );
        assert!(text.contains("as a developer") && text.contains("https://k8s.example.com/invitations/tok"));
        assert!(text.contains("until 1970-01-08 00:00 UTC"), "{text}");
        assert!(
            html.contains("&lt;Web &amp; Co&gt;") && !html.contains("<Web"),
            "{html}"
        );
        assert!(html.contains("href=\"https://k8s.example.com/invitations/tok\""));
    }
}
