//! Who gets a contested name: an owner id, a namespace, a host. Pure rules over the caches, the
//! same answer on every replica and after every restart: the oldest claimant wins
//! (`metadata.creationTimestamp`, then namespace, then name); every other one is refused with a
//! reason and gets no children.
//!
//! Hosts are `<user-id>-<app>.<DEPLOYMENT_DOMAIN>`, and nothing in that shape stops user `bob`'s
//! app `smith-shop` from naming the host of user `bob-smith`'s app `shop`. The HTTP server never
//! assigns two users ids where one is the other followed by a dash (its ids have no dash at all);
//! sandboxes written with kubectl or GitOps can still do it, so the controller gives a host to
//! the oldest app that resolves to it, across all sandboxes, and refuses the others
//! (`HostConflict`). Likewise one owner id has one sandbox (`OwnerConflict`), and apps run only
//! in a namespace that the controller provisioned for an active sandbox.

use std::sync::Arc;

use crds::{UserDeployment, UserSandbox};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

/// Ordering key of a claimant: older first (an object without a creation time counts as the
/// newest), then namespace, then name.
pub fn age_key(meta: &ObjectMeta) -> (bool, Option<i128>, &str, &str) {
    let created = meta.creation_timestamp.as_ref().map(|t| t.0.as_nanosecond());
    (
        created.is_none(),
        created,
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// Whether `sb` holds its owner id: no older sandbox names the same `spec.owner.userId`.
pub fn holds_owner_id(sandboxes: &[Arc<UserSandbox>], sb: &UserSandbox) -> bool {
    let id = &sb.spec.owner.user_id;
    !sandboxes
        .iter()
        .any(|o| o.spec.owner.user_id == *id && age_key(&o.metadata) < age_key(&sb.metadata))
}

/// What a namespace is, for placing workloads in it.
#[derive(Debug, Clone)]
pub enum NamespaceOwner {
    /// An active sandbox owns it: it holds its owner id and the controller provisioned the
    /// namespace for it (its status names it, written after the namespace label check).
    Active(Arc<UserSandbox>),
    /// No sandbox names it.
    NoSandbox,
    /// Its sandbox lost its owner id to an older sandbox.
    OwnerConflict(Arc<UserSandbox>),
    /// Its sandbox has not (or could not) provision it; the sandbox's conditions say why.
    NotProvisioned(Arc<UserSandbox>),
}

/// The sandbox `namespace` belongs to. Of several sandboxes naming it, the one the controller
/// provisioned it for counts (the namespace's label names exactly one), else the oldest.
pub fn namespace_owner(sandboxes: &[Arc<UserSandbox>], namespace: &str) -> NamespaceOwner {
    let provisioned = |s: &UserSandbox| s.status.as_ref().and_then(|st| st.namespace.as_deref()) == Some(namespace);
    let candidates = sandboxes.iter().filter(|s| s.spec.namespace == namespace);
    let Some(sb) =
        candidates.min_by(|a, b| (!provisioned(a), age_key(&a.metadata)).cmp(&(!provisioned(b), age_key(&b.metadata))))
    else {
        return NamespaceOwner::NoSandbox;
    };
    if !holds_owner_id(sandboxes, sb) {
        NamespaceOwner::OwnerConflict(sb.clone())
    } else if !provisioned(sb) {
        NamespaceOwner::NotProvisioned(sb.clone())
    } else {
        NamespaceOwner::Active(sb.clone())
    }
}

/// Every app that resolves to host label `label`, oldest (the holder) first: the apps of active
/// sandboxes whose owner id `o` and name `a` make `o-a == label`. `app` looks an app up by
/// namespace and name (the controller's cache).
pub fn host_claimants(
    sandboxes: &[Arc<UserSandbox>],
    label: &str,
    app: impl Fn(&str, &str) -> Option<Arc<UserDeployment>>,
) -> Vec<Arc<UserDeployment>> {
    let mut claimants: Vec<Arc<UserDeployment>> = sandboxes
        .iter()
        .filter_map(|sb| {
            let rest = label.strip_prefix(sb.spec.owner.user_id.as_str())?.strip_prefix('-')?;
            match namespace_owner(sandboxes, &sb.spec.namespace) {
                NamespaceOwner::Active(active) if active.name_any() == sb.name_any() => app(&sb.spec.namespace, rest),
                _ => None,
            }
        })
        .collect();
    claimants.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
    claimants
}

/// The app that holds host label `label` (see [`host_claimants`]).
pub fn host_holder(
    sandboxes: &[Arc<UserSandbox>],
    label: &str,
    app: impl Fn(&str, &str) -> Option<Arc<UserDeployment>>,
) -> Option<Arc<UserDeployment>> {
    host_claimants(sandboxes, label, app).into_iter().next()
}

impl NamespaceOwner {
    /// The sandbox that names the namespace, if any.
    pub fn sandbox(&self) -> Option<&UserSandbox> {
        match self {
            NamespaceOwner::Active(sb) | NamespaceOwner::OwnerConflict(sb) | NamespaceOwner::NotProvisioned(sb) => {
                Some(sb)
            }
            NamespaceOwner::NoSandbox => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::names::host_label;
    use serde_json::json;

    fn sandbox(name: &str, owner: &str, created: &str) -> Arc<UserSandbox> {
        let ns = format!("sandbox-{name}");
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserSandbox",
                "metadata": { "name": name, "creationTimestamp": created },
                "spec": { "owner": { "userId": owner }, "namespace": ns },
                "status": { "namespace": ns },
            }))
            .unwrap(),
        )
    }

    fn app(ns: &str, name: &str, created: &str) -> Arc<UserDeployment> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserDeployment",
                "metadata": { "name": name, "namespace": ns, "creationTimestamp": created },
                "spec": { "services": [{ "name": "web", "image": "nginx", "port": 80 }] },
            }))
            .unwrap(),
        )
    }

    fn lookup(apps: &[Arc<UserDeployment>]) -> impl Fn(&str, &str) -> Option<Arc<UserDeployment>> + '_ {
        move |ns, name| {
            apps.iter()
                .find(|a| a.namespace().as_deref() == Some(ns) && a.name_any() == name)
                .cloned()
        }
    }

    /// What [`namespace_owner`] says, as (kind, sandbox name).
    fn owner_of(sbs: &[Arc<UserSandbox>], ns: &str) -> (&'static str, String) {
        let o = namespace_owner(sbs, ns);
        let name = o.sandbox().map(|s| s.name_any()).unwrap_or_default();
        let kind = match o {
            NamespaceOwner::Active(_) => "active",
            NamespaceOwner::NoSandbox => "none",
            NamespaceOwner::OwnerConflict(_) => "owner-conflict",
            NamespaceOwner::NotProvisioned(_) => "not-provisioned",
        };
        (kind, name)
    }

    const T1: &str = "2026-01-01T10:00:00Z";
    const T2: &str = "2026-01-01T11:00:00Z";

    #[test]
    fn the_oldest_app_holds_a_host_across_sandboxes() {
        // The example: bob's `smith-shop` and bob-smith's `shop` are both bob-smith-shop.
        let sbs = vec![sandbox("bob", "bob", T1), sandbox("bob-smith", "bob-smith", T1)];
        let older = app("sandbox-bob-smith", "shop", T1);
        let newer = app("sandbox-bob", "smith-shop", T2);
        let apps = vec![newer.clone(), older.clone()];
        let key = |a: Option<Arc<UserDeployment>>| a.map(|a| (a.namespace().unwrap_or_default(), a.name_any()));
        let holder = host_holder(&sbs, &host_label("bob", "smith-shop"), lookup(&apps));
        assert_eq!(key(holder), key(Some(older.clone())));
        assert_eq!(
            key(host_holder(&sbs, &host_label("bob-smith", "shop"), lookup(&apps))),
            key(Some(older)),
            "the same answer from either claimant"
        );
        assert_eq!(host_claimants(&sbs, "bob-smith-shop", lookup(&apps)).len(), 2);
        // The other way round when bob's app is the older one.
        let apps = vec![
            app("sandbox-bob", "smith-shop", T1),
            app("sandbox-bob-smith", "shop", T2),
        ];
        assert_eq!(
            host_holder(&sbs, "bob-smith-shop", lookup(&apps)).unwrap().name_any(),
            "smith-shop"
        );
        // Once the holder is gone, the other claimant holds it.
        let apps = vec![newer.clone()];
        assert_eq!(
            key(host_holder(&sbs, "bob-smith-shop", lookup(&apps))),
            key(Some(newer))
        );
    }

    #[test]
    fn ties_break_by_namespace_then_name() {
        let sbs = vec![sandbox("a", "x", T1), sandbox("b", "x-y", T1)];
        let apps = vec![app("sandbox-b", "z", T1), app("sandbox-a", "y-z", T1)];
        assert_eq!(
            host_holder(&sbs, "x-y-z", lookup(&apps))
                .unwrap()
                .namespace()
                .as_deref(),
            Some("sandbox-a")
        );
    }

    #[test]
    fn one_owner_id_one_sandbox() {
        let first = sandbox("first", "bob", T1);
        let second = sandbox("second", "bob", T2);
        let same_time = sandbox("another", "bob", T2);
        let sbs = vec![second.clone(), first.clone(), same_time.clone()];
        assert!(holds_owner_id(&sbs, &first));
        assert!(!holds_owner_id(&sbs, &second));
        assert!(!holds_owner_id(&sbs, &same_time));
        // Between the two newer ones alone, the name decides.
        let two = vec![second.clone(), same_time.clone()];
        assert!(holds_owner_id(&two, &same_time) && !holds_owner_id(&two, &second));
        assert_eq!(owner_of(&sbs, "sandbox-second"), ("owner-conflict", "second".into()));
        assert_eq!(owner_of(&sbs, "sandbox-first"), ("active", "first".into()));
        assert_eq!(owner_of(&sbs, "elsewhere"), ("none", String::new()));
        // The app of the losing sandbox claims no host: the winner's app of that name holds it.
        let apps = vec![app("sandbox-second", "shop", T1), app("sandbox-first", "shop", T2)];
        assert_eq!(
            host_holder(&sbs, "bob-shop", lookup(&apps))
                .unwrap()
                .namespace()
                .as_deref(),
            Some("sandbox-first")
        );
    }

    #[test]
    fn only_a_provisioned_namespace_is_active() {
        let mut pending = (*sandbox("new", "carol", T1)).clone();
        pending.status = None;
        let sbs = vec![Arc::new(pending)];
        assert_eq!(owner_of(&sbs, "sandbox-new"), ("not-provisioned", "new".into()));
        // Of two sandboxes naming one namespace, the one it was provisioned for owns it.
        let owner = sandbox("owner", "dave", T2);
        let mut squatter = (*sandbox("squatter", "eve", T1)).clone();
        squatter.spec.namespace = "sandbox-owner".into();
        squatter.status = None;
        let sbs = vec![Arc::new(squatter), owner.clone()];
        assert_eq!(owner_of(&sbs, "sandbox-owner"), ("active", owner.name_any()));
        let apps = vec![app("sandbox-owner", "shop", T1)];
        assert!(
            host_holder(&sbs, "eve-shop", lookup(&apps)).is_none(),
            "the squatter's id holds nothing"
        );
        assert!(host_holder(&sbs, "dave-shop", lookup(&apps)).is_some());
    }
}
