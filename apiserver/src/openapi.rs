//! The OpenAPI 3 document of the API, derived from the handlers with utoipa. It is served at
//! `/api/openapi.json` and checked in as `apiserver/openapi.json`; a test fails when they drift
//! (regenerate with `cargo run -p apiserver -- --print-openapi > apiserver/openapi.json`).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::{deployments, events, secrets, session, system, templates, tokens};

#[derive(OpenApi)]
#[openapi(
    info(title = "k8s-scheduler API", description = "Self-service deployments on Kubernetes: templates, \
        deployments, live status and API tokens. Browser calls use the session cookie (JSON bodies from \
        BASE_URL's origin only); scripts send `Authorization: Bearer <API token>`."),
    paths(
        system::health, system::readyz, system::config, system::me,
        templates::list, templates::one,
        deployments::list, deployments::create, deployments::detail, deployments::update,
        deployments::restart, deployments::set_image, deployments::remove, deployments::manifest,
        events::events,
        tokens::list, tokens::create, tokens::revoke,
        secrets::list, secrets::put_user, secrets::delete_user, secrets::put_template, secrets::delete_template,
        secrets::put_deployment, secrets::delete_deployment, secrets::put_service, secrets::delete_service,
        crate::auth::oidc::login, crate::auth::oidc::callback, session::logout, session::dev_login,
    ),
    modifiers(&Security),
    tags(
        (name = "system", description = "Probes, feature flags, the caller"),
        (name = "templates", description = "The app catalog"),
        (name = "deployments", description = "Apps in the caller's sandbox"),
        (name = "tokens", description = "API tokens"),
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

/// The document as pretty JSON.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    // Not the crate version: the checked-in file must not change with every release.
    doc.info.version = "v1".into();
    doc.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
