//! Organizations, teams, roles and invitations through the HTTP API (issue 16), signed in through
//! the test OpenID provider, without a cluster (the team sandbox's RBAC is the controller's, tested
//! on a cluster). The role matrix: every team route for an organization owner and admin, a team
//! admin, a developer, a viewer and an outsider; invitations refused for the wrong account and
//! when expired, revoked or reused; the plan's limits named.

use anyhow::{Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Server, server_with_provider, sign_in};

struct Person {
    login: &'static str,
    browser: reqwest::Client,
    id: String,
}

async fn send(
    server: &Server,
    who: &Person,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let mut req = server.send(&who.browser, method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

async fn person(server: &Server, provider: &e2e::oidc::OidcProvider, login: &'static str) -> Result<Person> {
    let browser = sign_in(server, provider, login).await?;
    let me: Value = browser.get(server.url("/api/me")).send().await?.json().await?;
    let id = me["user"]["id"].as_str().context("user id")?.to_string();
    Ok(Person { login, browser, id })
}

/// Invites `who` into `team` with `role` as `admin` and has them accept; returns nothing.
async fn join(server: &Server, admin: &Person, team: &str, who: &Person, role: &str) -> Result<()> {
    let (s, inv) = send(
        server,
        admin,
        Method::POST,
        &format!("/api/teams/{team}/invitations"),
        Some(json!({ "email": format!("{}@example.com", who.login), "role": role })),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "inviting {}: {inv}", who.login);
    let link = inv["link"].as_str().context("no link without EMAIL_PROVIDER")?;
    let token = link.rsplit('/').next().unwrap();
    let (s, body) = send(
        server,
        who,
        Method::POST,
        &format!("/api/invitations/{token}/accept"),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{} accepting: {body}", who.login);
    assert_eq!(body["team"]["role"], role, "{body}");
    Ok(())
}

/// `owner` creates organization Acme (free, as ORG_DEFAULT_PLAN says), moves it to `plan` when one
/// is given (as `--set-org-plan` does), and creates its team Web; returns their ids.
async fn acme_web(server: &Server, owner: &Person, plan: Option<crds::Plan>) -> Result<(String, String)> {
    let (s, org) = send(
        server,
        owner,
        Method::POST,
        "/api/orgs",
        Some(json!({ "name": "Acme" })),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{org}");
    assert_eq!(
        (org["role"].as_str(), org["plan"].as_str()),
        (Some("owner"), Some("free"))
    );
    let org = org["id"].as_str().context("org id")?.to_string();
    if let Some(plan) = plan {
        assert!(apiserver::teams::store::set_org_plan(&server.app.state.db, &org, plan).await?);
    }
    let (s, team) = send(
        server,
        owner,
        Method::POST,
        &format!("/api/orgs/{org}/teams"),
        Some(json!({ "name": "Web" })),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{team}");
    let team = team["id"].as_str().context("team id")?.to_string();
    Ok((org, team))
}

#[tokio::test]
async fn every_team_route_answers_each_role_as_documented() -> Result<()> {
    let (provider, server) = server_with_provider(|_| {}).await?;
    let owner = person(&server, &provider, "olivia").await?;
    let org_admin = person(&server, &provider, "adam").await?;
    let team_admin = person(&server, &provider, "tara").await?;
    let developer = person(&server, &provider, "dave").await?;
    let viewer = person(&server, &provider, "vera").await?;
    let outsider = person(&server, &provider, "otto").await?;

    // Plans are set by billing or an administrator; business: 10 teams, 10 members per team.
    let (org, team) = acme_web(&server, &owner, Some(crds::Plan::Business)).await?;
    join(&server, &owner, &team, &team_admin, "admin").await?;
    join(&server, &team_admin, &team, &developer, "developer").await?;
    join(&server, &team_admin, &team, &viewer, "viewer").await?;
    join(&server, &team_admin, &team, &org_admin, "viewer").await?;
    let (s, body) = send(
        &server,
        &owner,
        Method::PUT,
        &format!("/api/orgs/{org}/members/{}", org_admin.id),
        Some(json!({ "role": "admin" })),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{body}");

    // Everyone in the team switches to it; the outsider cannot tell it from a team that does not exist.
    let members = [&owner, &org_admin, &team_admin, &developer, &viewer];
    let roles = ["admin", "admin", "admin", "developer", "viewer"];
    for (p, role) in members.iter().zip(roles) {
        let (s, me) = send(&server, p, Method::PUT, "/api/me/team", Some(json!({ "team": team }))).await?;
        assert_eq!(s, StatusCode::OK, "{}: {me}", p.login);
        assert_eq!(me["team"]["id"], team.as_str(), "{}: {me}", p.login);
        assert_eq!(me["role"], role, "{}: {me}", p.login);
        assert_eq!(
            me["sandbox"]["namespace"],
            format!("sandbox-{team}"),
            "{}: {me}",
            p.login
        );
    }
    let (s, missing) = send(&server, &outsider, Method::GET, "/api/teams/tmaaaaaaaaaaaa", None).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, hidden) = send(&server, &outsider, Method::GET, &format!("/api/teams/{team}"), None).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        hidden["error"].as_str().map(|e| e.replace(&team, "ID")),
        missing["error"].as_str().map(|e| e.replace("tmaaaaaaaaaaaa", "ID")),
        "the outsider learns nothing from the answer"
    );
    let (s, me) = send(
        &server,
        &outsider,
        Method::PUT,
        "/api/me/team",
        Some(json!({ "team": team })),
    )
    .await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "{me}");

    // An app in the team's sandbox, made by the developer.
    let (s, app) = send(
        &server,
        &developer,
        Method::POST,
        "/api/deployments",
        Some(json!({ "template": "hello-web", "name": "site" })),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{app}");
    assert_eq!(
        app["namespace"],
        format!("sandbox-{team}"),
        "in the team's sandbox: {app}"
    );

    // (person, expected status) per route; 0 = any 2xx.
    type Case<'a> = (&'a str, Method, String, Option<Value>, [u16; 6]);
    let ok = 0;
    let people = [&owner, &org_admin, &team_admin, &developer, &viewer, &outsider];
    let cases: Vec<Case> = vec![
        (
            "team detail",
            Method::GET,
            format!("/api/teams/{team}"),
            None,
            [ok, ok, ok, ok, ok, 404],
        ),
        (
            "org detail",
            Method::GET,
            format!("/api/orgs/{org}"),
            None,
            [ok, ok, ok, ok, ok, 404],
        ),
        (
            "org audit",
            Method::GET,
            format!("/api/orgs/{org}/audit"),
            None,
            [ok, ok, 403, 403, 403, 404],
        ),
        (
            "list apps",
            Method::GET,
            "/api/deployments".into(),
            None,
            [ok, ok, ok, ok, ok, ok],
        ),
        (
            "app detail",
            Method::GET,
            "/api/deployments/site".into(),
            None,
            [ok, ok, ok, ok, ok, 404],
        ),
        (
            "restart app",
            Method::POST,
            "/api/deployments/site/restart".into(),
            Some(json!({})),
            [ok, ok, ok, ok, 403, 404],
        ),
        (
            "edit app",
            Method::PATCH,
            "/api/deployments/site".into(),
            Some(json!({ "parameters": { "GREETING": "hi" } })),
            [ok, ok, ok, ok, 403, 404],
        ),
        (
            "list secrets",
            Method::GET,
            "/api/secrets".into(),
            None,
            [ok, ok, ok, ok, ok, ok],
        ),
        (
            "write a secret",
            Method::PUT,
            "/api/secrets/user/API_KEY".into(),
            Some(json!({ "value": "s3cret" })),
            [ok, ok, ok, ok, 403, ok],
        ),
        (
            "rename team",
            Method::PATCH,
            format!("/api/teams/{team}"),
            Some(json!({ "name": "Web" })),
            [ok, ok, ok, 403, 403, 404],
        ),
        (
            "change a role",
            Method::PUT,
            format!("/api/teams/{team}/members/{}", viewer.id),
            Some(json!({ "role": "viewer" })),
            [ok, ok, ok, 403, 403, 404],
        ),
        (
            "set an org role",
            Method::PUT,
            format!("/api/orgs/{org}/members/{}", developer.id),
            Some(json!({ "role": "member" })),
            [ok, 403, 403, 403, 403, 404],
        ),
        (
            "rename org",
            Method::PATCH,
            format!("/api/orgs/{org}"),
            Some(json!({ "name": "Acme" })),
            [ok, ok, 403, 403, 403, 404],
        ),
        (
            "create team",
            Method::POST,
            format!("/api/orgs/{org}/teams"),
            None,
            [ok, ok, 403, 403, 403, 404],
        ),
        (
            "delete team",
            Method::DELETE,
            format!("/api/teams/{team}"),
            None,
            [0, 0, 403, 403, 403, 404],
        ),
    ];
    for (what, method, path, body, want) in cases {
        for (i, p) in people.iter().enumerate() {
            // Creating a team needs a fresh name each time; deleting is tried by the owner last.
            let body = if what == "create team" {
                Some(json!({ "name": format!("T-{}", p.login) }))
            } else {
                body.clone()
            };
            if what == "delete team" && want[i] == 0 {
                continue;
            }
            let (s, answer) = send(&server, p, method.clone(), &path, body).await?;
            let good = if want[i] == 0 {
                s.is_success()
            } else {
                s.as_u16() == want[i]
            };
            assert!(good, "{what} as {}: {s} {answer} (want {})", p.login, want[i]);
            if s == StatusCode::FORBIDDEN {
                assert!(
                    answer["error"].as_str().unwrap_or("").contains("role"),
                    "the 403 names the role: {answer}"
                );
            }
        }
    }
    // Invitations: admins only.
    for (p, want) in [(&developer, 403), (&viewer, 403), (&outsider, 404)] {
        let (s, body) = send(
            &server,
            p,
            Method::POST,
            &format!("/api/teams/{team}/invitations"),
            Some(json!({ "email": "new@example.com", "role": "viewer" })),
        )
        .await?;
        assert_eq!(s.as_u16(), want, "invite as {}: {body}", p.login);
    }
    // A viewer sees the team's app but the outsider's list is their own sandbox's.
    let (_, list) = send(&server, &viewer, Method::GET, "/api/deployments", None).await?;
    assert_eq!(list.as_array().map(|a| a.len()), Some(1), "{list}");
    let (_, list) = send(&server, &outsider, Method::GET, "/api/deployments", None).await?;
    assert_eq!(list, json!([]));

    // The audit lists who changed what.
    let (_, audit) = send(&server, &owner, Method::GET, &format!("/api/orgs/{org}/audit"), None).await?;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "team.created",
        "invitation.sent",
        "invitation.accepted",
        "member.role_changed",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }

    // The team's secrets (written in the matrix) go with it.
    assert!(
        !server.app.state.secrets.list(&team).await?.is_empty(),
        "the matrix wrote team secrets"
    );
    // The owner deletes the team: its members fall back to their own sandboxes.
    let (s, body) = send(&server, &owner, Method::DELETE, &format!("/api/teams/{team}"), None).await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        server.app.state.secrets.list(&team).await?,
        vec![],
        "no team secret is left"
    );
    let (_, me) = send(&server, &viewer, Method::GET, "/api/me", None).await?;
    assert_eq!(me["team"], Value::Null, "{me}");
    assert_eq!(me["role"], "owner", "{me}");
    Ok(())
}

/// `owner` invites `email` into `team` as a developer.
async fn invite(server: &Server, owner: &Person, team: &str, email: &str) -> Result<(StatusCode, Value)> {
    send(
        server,
        owner,
        Method::POST,
        &format!("/api/teams/{team}/invitations"),
        Some(json!({ "email": email, "role": "developer" })),
    )
    .await
}

#[tokio::test]
async fn invitations_are_single_use_for_the_invited_address_and_limited_by_the_plan() -> Result<()> {
    let (provider, server) = server_with_provider(|_| {}).await?;
    let owner = person(&server, &provider, "olivia").await?;
    let bob = person(&server, &provider, "bob").await?;
    let mallory = person(&server, &provider, "mallory").await?;
    let (org, team) = acme_web(&server, &owner, None).await?;

    // Free plan: one team per organization, one member per team (the owner, its admin).
    let (s, e) = send(
        &server,
        &owner,
        Method::POST,
        &format!("/api/orgs/{org}/teams"),
        Some(json!({ "name": "Two" })),
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        e["error"],
        "the free plan allows 1 team per organization; an organization on a bigger plan gets more"
    );
    let (s, e) = invite(&server, &owner, &team, "bob@example.com").await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(e["error"].as_str().unwrap().contains("allows 1 member per team"), "{e}");
    apiserver::teams::store::set_org_plan(&server.app.state.db, &org, crds::Plan::Business).await?;

    // Bad input changes nothing.
    for (body, says) in [
        (
            json!({ "email": "not-an-address", "role": "viewer" }),
            "not an email address",
        ),
        (
            json!({ "email": "bob@example.com", "role": "root" }),
            "role \"root\" is not valid",
        ),
        (json!({ "email": "bob@example.com" }), "role"),
    ] {
        let (s, e) = send(
            &server,
            &owner,
            Method::POST,
            &format!("/api/teams/{team}/invitations"),
            Some(body),
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
        assert!(e["error"].as_str().unwrap_or("").contains(says), "{e}");
    }

    let (s, inv) = invite(&server, &owner, &team, "bob@example.com").await?;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    let (s, e) = invite(&server, &owner, &team, "BOB@example.com").await?;
    assert_eq!(s, StatusCode::CONFLICT, "one pending invitation per address: {e}");
    let token = inv["link"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    assert!(
        inv["link"].as_str().unwrap().starts_with(&server.base),
        "the link uses BASE_URL: {inv}"
    );

    // The wrong account: refused, nothing changes.
    let (s, info) = send(
        &server,
        &mallory,
        Method::GET,
        &format!("/api/invitations/{token}"),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{info}");
    assert_eq!(
        (info["teamName"].as_str(), info["role"].as_str()),
        (Some("Web"), Some("developer"))
    );
    let (s, e) = send(
        &server,
        &mallory,
        Method::POST,
        &format!("/api/invitations/{token}/accept"),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(e["error"].as_str().unwrap().contains("sign in as that address"), "{e}");
    let (s, _) = send(&server, &mallory, Method::GET, &format!("/api/teams/{team}"), None).await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "mallory did not join");

    // Resent at once: rate-limited.
    let (s, e) = send(
        &server,
        &owner,
        Method::POST,
        &format!("/api/teams/{team}/invitations/{}/resend", inv["id"].as_str().unwrap()),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{e}");

    // Bob accepts once; the second time the token is used.
    let (s, body) = send(
        &server,
        &bob,
        Method::POST,
        &format!("/api/invitations/{token}/accept"),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, e) = send(
        &server,
        &bob,
        Method::POST,
        &format!("/api/invitations/{token}/accept"),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    assert!(e["error"].as_str().unwrap().contains("no longer valid"), "{e}");

    // Revoked and expired invitations are refused.
    let (_, revoked) = invite(&server, &owner, &team, "carol@example.com").await?;
    let (s, _) = send(
        &server,
        &owner,
        Method::DELETE,
        &format!("/api/teams/{team}/invitations/{}", revoked["id"].as_str().unwrap()),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let carol = person(&server, &provider, "carol").await?;
    let t = revoked["link"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let (s, _) = send(
        &server,
        &carol,
        Method::POST,
        &format!("/api/invitations/{t}/accept"),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "revoked");
    let (_, expiring) = invite(&server, &owner, &team, "carol@example.com").await?;
    sqlx::query("UPDATE invitations SET expires_at = 1 WHERE id = $1")
        .bind(expiring["id"].as_str().unwrap())
        .execute(server.app.state.db.pool())
        .await?;
    let t = expiring["link"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let (s, _) = send(
        &server,
        &carol,
        Method::POST,
        &format!("/api/invitations/{t}/accept"),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "expired");
    let (_, detail) = send(&server, &owner, Method::GET, &format!("/api/teams/{team}"), None).await?;
    let emails: Vec<&str> = detail["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["email"].as_str())
        .collect();
    assert_eq!(emails, ["bob@example.com", "olivia@example.com"], "{detail}");
    assert_eq!(
        detail["invitations"],
        json!([]),
        "no pending invitations left: {detail}"
    );

    // An API token bound to the team acts there with bob's role, checked on every request.
    let (s, token) = send(
        &server,
        &bob,
        Method::POST,
        "/api/tokens",
        Some(json!({ "name": "ci", "scopes": ["deployments:read", "deployments:write"], "team": team })),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{token}");
    let bearer = token["token"].as_str().context("token")?.to_string();
    let me: Value = reqwest::Client::new()
        .get(server.url("/api/me"))
        .bearer_auth(&bearer)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (me["team"]["id"].as_str(), me["role"].as_str()),
        (Some(team.as_str()), Some("developer")),
        "{me}"
    );
    let (s, e) = send(
        &server,
        &mallory,
        Method::POST,
        "/api/tokens",
        Some(json!({ "name": "x", "scopes": ["deployments:read"], "team": team })),
    )
    .await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "not mallory's team: {e}");

    // The last admin cannot leave or be demoted; a member can leave.
    let (s, e) = send(
        &server,
        &owner,
        Method::DELETE,
        &format!("/api/teams/{team}/members/{}", owner.id),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let (s, _) = send(
        &server,
        &bob,
        Method::DELETE,
        &format!("/api/teams/{team}/members/{}", bob.id),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let resp = reqwest::Client::new()
        .get(server.url("/api/me"))
        .bearer_auth(&bearer)
        .send()
        .await?;
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "the token's team is no longer bob's"
    );
    Ok(())
}

/// Invitations by email through Mailpit (SMTP with STARTTLS and authentication, as hack/test
/// starts it): no link in the answer, the email's link uses BASE_URL, and the invited address
/// signed in through the OpenID provider accepts it and is a member with the role.
#[tokio::test]
async fn an_emailed_invitation_is_followed_and_accepted_by_the_invited_address() -> Result<()> {
    let mailpit = crate::email::MailpitApi::new(&crate::email::env("E2E_MAILPIT_API")?);
    let mut mail_config = Err(anyhow::anyhow!("not configured"));
    let (provider, server) = server_with_provider(|c| mail_config = crate::email::use_mailpit(c)).await?;
    mail_config?;
    let owner = person(&server, &provider, "olivia").await?;
    let (_, team) = acme_web(&server, &owner, Some(crds::Plan::Business)).await?;

    let invited = format!("{}@example.com", e2e::unique_name("invitee"));
    let (s, inv) = invite(&server, &owner, &team, &invited).await?;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    assert!(inv.get("link").is_none(), "the link goes by email only: {inv}");
    let mail = mailpit
        .wait_for(&invited, "olivia@example.com invites you to team Web on k8s-scheduler")
        .await?;
    let text = mail["Text"].as_str().context("a plain-text part")?;
    let html = mail["HTML"].as_str().context("an HTML part")?;
    let prefix = format!("{}/invitations/", server.base);
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with(&prefix))
        .with_context(|| format!("a link to {prefix} in:\n{text}"))?;
    assert!(html.contains(link), "the HTML part has the same link");
    assert!(text.contains("as a developer"), "{text}");

    // The invited address signs in through the provider and follows the link.
    let invitee = sign_in(&server, &provider, &invited).await?;
    let token = link.rsplit('/').next().unwrap();
    let resp = server
        .send(&invitee, Method::POST, &format!("/api/invitations/{token}/accept"))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let me: Value = invitee.get(server.url("/api/me")).send().await?.json().await?;
    assert_eq!(me["team"]["id"], team.as_str(), "{me}");
    assert_eq!(me["role"], "developer", "{me}");
    Ok(())
}

/// API tokens cannot manage organizations, teams or invitations (whatever their scopes); a user
/// owns at most ORGS_MAX_PER_USER organizations; a member removed from their only team leaves the
/// organization too.
#[tokio::test]
async fn tokens_cannot_manage_teams_and_organizations_are_bounded() -> Result<()> {
    let (provider, server) = server_with_provider(|c| c.orgs_max_per_user = 2).await?;
    let owner = person(&server, &provider, "olivia").await?;
    let bob = person(&server, &provider, "bob").await?;
    let (org, team) = acme_web(&server, &owner, Some(crds::Plan::Business)).await?;
    join(&server, &owner, &team, &bob, "developer").await?;
    let (s, token) = send(
        &server,
        &owner,
        Method::POST,
        "/api/tokens",
        Some(json!({ "name": "ci", "scopes": ["deployments:read", "deployments:write", "secrets:write"] })),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{token}");
    let bearer = token["token"].as_str().context("token")?.to_string();
    let http = reqwest::Client::new();
    for (method, path, body) in [
        (Method::GET, "/api/orgs".to_string(), None),
        (Method::POST, "/api/orgs".to_string(), Some(json!({ "name": "Evil" }))),
        (Method::GET, format!("/api/teams/{team}"), None),
        (
            Method::POST,
            format!("/api/teams/{team}/invitations"),
            Some(json!({ "email": "evil@example.com", "role": "admin" })),
        ),
        (Method::DELETE, format!("/api/teams/{team}"), None),
    ] {
        let mut req = http.request(method.clone(), server.url(&path)).bearer_auth(&bearer);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} with a token: {text}");
        assert!(text.contains("browser session"), "{text}");
    }
    // Two organizations at most: the third is refused, naming the variable.
    let (s, _) = send(
        &server,
        &owner,
        Method::POST,
        "/api/orgs",
        Some(json!({ "name": "Two" })),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED);
    let (s, e) = send(
        &server,
        &owner,
        Method::POST,
        "/api/orgs",
        Some(json!({ "name": "Three" })),
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(e["error"].as_str().unwrap_or("").contains("ORGS_MAX_PER_USER"), "{e}");
    // Bob, removed from his only team, no longer sees the organization.
    let (s, _) = send(&server, &bob, Method::GET, &format!("/api/orgs/{org}"), None).await?;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = send(
        &server,
        &owner,
        Method::DELETE,
        &format!("/api/teams/{team}/members/{}", bob.id),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = send(&server, &bob, Method::GET, &format!("/api/orgs/{org}"), None).await?;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "removed from every team of it, bob is out of the organization"
    );
    Ok(())
}

/// Invite-revoke loops cannot make the platform a mailer: 20 invitations per team and hour.
#[tokio::test]
async fn a_team_sends_at_most_20_invitations_an_hour() -> Result<()> {
    let (provider, server) = server_with_provider(|_| {}).await?;
    let owner = person(&server, &provider, "olivia").await?;
    let (_, team) = acme_web(&server, &owner, Some(crds::Plan::Enterprise)).await?;
    for i in 0..20 {
        let (s, inv) = invite(&server, &owner, &team, &format!("guest{i}@example.com")).await?;
        assert_eq!(s, StatusCode::CREATED, "{inv}");
        let (s, _) = send(
            &server,
            &owner,
            Method::DELETE,
            &format!("/api/teams/{team}/invitations/{}", inv["id"].as_str().unwrap()),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let (s, e) = invite(&server, &owner, &team, "one-more@example.com").await?;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap_or("")
            .contains("20 invitations in the last hour"),
        "{e}"
    );
    Ok(())
}
