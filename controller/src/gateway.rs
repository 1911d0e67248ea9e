//! Gateway API discovery at start-up: whether the cluster serves `HTTPRoute` v1, and so how public
//! apps are routed (`ROUTING`). The `HTTPRoute` type itself is in `policy::route`.

use kube::Client;

pub use policy::route::*;
use policy::settings::Routing;

/// Whether the API serves `HTTPRoute` in `gateway.networking.k8s.io/v1` (the Gateway API CRDs of
/// the standard channel, v1.0 or later, are installed). Discovery is readable by every
/// authenticated client (`system:discovery`): no extra RBAC.
pub async fn http_routes_served(client: &Client) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(&format!("{GROUP}/{VERSION}")).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == "httproutes")),
        // The group or version is not served at all.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The routing mode to use for `setting` (`ROUTING`) on a cluster that does or does not serve
/// HTTPRoute v1, with the reason (for the start-up log), or the start-up error.
pub fn resolve(setting: Routing, served: bool) -> Result<(Routing, String), String> {
    let api = format!("{GROUP}/{VERSION} HTTPRoute");
    match (setting, served) {
        (Routing::Auto, true) => Ok((
            Routing::Gateway,
            format!("ROUTING=auto and the cluster serves {api}: apps get HTTPRoutes"),
        )),
        (Routing::Auto, false) => Ok((
            Routing::Ingress,
            format!(
                "ROUTING=auto and the cluster does not serve {api}: apps get Ingresses (install the Gateway API CRDs and restart the controller to use HTTPRoutes)"
            ),
        )),
        (Routing::Gateway, true) => Ok((Routing::Gateway, "ROUTING=gateway: apps get HTTPRoutes".into())),
        (Routing::Gateway, false) => Err(format!(
            "ROUTING=gateway, but the cluster does not serve {api}: install the Gateway API CRDs (standard channel, v1.0 or later) and a gateway controller with its Gateway (GATEWAY_NAMESPACE/GATEWAY_NAME), or set ROUTING=ingress (or auto) to route apps with Ingresses"
        )),
        (Routing::Ingress, _) => Ok((Routing::Ingress, "ROUTING=ingress: apps get Ingresses".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_cluster_and_gateway_needs_the_crds() {
        assert_eq!(resolve(Routing::Auto, true).unwrap().0, Routing::Gateway);
        let (mode, why) = resolve(Routing::Auto, false).unwrap();
        assert_eq!(mode, Routing::Ingress);
        assert!(why.contains("does not serve") && why.contains("HTTPRoute"), "{why}");
        assert_eq!(resolve(Routing::Ingress, true).unwrap().0, Routing::Ingress);
        assert_eq!(resolve(Routing::Gateway, true).unwrap().0, Routing::Gateway);
        let err = resolve(Routing::Gateway, false).unwrap_err();
        assert!(
            err.contains("ROUTING=gateway") && err.contains("Gateway API CRDs") && err.contains("ROUTING=ingress"),
            "{err}"
        );
    }
}
