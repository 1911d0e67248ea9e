//! What the controller last applied to each child, kept current by the child watches, so that a
//! reconcile skips server-side applies that would change nothing.
//!
//! An entry says: "I applied content with hash H and the API answered version V". The watches
//! update the version they see. A child is re-applied when its desired hash changes, when its
//! observed version differs from the one applied (someone else edited it), or when it is deleted
//! or unknown (e.g. after a restart: everything is applied once, as no-ops). Deployments are
//! compared by `metadata.generation`, so status updates do not count as edits; their rollout state
//! is kept too, so readiness needs no extra read. HTTPRoutes are compared by generation too (the
//! gateway controller writes their status), and a route's refusal by its Gateway is kept (see
//! [`ChildCache::note_refusal`]).
//!
//! Memory: at 10,000 UserDeployments the table holds some 40,000 children, so an entry is a few
//! fixed-size integers: one table per kind keyed by a 64-bit hash of namespace and name, content
//! and versions as 64-bit hashes (a collision among 10^5 keys has a probability around 10^-10).
//! After a watch restarts (a relist), children the relist no longer shows are dropped, so a child
//! deleted while the watch was down is applied again.
//!
//! The cache also counts the children of each UserDeployment (by their
//! `k8s-scheduler.io/deployment` label), so that the first reconcile of a new UserDeployment can
//! tell that no orphan exists without listing every child kind.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};

/// Kinds of children tracked: the UserDeployment's child kinds.
use crate::children::{BY_GENERATION, KINDS};
const N_KINDS: usize = KINDS.len();

/// Identity of a child: its kind's table and a hash of namespace and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildKey {
    kind: usize,
    id: u64,
}

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
    /// A `ReplicaFailure` condition is True: the ReplicaSet could not create a pod (refused by
    /// Pod Security admission, the quota, the limit range).
    pub replica_failure: bool,
}

impl RolloutState {
    /// Reads the rollout state of a Deployment.
    pub fn of(d: &Deployment) -> Self {
        let s = d.status.as_ref();
        RolloutState {
            desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            generation: d.metadata.generation.unwrap_or(0),
            observed_generation: s.and_then(|s| s.observed_generation).unwrap_or(0),
            replicas: s.and_then(|s| s.replicas).unwrap_or(0),
            updated: s.and_then(|s| s.updated_replicas).unwrap_or(0),
            available: s.and_then(|s| s.available_replicas).unwrap_or(0),
            ready: s.and_then(|s| s.ready_replicas).unwrap_or(0),
            replica_failure: s
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "ReplicaFailure" && c.status == "True")),
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

/// 0 stands for "none" in the hashed fields.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    applied_hash: u64,
    applied_version: u64,
    observed_version: u64,
    /// Relist epoch in which the watch last listed this child (or it was applied).
    epoch: u32,
    /// Hash of namespace and owning UserDeployment name (0: none). 32 bits: a collision only
    /// makes two owners' counts larger, which costs a needless prune, never a missed one.
    owner: u32,
}

#[derive(Default)]
struct Table {
    entries: HashMap<u64, Entry>,
    rollouts: HashMap<u64, RolloutState>,
    /// Routes a parent refused, and why (few: only refused ones have an entry).
    refusals: HashMap<u64, String>,
    epoch: u32,
    /// The watch has listed this kind at least once.
    synced: bool,
}

/// The tables of every kind, and the number of children per owner (all kinds together).
#[derive(Default)]
struct Tables {
    kinds: [Table; N_KINDS],
    owners: HashMap<u32, u32>,
}

impl Table {
    /// The entry of `id`, created (and counted for `owner`) when new.
    fn entry<'a>(&'a mut self, owners: &mut HashMap<u32, u32>, id: u64, owner: u32) -> &'a mut Entry {
        self.entries.entry(id).or_insert_with(|| {
            if owner != 0 {
                *owners.entry(owner).or_default() += 1;
            }
            Entry {
                owner,
                ..Entry::default()
            }
        })
    }

    fn uncount(owners: &mut HashMap<u32, u32>, owner: u32) {
        if owner == 0 {
            return;
        }
        if let Some(n) = owners.get_mut(&owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                owners.remove(&owner);
            }
        }
    }

    fn remove(&mut self, owners: &mut HashMap<u32, u32>, id: u64) {
        if let Some(e) = self.entries.remove(&id) {
            Self::uncount(owners, e.owner);
        }
        self.rollouts.remove(&id);
        self.refusals.remove(&id);
    }
}

