//! Gateway API (`gateway.networking.k8s.io/v1`): the `HTTPRoute` type the controller writes and
//! reads (the start-up discovery that decides how apps are routed is the controller's `gateway`).
//!
//! k8s-openapi has no Gateway API types. The `gateway-api` crate (kube-rs/gateway-api-rs, 0.22)
//! is built on kube 4 and k8s-openapi 0.28, so it would bring a second copy of both beside the
//! workspace's kube 5 / k8s-openapi 0.29 (and its `Resource` impls would be for the other kube).
//! The few fields used are typed here instead, with kube's `CustomResource` derive and no schema:
//! the CRDs are the Gateway API project's, installed with the cluster's gateway controller.
//! Unknown fields (those the API server defaults, newer ones) are ignored when reading.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// API group of the Gateway API.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The version the controller writes.
pub const VERSION: &str = "v1";

/// Spec of an `HTTPRoute`: the fields the controller sets.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    plural = "httproutes",
    namespaced,
    schema = "disabled",
    status = "HttpRouteStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The Gateways (and listeners) the route attaches to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentReference>,
    /// Host names the route matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Matches and the backends they go to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HttpRouteRule>,
}

/// A reference to a parent (a Gateway, optionally one of its listeners).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// API group of the parent (`gateway.networking.k8s.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind of the parent (`Gateway`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its name.
    pub name: String,
    /// Its namespace; absent: the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The listener's name; absent: every listener that admits the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// One rule: what it matches and where it sends it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Request matches (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpRouteMatch>,
    /// The backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<HttpBackendRef>,
}

/// A request match (only the path is used).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// The path match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
}

/// A path match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A backend: a Service and its port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpBackendRef {
    /// API group of the backend (`""`: core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind of the backend (`Service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its name (in the route's namespace).
    pub name: String,
    /// The Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// Status of an `HTTPRoute`: what each parent's controller made of it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteStatus {
    /// One entry per parent (and controller).
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}

/// The status a parent's controller gives a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parent.
    #[serde(default)]
    pub parent_ref: ParentReference,
    /// The controller that wrote this entry.
    #[serde(default)]
    pub controller_name: String,
    /// `Accepted`, `ResolvedRefs`, ...
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

impl HTTPRoute {
    /// Why a parent refused the route, if one did: its `Accepted` condition is `False`
    /// (e.g. `NotAllowedByListeners`: the Gateway does not admit routes from this namespace;
    /// `NoMatchingParent`: no such Gateway or listener). `ResolvedRefs=False` is reported too
    /// (the backend Service is missing or has no such port). Unknown (no status yet) is no
    /// refusal: a route is not waited for.
    pub fn refusal(&self) -> Option<String> {
        let parents = &self.status.as_ref()?.parents;
        parents.iter().find_map(|p| {
            p.conditions
                .iter()
                .find(|c| (c.type_ == "Accepted" || c.type_ == "ResolvedRefs") && c.status == "False")
                .map(|c| {
                    let gateway = match &p.parent_ref.namespace {
                        Some(ns) => format!("{ns}/{}", p.parent_ref.name),
                        None => p.parent_ref.name.clone(),
                    };
                    let what = if c.type_ == "Accepted" {
                        "does not accept the route"
                    } else {
                        "cannot resolve the route's backend"
                    };
                    let message = if c.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", c.message)
                    };
                    format!("Gateway {gateway} {what} ({}){message}", c.reason)
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn the_type_names_the_gateway_api_resource() {
        assert_eq!(HTTPRoute::api_version(&()), "gateway.networking.k8s.io/v1");
        assert_eq!(HTTPRoute::kind(&()), "HTTPRoute");
        assert_eq!(
            HTTPRoute::url_path(&(), Some("sb")),
            "/apis/gateway.networking.k8s.io/v1/namespaces/sb/httproutes"
        );
    }

    #[test]
    fn a_refusing_parent_is_reported() {
        let route: HTTPRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": { "name": "shop", "namespace": "sb", "generation": 1 },
            "spec": { "hostnames": ["u-shop.example.com"], "rules": [{ "matches": [{ "path": { "type": "PathPrefix", "value": "/" },
                      "headers": [] }], "backendRefs": [{ "group": "", "kind": "Service", "name": "shop-web", "port": 80, "weight": 1 }] }] },
            "status": { "parents": [{
                "parentRef": { "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "k8s-scheduler", "namespace": "gateway-system" },
                "controllerName": "traefik.io/gateway-controller",
                "conditions": [
                    { "type": "Accepted", "status": "False", "reason": "NotAllowedByListeners",
                      "message": "no listener admits the namespace", "lastTransitionTime": "2026-11-29T10:00:00Z" },
                ],
            }] },
        }))
        .unwrap();
        let why = route.refusal().expect("refused");
        assert!(
            why.contains("gateway-system/k8s-scheduler")
                && why.contains("NotAllowedByListeners")
                && why.contains("no listener admits"),
            "{why}"
        );
        let mut accepted = route.clone();
        accepted.status.as_mut().unwrap().parents[0].conditions[0].status = "True".into();
        assert_eq!(accepted.refusal(), None);
        let mut fresh = route;
        fresh.status = None;
        assert_eq!(fresh.refusal(), None, "no status yet is no refusal");
    }
}
