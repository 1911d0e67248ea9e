//! The OpenAPI 3 document of the API, derived from the handlers with utoipa. It is served at
//! `/api/openapi.json` and checked in as `apiserver/openapi.json`; a test fails when they drift
//! (regenerate with `cargo run -p apiserver -- --print-openapi > apiserver/openapi.json`).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::{billing, deployments, events, logs, secrets, session, system, teams, templates, tokens, usage};

#[derive(OpenApi)]
#[openapi(
    info(title = "k8s-scheduler API", description = "Self-service deployments on Kubernetes: templates, \
        deployments, live status and API tokens. Browser calls use the session cookie (JSON bodies from \
        BASE_URL's origin only); scripts send `Authorization: Bearer <API token>`."),
    paths(
        system::health, system::readyz, system::config, system::me,
        templates::list, templates::one, templates::create, templates::replace, templates::validate,
        templates::remove,
        deployments::list, deployments::create, deployments::detail, deployments::update,
        deployments::restart, deployments::set_image, deployments::remove, deployments::manifest,
        logs::deployment_logs, usage::deployment_metrics,
        events::events,
        tokens::list, tokens::create, tokens::revoke,
        teams::set_current_team, teams::list_orgs, teams::create_org, teams::org_detail, teams::rename_org,
        teams::org_audit, teams::set_org_role, teams::create_team, teams::team_detail, teams::rename_team, teams::delete_team,
        teams::set_member_role, teams::remove_member, teams::invite, teams::resend_invitation,
        teams::revoke_invitation, teams::invitation_info, teams::accept_invitation,
        billing::overview, billing::checkout, billing::portal, crate::billing::webhook::handle,
        secrets::list, secrets::put_user, secrets::delete_user, secrets::put_template, secrets::delete_template,
        secrets::put_deployment, secrets::delete_deployment, secrets::put_service, secrets::delete_service,
        crate::auth::oidc::login, crate::auth::oidc::callback, session::logout, session::dev_login,
    ),
    modifiers(&Security, &Statuses),
    tags(
        (name = "system", description = "Probes, feature flags, the caller"),
        (name = "templates", description = "The app catalog"),
        (name = "deployments", description = "Apps in the caller's sandbox"),
        (name = "tokens", description = "API tokens"),
        (name = "teams", description = "Organizations, teams, members and invitations"),
        (name = "billing", description = "Plans, Stripe Checkout and Portal, usage, invoices; Stripe's webhook"),
        (name = "secrets", description = "Secret values by scope (write-only)"),
        (name = "auth", description = "Sign-in and sign-out"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("API token"))
                    .build(),
            ),
        );
    }
}

/// Paths anyone may call, without a session or token.
const PUBLIC: &[&str] = &[
    "/health",
    "/readyz",
    "/api/config",
    "/login",
    "/oauth2/callback",
    "/dev/login",
    "/logout",
];

/// Completes every operation with the error statuses the shared layers can answer, which the
/// handlers' own annotations do not repeat (a handler's own description wins), and gives every
/// operation a unique, lower-camel-case operationId (the handler's name; with its tag when two
/// handlers share a name, e.g. `listDeployments`, `listTokens`).
struct Statuses;

fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

fn lower_camel(s: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in s.chars() {
        if c == '_' || c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl Modify for Statuses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use std::collections::BTreeMap;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for item in openapi.paths.paths.values() {
            for op in [&item.get, &item.put, &item.post, &item.delete, &item.patch]
                .into_iter()
                .flatten()
            {
                *seen
                    .entry(lower_camel(op.operation_id.as_deref().unwrap_or("")))
                    .or_default() += 1;
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = PUBLIC.contains(&path.as_str());
            let has_path_params = path.contains('{');
            let ops = [
                (false, &mut item.get),
                (true, &mut item.put),
                (true, &mut item.post),
                (true, &mut item.delete),
                (true, &mut item.patch),
            ];
            for (writes, op) in ops {
                let Some(op) = op.as_mut() else { continue };
                let name = lower_camel(op.operation_id.as_deref().unwrap_or(""));
                let id = if seen.get(&name).copied().unwrap_or(0) > 1 {
                    let tag = op.tags.as_ref().and_then(|t| t.first()).cloned().unwrap_or_default();
                    let mut chars = tag.chars();
                    let tag: String = chars
                        .next()
                        .map(|c| c.to_uppercase().chain(chars).collect())
                        .unwrap_or_default();
                    format!("{name}{tag}")
                } else {
                    name
                };
                op.operation_id = Some(id);
                let has_body = op.request_body.is_some();
                let has_query = op.parameters.as_ref().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query))
                });
                let mut add: Vec<(&str, &str)> = vec![];
                if has_path_params || has_body || has_query {
                    add.push((
                        "400",
                        "invalid input: a path parameter that is not a valid name (the error names it), \
                         a body that is not the documented JSON, or a bad query",
                    ));
                }
                if !public {
                    add.push(("401", "not signed in, or the API token is unknown, revoked or expired"));
                }
                if !public || writes {
                    add.push((
                        "403",
                        "the API token lacks the scope, or a browser request that changes something is \
                         not from BASE_URL's origin",
                    ));
                }
                if has_path_params {
                    add.push(("404", "no such object for the caller"));
                }
                if !public {
                    add.push((
                        "409",
                        "the caller's sandbox belongs to another identity or installation",
                    ));
                }
                if has_body {
                    add.push(("413", "the body (or a value in it) is larger than allowed"));
                }
                if writes {
                    add.push((
                        "415",
                        "a browser request with a body must be Content-Type: application/json",
                    ));
                }
                add.push(("500", "internal error; it has been logged"));
                if !public {
                    add.push((
                        "503",
                        "the caller's sandbox is still being prepared; retry after Retry-After seconds",
                    ));
                }
                for (status, description) in &add {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(description));
                }
                // Statuses a handler documents without saying why get the shared wording.
                for (status, response) in op.responses.responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(r) = response
                        && r.description.is_empty()
                        && (status.starts_with('4') || status.starts_with('5'))
                    {
                        r.description = add
                            .iter()
                            .find(|(s, _)| s == status)
                            .map(|(_, d)| d.to_string())
                            .unwrap_or_else(|| match status.as_str() {
                                "409" => "the object exists already or changed meanwhile".into(),
                                "429" => "too many at once; retry later".into(),
                                _ => "see the error message".into(),
                            });
                    }
                }
            }
        }
    }
}

/// The document as pretty JSON.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    // Not the crate version: the checked-in file must not change with every release.
    doc.info.version = "v1".into();
    doc.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