/// The cache; cheap to share behind an `Arc`.
#[derive(Default)]
pub struct ChildCache {
    tables: Mutex<Tables>,
}

fn hash64(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    // 0 means "none".
    h.finish().max(1)
}

/// Hash of a child's desired content, as compared by [`ChildCache::unchanged`].
pub fn content_hash(serialized: &str) -> u64 {
    hash64(&[serialized])
}

/// The version a child is compared by: generation for Deployments and HTTPRoutes,
/// resourceVersion otherwise.
fn version_of<K: Resource<DynamicType = ()>>(obj: &K) -> u64 {
    if KINDS
        .iter()
        .position(|k| *k == K::kind(&()))
        .is_some_and(|i| BY_GENERATION[i])
    {
        obj.meta().generation.map(|g| hash64(&[&g.to_string()])).unwrap_or(0)
    } else {
        obj.meta()
            .resource_version
            .as_deref()
            .map(|v| hash64(&[v]))
            .unwrap_or(0)
    }
}

fn owner_of<K: Resource<DynamicType = ()>>(obj: &K) -> u32 {
    match obj.labels().get(policy::build::DEPLOYMENT_LABEL) {
        Some(owner) => owner_id(obj.meta().namespace.as_deref().unwrap_or_default(), owner),
        None => 0,
    }
}

fn owner_id(namespace: &str, user_deployment: &str) -> u32 {
    (hash64(&[namespace, user_deployment]) >> 32).max(1) as u32
}

/// The key of a child object.
pub fn key_of<K: Resource<DynamicType = ()>>(obj: &K) -> ChildKey {
    let kind = K::kind(&());
    ChildKey {
        kind: KINDS.iter().position(|k| *k == kind).unwrap_or(0),
        id: hash64(&[obj.meta().namespace.as_deref().unwrap_or_default(), &obj.name_any()]),
    }
}

fn tracked<K: Resource<DynamicType = ()>>() -> bool {
    KINDS.contains(&K::kind(&()).as_ref())
}

