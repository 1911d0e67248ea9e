//! Names of everything the platform creates for an app, from one place: the controller's children
//! and the Secrets the HTTP server writes (it calls these functions too).
//!
//! Names are `<app>` or start with `<app>-`, and both app and service names may hold dashes, so
//! two apps of one sandbox can produce the same name (app `web` with service `db` has the Secret
//! `web-db-secrets`, the main Secret of app `web-db`). That can only happen when one app's name is
//! the other's followed by a dash (or through a chosen `secretName`); [`claimed`] lists an app's
//! names and [`collision`] finds a shared one, and the controller refuses the newer app
//! (`NameConflict`, see `reconcile::deployment`). Names of the sandbox's own objects of the same
//! kinds are reserved ([`reserved`]).

/// Kind of a named object (names are unique per kind and namespace).
pub type Kind = &'static str;

/// The host label of an app: `<user-id>-<app>` (it must be a DNS label: see `validate`).
pub fn host_label(user_id: &str, app: &str) -> String {
    format!("{user_id}-{app}")
}

/// The host of an app: `<user-id>-<app>.<DEPLOYMENT_DOMAIN>`.
pub fn host(user_id: &str, app: &str, deployment_domain: &str) -> String {
    format!("{}.{deployment_domain}", host_label(user_id, app))
}

/// A user's sandbox namespace from the `KUBERNETES_NAMESPACE` pattern: its `%s` is the user id.
pub fn sandbox_namespace(pattern: &str, user_id: &str) -> String {
    pattern.replacen("%s", user_id, 1)
}

/// Deployment, Service and PodDisruptionBudget of one service of an app: `<app>-<service>`.
pub fn child(app: &str, service: &str) -> String {
    format!("{app}-{service}")
}

/// ConfigMap of one service's config files: `<app>-<service>-config`.
pub fn config_map(app: &str, service: &str) -> String {
    format!("{app}-{service}-config")
}

/// Ingress or HTTPRoute, and NetworkPolicy of an app: `<app>`.
pub fn app_object(app: &str) -> String {
    app.to_string()
}

/// The app's Secret when its spec names none: `<app>-secrets`.
pub fn default_secret(app: &str) -> String {
    format!("{app}-secrets")
}

/// The app's Secret: `spec.secretName`, else [`default_secret`].
pub fn secret(app: &str, secret_name: Option<&str>) -> String {
    secret_name.map_or_else(|| default_secret(app), str::to_string)
}

/// The Secret with one service's own values (written by the HTTP server):
/// `<app>-<service>-secrets`.
pub fn service_secret(app: &str, service: &str) -> String {
    format!("{app}-{service}-secrets")
}

/// The per-app TLS Secret (cert-manager) when no shared `INGRESS_TLS_SECRET` is set: `<app>-tls`.
pub fn tls_secret(app: &str) -> String {
    format!("{app}-tls")
}

/// Every (kind, name) an app with these services takes in its namespace. The ExternalSecret has
/// the name of the app's Secret and is counted with it.
pub fn claimed(app: &str, services: &[&str], secret_name: Option<&str>) -> Vec<(Kind, String)> {
    let mut out = vec![
        ("Ingress", app_object(app)),
        ("HTTPRoute", app_object(app)),
        ("NetworkPolicy", app_object(app)),
        ("Secret", secret(app, secret_name)),
        ("Secret", tls_secret(app)),
    ];
    for s in services {
        out.push(("Deployment", child(app, s)));
        out.push(("Service", child(app, s)));
        out.push(("PodDisruptionBudget", child(app, s)));
        out.push(("ConfigMap", config_map(app, s)));
        out.push(("Secret", service_secret(app, s)));
    }
    out
}

/// A (kind, name) both lists hold, if any.
pub fn collision<'a>(mine: &'a [(Kind, String)], theirs: &[(Kind, String)]) -> Option<&'a (Kind, String)> {
    mine.iter().find(|m| theirs.contains(m))
}

/// Whether two apps' names can collide at all without a chosen `secretName`: one is the other
/// followed by a dash (a cheap filter before [`claimed`]).
pub fn may_collide(a: &str, b: &str) -> bool {
    let prefix = |long: &str, short: &str| long.strip_prefix(short).is_some_and(|r| r.starts_with('-'));
    prefix(a, b) || prefix(b, a)
}

/// A name of the app that belongs to its sandbox (the sandbox's NetworkPolicies), if any.
pub fn reserved(claimed: &[(Kind, String)]) -> Option<&(Kind, String)> {
    claimed
        .iter()
        .find(|(kind, name)| *kind == "NetworkPolicy" && crate::build::sandbox::POLICY_NAMES.contains(&name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_whose_names_extend_each_other_can_collide() {
        // App `web` with service `db` and app `web-db`: the Secret web-db-secrets.
        let web = claimed("web", &["db"], None);
        let web_db = claimed("web-db", &["app"], None);
        assert_eq!(
            collision(&web_db, &web),
            Some(&("Secret", "web-db-secrets".to_string()))
        );
        assert!(may_collide("web", "web-db") && may_collide("web-db", "web"));
        // App `x` with service `secrets` and app `x-secrets`: x-secrets-secrets.
        let x = claimed("x", &["secrets"], None);
        let x_secrets = claimed("x-secrets", &["web"], None);
        assert_eq!(
            collision(&x_secrets, &x),
            Some(&("Secret", "x-secrets-secrets".to_string()))
        );
        // App `a` with service `b-c` and app `a-b` with service `c`: every child of a-b-c.
        let a = claimed("a", &["b-c"], None);
        let a_b = claimed("a-b", &["c"], None);
        assert_eq!(collision(&a_b, &a), Some(&("Deployment", "a-b-c".to_string())));
        // Unrelated names never collide, nor does an app with itself differently shaped.
        assert!(!may_collide("blog", "blogger") && !may_collide("shop", "shop"));
        assert_eq!(
            collision(&claimed("blog", &["web"], None), &claimed("blogger", &["web"], None)),
            None
        );
        assert_eq!(
            collision(
                &claimed("blog", &["web"], None),
                &claimed("blog-staging", &["web"], None)
            ),
            None
        );
    }

    #[test]
    fn a_chosen_secret_name_collides_with_another_apps_secret() {
        let shop = claimed("shop", &["web"], None);
        let other = claimed("other", &["web"], Some("shop-secrets"));
        assert_eq!(collision(&other, &shop), Some(&("Secret", "shop-secrets".to_string())));
    }

    #[test]
    fn sandbox_policy_names_are_reserved() {
        assert_eq!(
            reserved(&claimed("default-deny", &["web"], None)),
            Some(&("NetworkPolicy", "default-deny".to_string()))
        );
        assert_eq!(reserved(&claimed("web", &["default-deny"], None)), None);
    }

    #[test]
    fn hosts_and_namespaces() {
        assert_eq!(host("u1", "blog", "example.com"), "u1-blog.example.com");
        assert_eq!(host_label("u1", "blog"), "u1-blog");
        assert_eq!(sandbox_namespace("sandbox-%s", "u1"), "sandbox-u1");
        assert_eq!(sandbox_namespace("%s", "u1"), "u1");
    }

    #[test]
    fn the_names_the_build_uses() {
        assert_eq!(child("blog", "web"), "blog-web");
        assert_eq!(config_map("blog", "web"), "blog-web-config");
        assert_eq!(secret("blog", None), "blog-secrets");
        assert_eq!(secret("blog", Some("mine")), "mine");
        assert_eq!(service_secret("blog", "web"), "blog-web-secrets");
        assert_eq!(tls_secret("blog"), "blog-tls");
    }
}
