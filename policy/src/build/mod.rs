//! Desired child objects, built from validated specs as typed objects. Pure: no client, no I/O.

pub mod deployment;
pub mod sandbox;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

/// Label on every child: who manages it.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGER: &str = "k8s-scheduler";
/// Label naming the UserDeployment a child belongs to.
pub const DEPLOYMENT_LABEL: &str = "k8s-scheduler.io/deployment";
/// Label naming the service (of a UserDeployment) a child belongs to.
pub const SERVICE_LABEL: &str = "k8s-scheduler.io/service";
/// Pod label saying whether an app is `public` (reachable from the ingress controller) or
/// `internal`.
pub const VISIBILITY_LABEL: &str = "k8s-scheduler.io/visibility";
/// Label naming the UserSandbox a namespace or its policies belong to.
pub const SANDBOX_LABEL: &str = "k8s-scheduler.io/sandbox";
/// Pod template annotation carrying a hash of the mounted config files, so edits roll the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "k8s-scheduler.io/config-hash";
/// Pod annotation carrying `spec.restartedAt`: changing it rolls the pods.
pub const RESTARTED_AT_ANNOTATION: &str = "k8s-scheduler.io/restartedAt";

/// A controller owner reference to `owner`.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Labels every child of a UserDeployment carries.
pub fn deployment_labels(deployment: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (DEPLOYMENT_LABEL.to_string(), deployment.to_string()),
    ])
}

/// A short, stable hash (FNV-1a, hex) for change detection; not for security.
pub fn fnv_hash(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
