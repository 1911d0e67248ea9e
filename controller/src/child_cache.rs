//! What the controller last applied to each child, kept current by the child watches, so that a
//! reconcile skips server-side applies that would change nothing.
//!
//! An entry says: "I applied content with hash H and the API answered version V". The watches
//! update the version they see. A child is re-applied when its desired hash changes, when its
//! observed version differs from the one applied (someone else edited it), or when it is deleted
//! or unknown (e.g. after a restart: everything is applied once, as no-ops). Deployments are
//! compared by `metadata.generation`, so status updates do not count as edits; their rollout state
//! is kept too, so readiness needs no extra read. Only a few small fields per child are stored,
//! never the objects.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};

/// Identity of a child: kind, namespace, name.
pub type ChildKey = (&'static str, String, String);

/// Rollout state of a Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RolloutState {
    /// `spec.replicas`.
    pub desired: i32,
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// `status.replicas`.
    pub replicas: i32,
    /// `status.updatedReplicas`.
    pub updated: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
}

impl RolloutState {
    /// Reads the rollout state of a Deployment.
    pub fn of(d: &Deployment) -> Self {
        let s = d.status.clone().unwrap_or_default();
        RolloutState {
            desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            generation: d.metadata.generation.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            replicas: s.replicas.unwrap_or(0),
            updated: s.updated_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            ready: s.ready_replicas.unwrap_or(0),
        }
    }

    /// The current spec is rolled out and every pod is available.
    pub fn available(&self) -> bool {
        self.observed_generation >= self.generation
            && self.updated >= self.desired
            && self.available >= self.desired
            && self.replicas <= self.desired
    }
}

#[derive(Debug, Clone, Default)]
struct Entry {
    applied_hash: Option<String>,
    applied_version: Option<String>,
    observed_version: Option<String>,
    rollout: Option<RolloutState>,
}

/// The cache; cheap to share behind an `Arc`.
#[derive(Default)]
pub struct ChildCache {
    entries: Mutex<HashMap<ChildKey, Entry>>,
}

/// The version a child is compared by: generation for Deployments, resourceVersion otherwise.
pub fn version_of<K: Resource<DynamicType = ()>>(obj: &K) -> Option<String> {
    if K::kind(&()) == "Deployment" {
        obj.meta().generation.map(|g| g.to_string())
    } else {
        obj.resource_version()
    }
}

/// The key of a child object.
pub fn key_of<K: Resource<DynamicType = ()>>(obj: &K) -> ChildKey {
    (kind_str::<K>(), obj.namespace().unwrap_or_default(), obj.name_any())
}

fn kind_str<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Deployment" => "Deployment",
        "Service" => "Service",
        "ConfigMap" => "ConfigMap",
        "Ingress" => "Ingress",
        "NetworkPolicy" => "NetworkPolicy",
        _ => "Other",
    }
}

impl ChildCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChildKey, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether applying content `hash` to the child `key` would change nothing.
    pub fn unchanged(&self, key: &ChildKey, hash: &str) -> bool {
        self.lock().get(key).is_some_and(|e| {
            e.applied_hash.as_deref() == Some(hash)
                && e.applied_version.is_some()
                && e.applied_version == e.observed_version
        })
    }

    /// Records what was applied and the object the API returned.
    pub fn applied<K: Resource<DynamicType = ()>>(&self, stored: &K, hash: &str, rollout: Option<RolloutState>) {
        let version = version_of(stored);
        let mut map = self.lock();
        let e = map.entry(key_of(stored)).or_default();
        e.applied_hash = Some(hash.to_string());
        e.applied_version = version.clone();
        e.observed_version = version;
        if rollout.is_some() {
            e.rollout = rollout;
        }
    }

    /// Rollout state of a Deployment, as last seen.
    pub fn rollout(&self, key: &ChildKey) -> Option<RolloutState> {
        self.lock().get(key).and_then(|e| e.rollout)
    }

    /// Feeds a watch event of a child kind.
    pub fn observe<K: Resource<DynamicType = ()>>(
        &self,
        event: &Event<K>,
        rollout: impl Fn(&K) -> Option<RolloutState>,
    ) {
        match event {
            Event::Apply(obj) | Event::InitApply(obj) => {
                let mut map = self.lock();
                let e = map.entry(key_of(obj)).or_default();
                e.observed_version = version_of(obj);
                if let Some(r) = rollout(obj) {
                    e.rollout = Some(r);
                }
            }
            Event::Delete(obj) => {
                self.lock().remove(&key_of(obj));
            }
            Event::Init | Event::InitDone => {}
        }
    }

    /// Forgets every child of one UserDeployment (after its deletion).
    pub fn forget(&self, namespace: &str, prefix: &str) {
        self.lock()
            .retain(|k, _| !(k.1 == namespace && k.2.starts_with(prefix)));
    }

    /// Number of children tracked.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::ObjectMeta;

    fn svc(rv: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("a-web".into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn skips_only_when_nothing_changed() {
        let cache = ChildCache::default();
        let key = key_of(&svc("1"));
        assert!(!cache.unchanged(&key, "h1"), "unknown child is applied");
        cache.applied(&svc("5"), "h1", None);
        assert!(cache.unchanged(&key, "h1"));
        assert!(!cache.unchanged(&key, "h2"), "new desired content is applied");
        cache.observe(&Event::Apply(svc("5")), |_| None);
        assert!(cache.unchanged(&key, "h1"), "our own write seen through the watch");
        cache.observe(&Event::Apply(svc("6")), |_| None);
        assert!(!cache.unchanged(&key, "h1"), "someone else edited it");
        cache.applied(&svc("7"), "h1", None);
        cache.observe(&Event::Delete(svc("7")), |_| None);
        assert!(!cache.unchanged(&key, "h1"), "deleted: applied again");
    }

    #[test]
    fn deployments_compare_generation_not_status() {
        let cache = ChildCache::default();
        let mut d = Deployment::default();
        d.metadata.name = Some("a-web".into());
        d.metadata.namespace = Some("ns".into());
        d.metadata.generation = Some(2);
        d.metadata.resource_version = Some("10".into());
        cache.applied(&d, "h", Some(RolloutState::of(&d)));
        d.metadata.resource_version = Some("11".into());
        cache.observe(&Event::Apply(d.clone()), |d| Some(RolloutState::of(d)));
        assert!(cache.unchanged(&key_of(&d), "h"), "a status update is not an edit");
        d.metadata.generation = Some(3);
        cache.observe(&Event::Apply(d.clone()), |d| Some(RolloutState::of(d)));
        assert!(!cache.unchanged(&key_of(&d), "h"), "a spec edit is");
    }
}
