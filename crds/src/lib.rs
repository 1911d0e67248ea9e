//! Custom resource types of k8s-scheduler, group `k8s-scheduler.io`, version `v1alpha1`.
//!
//! - [`UserSandbox`] (cluster-scoped): a tenant, its members and plan; owns a namespace.
//! - [`Template`] (namespaced): an app catalog entry.
//! - [`UserDeployment`] (namespaced, in a sandbox namespace): one running instance of an app.
//!
//! This crate does no I/O: the controller and the HTTP server both depend on it. The CRD YAML
//! under `charts/k8s-scheduler/crds/` is generated from these types by the `crdgen` binary.
#![forbid(unsafe_code)]
// kube-derive's `printcolumn(...)` repeats `type_ = ...` per column, which this lint misreads.
#![allow(clippy::duplicated_attributes)]

pub mod conditions;
pub mod deployment;
pub mod plan;
pub mod sandbox;
pub mod string_map;
pub mod template;

pub use deployment::{DeploymentPhase, UserDeployment, UserDeploymentSpec, UserDeploymentStatus, Visibility};
pub use plan::{Plan, PlanLimits};
pub use sandbox::{MemberRole, SandboxMember, SandboxOwner, UserSandbox, UserSandboxSpec, UserSandboxStatus};
pub use string_map::StringMap;
pub use template::{
    ConfigFile, ParameterType, ResourceList, ServiceResources, ServiceSpec, Template, TemplateIngress,
    TemplateParameter, TemplateSpec, TemplateStatus, TemplateVisibility,
};

/// API group of every k8s-scheduler resource.
pub const GROUP: &str = "k8s-scheduler.io";
/// API version of every k8s-scheduler resource.
pub const VERSION: &str = "v1alpha1";
/// `kubectl get k8s-scheduler` lists every resource of this category.
pub const CATEGORY: &str = "k8s-scheduler";

/// Longest user id: with a 32-character deployment name and a dash, the host label
/// `<user-id>-<name>` stays within the 63 characters of a DNS label.
pub const MAX_USER_ID_LEN: usize = 30;
/// Longest UserDeployment name (see [`MAX_USER_ID_LEN`]).
pub const MAX_DEPLOYMENT_NAME_LEN: usize = 32;

/// Most entries of a map of parameters or environment variables.
pub const MAX_MAP_ENTRIES: usize = 100;
/// Longest parameter or environment variable value, in characters (schema and controller).
pub const MAX_VALUE_LEN: usize = 4096;
/// Longest environment variable (parameter) name.
pub const MAX_ENV_NAME_LEN: usize = 128;
/// Longest image reference.
pub const MAX_IMAGE_LEN: usize = 512;

/// CEL rule: a DNS-1123 label (lower-case alphanumerics and dashes, alphanumeric at both ends).
pub(crate) const DNS_LABEL_RULE: &str = "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')";

/// All CRDs, in the order they are written by `crdgen`.
pub fn all_crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![UserSandbox::crd(), Template::crd(), UserDeployment::crd()]
}

/// Whether `s` is a DNS-1123 label of at most `max` characters.
pub fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("web-1", 63));
        assert!(!is_dns_label("-web", 63));
        assert!(!is_dns_label("web-", 63));
        assert!(!is_dns_label("Web", 63));
        assert!(!is_dns_label("", 63));
        assert!(!is_dns_label(&"a".repeat(64), 63));
        assert_eq!(MAX_USER_ID_LEN + 1 + MAX_DEPLOYMENT_NAME_LEN, 63);
    }

    /// Every `map[string]string` of every CRD, as (path, schema).
    fn string_maps(v: &serde_json::Value, path: String, out: &mut Vec<(String, serde_json::Value)>) {
        if let Some(obj) = v.as_object() {
            if obj.get("additionalProperties").and_then(|a| a.get("type")) == Some(&serde_json::json!("string")) {
                out.push((path.clone(), v.clone()));
            }
            for (k, child) in obj {
                string_maps(child, format!("{path}.{k}"), out);
            }
        }
    }

    #[test]
    fn every_map_limits_its_size_and_the_length_of_its_values() {
        let mut maps = Vec::new();
        for crd in all_crds() {
            let v = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            string_maps(&v, crd.spec.names.kind.clone(), &mut maps);
        }
        let found: Vec<&str> = maps
            .iter()
            .map(|(p, _)| p.rsplit('.').next().unwrap_or_default())
            .collect();
        for name in ["parameters", "imageOverrides", "env"] {
            assert!(found.contains(&name), "{name} not found among maps {found:?}");
        }
        for (path, schema) in &maps {
            assert!(schema["maxProperties"].as_u64().is_some(), "{path}: no maxProperties");
            let max = schema["additionalProperties"]["maxLength"].as_u64();
            assert!(
                max.is_some_and(|m| m <= 4096),
                "{path}: values have no maxLength: {schema}"
            );
            let keys = schema["x-kubernetes-validations"].to_string();
            assert!(keys.contains("size(k)"), "{path}: keys have no length limit: {keys}");
        }
    }

    #[test]
    fn crds_have_category_short_names_and_status() {
        for crd in all_crds() {
            let names = &crd.spec.names;
            assert_eq!(
                names.categories.as_deref(),
                Some(&[CATEGORY.to_string()][..]),
                "{}",
                names.kind
            );
            assert!(
                names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
                "{}",
                names.kind
            );
            let v = &crd.spec.versions[0];
            assert!(
                v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
                "{}",
                names.kind
            );
            assert!(
                v.additional_printer_columns.as_ref().is_some_and(|c| c.len() >= 2),
                "{}",
                names.kind
            );
        }
    }
}