impl ChildCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether applying content `hash` to the child `key` would change nothing.
    pub fn unchanged(&self, key: &ChildKey, hash: u64) -> bool {
        self.lock().kinds[key.kind].entries.get(&key.id).is_some_and(|e| {
            e.applied_hash == hash && e.applied_version != 0 && e.applied_version == e.observed_version
        })
    }

    /// Records what was applied and the object the API returned.
    pub fn applied<K: Resource<DynamicType = ()>>(&self, stored: &K, hash: u64, rollout: Option<RolloutState>) {
        if !tracked::<K>() {
            return;
        }
        let key = key_of(stored);
        let version = version_of(stored);
        let owner = owner_of(stored);
        let mut tables = self.lock();
        let Tables { kinds, owners } = &mut *tables;
        let table = &mut kinds[key.kind];
        let epoch = table.epoch;
        let e = table.entry(owners, key.id, owner);
        e.applied_hash = hash;
        e.applied_version = version;
        e.observed_version = version;
        e.epoch = epoch;
        if let Some(r) = rollout {
            table.rollouts.insert(key.id, r);
        }
    }

    /// Notes whether a parent refused the route `obj` (from the HTTPRoute watch, before
    /// [`ChildCache::observe`]); `None` clears it.
    pub fn note_refusal<K: Resource<DynamicType = ()>>(&self, obj: &K, refusal: Option<String>) {
        if !tracked::<K>() {
            return;
        }
        let key = key_of(obj);
        let mut tables = self.lock();
        let refusals = &mut tables.kinds[key.kind].refusals;
        match refusal {
            Some(why) => {
                refusals.insert(key.id, why);
            }
            None => {
                refusals.remove(&key.id);
            }
        }
    }

    /// Why a parent refused the route `key`, as last seen.
    pub fn refusal(&self, key: &ChildKey) -> Option<String> {
        self.lock().kinds[key.kind].refusals.get(&key.id).cloned()
    }

    /// Marks kind `K` as one no watch lists (the cluster does not serve it): it has no children
    /// to count, and [`ChildCache::count_children`] does not wait for its list.
    pub fn unwatched<K: Resource<DynamicType = ()>>(&self) {
        if let Some(kind) = KINDS.iter().position(|k| *k == K::kind(&())) {
            self.lock().kinds[kind].synced = true;
        }
    }

    /// Rollout state of a Deployment, as last seen.
    pub fn rollout(&self, key: &ChildKey) -> Option<RolloutState> {
        self.lock().kinds[key.kind].rollouts.get(&key.id).copied()
    }

    /// Feeds a watch event of a child kind.
    pub fn observe<K: Resource<DynamicType = ()>>(
        &self,
        event: &Event<K>,
        rollout: impl Fn(&K) -> Option<RolloutState>,
    ) {
        if !tracked::<K>() {
            return;
        }
        let kind = KINDS.iter().position(|k| *k == K::kind(&())).unwrap_or(0);
        let mut tables = self.lock();
        let Tables { kinds, owners } = &mut *tables;
        let table = &mut kinds[kind];
        match event {
            Event::Apply(obj) | Event::InitApply(obj) => {
                let id = key_of(obj).id;
                let epoch = table.epoch;
                let e = table.entry(owners, id, owner_of(obj));
                e.observed_version = version_of(obj);
                e.epoch = epoch;
                if let Some(r) = rollout(obj) {
                    table.rollouts.insert(id, r);
                }
            }
            Event::Delete(obj) => {
                table.remove(owners, key_of(obj).id);
            }
            // A (re)list starts: what it does not show by its end is gone.
            Event::Init => table.epoch = table.epoch.wrapping_add(1),
            Event::InitDone => {
                let epoch = table.epoch;
                let Table {
                    entries,
                    rollouts,
                    refusals,
                    ..
                } = table;
                entries.retain(|_, e| {
                    let keep = e.epoch == epoch;
                    if !keep {
                        Table::uncount(owners, e.owner);
                    }
                    keep
                });
                rollouts.retain(|id, _| entries.contains_key(id));
                refusals.retain(|id, _| entries.contains_key(id));
                entries.shrink_to_fit();
                rollouts.shrink_to_fit();
                owners.shrink_to_fit();
                table.synced = true;
            }
        }
    }

    /// How many children of the UserDeployment `name` in `namespace` exist, of the kinds tracked,
    /// or `None` while a child watch has not listed its kind yet (the count would be short).
    pub fn count_children(&self, namespace: &str, name: &str) -> Option<usize> {
        let owner = owner_id(namespace, name);
        let tables = self.lock();
        tables
            .kinds
            .iter()
            .all(|t| t.synced)
            .then(|| tables.owners.get(&owner).copied().unwrap_or(0) as usize)
    }

    /// Number of children tracked.
    pub fn len(&self) -> usize {
        self.lock().kinds.iter().map(|t| t.entries.len()).sum()
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
        assert!(!cache.unchanged(&key, 1), "unknown child is applied");
        cache.applied(&svc("5"), 1, None);
        assert!(cache.unchanged(&key, 1));
        assert!(!cache.unchanged(&key, 2), "new desired content is applied");
        cache.observe(&Event::Apply(svc("5")), |_| None);
        assert!(cache.unchanged(&key, 1), "our own write seen through the watch");
        cache.observe(&Event::Apply(svc("6")), |_| None);
        assert!(!cache.unchanged(&key, 1), "someone else edited it");
        cache.applied(&svc("7"), 1, None);
        cache.observe(&Event::Delete(svc("7")), |_| None);
        assert!(!cache.unchanged(&key, 1), "deleted: applied again");
    }

    #[test]
    fn same_name_in_another_kind_or_namespace_is_another_child() {
        let cache = ChildCache::default();
        cache.applied(&svc("5"), 1, None);
        let mut other_ns = svc("5");
        other_ns.metadata.namespace = Some("ns2".into());
        assert!(!cache.unchanged(&key_of(&other_ns), 1));
        let mut d = Deployment::default();
        d.metadata.name = Some("a-web".into());
        d.metadata.namespace = Some("ns".into());
        assert!(!cache.unchanged(&key_of(&d), 1));
    }

    #[test]
    fn a_relist_drops_children_deleted_while_the_watch_was_down() {
        let cache = ChildCache::default();
        let mut gone = svc("5");
        gone.metadata.name = Some("gone".into());
        cache.applied(&svc("5"), 1, None);
        cache.applied(&gone, 1, None);
        cache.observe(&Event::<Service>::Init, |_| None);
        cache.observe(&Event::InitApply(svc("5")), |_| None);
        cache.observe(&Event::<Service>::InitDone, |_| None);
        assert!(cache.unchanged(&key_of(&svc("5")), 1), "still listed");
        assert!(
            !cache.unchanged(&key_of(&gone), 1),
            "not listed any more: applied again"
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn counts_the_children_of_each_user_deployment() {
        let cache = ChildCache::default();
        let labelled = |name: &str, owner: &str| {
            let mut s = svc("1");
            s.metadata.name = Some(name.into());
            s.metadata.labels = Some([(policy::build::DEPLOYMENT_LABEL.to_string(), owner.to_string())].into());
            s
        };
        assert_eq!(cache.count_children("ns", "a"), None, "not listed yet");
        for kind in 0..KINDS.len() {
            cache.lock().kinds[kind].synced = true;
        }
        cache.applied(&labelled("a-web", "a"), 1, None);
        cache.observe(&Event::Apply(labelled("a-web", "a")), |_| None);
        cache.observe(&Event::Apply(labelled("a-old", "a")), |_| None);
        cache.observe(&Event::Apply(labelled("b-web", "b")), |_| None);
        assert_eq!(cache.count_children("ns", "a"), Some(2));
        assert_eq!(cache.count_children("ns2", "a"), Some(0));
        cache.observe(&Event::Delete(labelled("a-old", "a")), |_| None);
        assert_eq!(cache.count_children("ns", "a"), Some(1));
        cache.observe(&Event::<Service>::Init, |_| None);
        cache.observe(&Event::InitApply(labelled("b-web", "b")), |_| None);
        cache.observe(&Event::<Service>::InitDone, |_| None);
        assert_eq!(cache.count_children("ns", "a"), Some(0), "gone in the relist");
        assert_eq!(cache.count_children("ns", "b"), Some(1));
    }

    #[test]
    fn routes_compare_generation_and_keep_their_refusal() {
        use crate::gateway::HTTPRoute;
        let cache = ChildCache::default();
        let mut r = HTTPRoute::new("shop", Default::default());
        r.metadata.namespace = Some("ns".into());
        r.metadata.generation = Some(1);
        r.metadata.resource_version = Some("10".into());
        cache.applied(&r, 3, None);
        r.metadata.resource_version = Some("11".into());
        cache.note_refusal(&r, Some("Gateway gw does not accept the route".into()));
        cache.observe(&Event::Apply(r.clone()), |_| None);
        assert!(
            cache.unchanged(&key_of(&r), 3),
            "the gateway's status write is not an edit"
        );
        assert_eq!(
            cache.refusal(&key_of(&r)).as_deref(),
            Some("Gateway gw does not accept the route")
        );
        assert_eq!(
            cache.refusal(&key_of(&svc("1"))),
            None,
            "another kind's child of that name"
        );
        cache.note_refusal(&r, None);
        assert_eq!(cache.refusal(&key_of(&r)), None);
        cache.note_refusal(&r, Some("again".into()));
        cache.observe(&Event::Delete(r.clone()), |_| None);
        assert_eq!(cache.refusal(&key_of(&r)), None, "gone with the route");
    }

    #[test]
    fn an_unwatched_kind_does_not_hold_up_counting() {
        use crate::gateway::HTTPRoute;
        let cache = ChildCache::default();
        for kind in KINDS.iter().filter(|k| **k != "HTTPRoute") {
            let i = KINDS.iter().position(|k| k == kind).unwrap();
            cache.lock().kinds[i].synced = true;
        }
        assert_eq!(cache.count_children("ns", "a"), None, "HTTPRoutes not listed yet");
        cache.unwatched::<HTTPRoute>();
        assert_eq!(cache.count_children("ns", "a"), Some(0));
    }

    #[test]
    fn deployments_compare_generation_not_status() {
        let cache = ChildCache::default();
        let mut d = Deployment::default();
        d.metadata.name = Some("a-web".into());
        d.metadata.namespace = Some("ns".into());
        d.metadata.generation = Some(2);
        d.metadata.resource_version = Some("10".into());
        cache.applied(&d, 7, Some(RolloutState::of(&d)));
        d.metadata.resource_version = Some("11".into());
        cache.observe(&Event::Apply(d.clone()), |d| Some(RolloutState::of(d)));
        assert!(cache.unchanged(&key_of(&d), 7), "a status update is not an edit");
        d.metadata.generation = Some(3);
        cache.observe(&Event::Apply(d.clone()), |d| Some(RolloutState::of(d)));
        assert!(!cache.unchanged(&key_of(&d), 7), "a spec edit is");
        assert_eq!(cache.rollout(&key_of(&d)).map(|r| r.generation), Some(3));
    }
}
