//! Reconcilers: read → validate → build (pure) → apply (server-side, one field manager) → prune →
//! write status. Only the leader writes: every write goes through [`Context`], which checks.

pub mod deployment;
#[cfg(test)]
mod invariants;
pub mod sandbox;
pub mod status;
pub mod suspend;
pub mod template;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crds::{Template, UserDeployment, UserSandbox};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::child_cache::ChildCache;
use crate::config::Config;
use crate::leader::Leader;
use crate::metrics::{ErrorLabels, Metrics};

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "k8s-scheduler-controller";
/// Finalizer that orders cleanup of a UserDeployment's children.
pub const DEPLOYMENT_FINALIZER: &str = "k8s-scheduler.io/cleanup";

/// Errors of a reconcile. Invalid specs are not errors: they are reported in status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed; retried with backoff.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A step of a reconcile failed at the API: which step, on which object.
    #[error("{step}: {source}")]
    Api {
        /// What was being done, e.g. `apply Deployment sandbox-a/shop-web`.
        step: String,
        /// What the API said.
        #[source]
        source: kube::Error,
    },
    /// This replica is not the leader (any more); nothing was written.
    #[error("not the leader: refusing to write")]
    NotLeader,
    /// A patch tested a value the cache had and the object had moved on; retried shortly.
    #[error("the cached object was out of date; retrying")]
    StaleCache,
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// Short category, used as a metric label.
    pub fn category(&self) -> &'static str {
        match (self, self.kube().map(api_code)) {
            (_, Some(Some(409))) => "conflict",
            (_, Some(Some(422 | 400))) => "invalid",
            (_, Some(Some(403))) => "forbidden",
            (_, Some(_)) => "api",
            (Error::NotLeader, _) => "not_leader",
            (Error::StaleCache, _) => "conflict",
            (Error::Finalizer(_), _) => "finalizer",
            (Error::Kube(_) | Error::Api { .. }, None) => "api",
        }
    }

    /// The API's error, if the API failed.
    pub fn kube(&self) -> Option<&kube::Error> {
        match self {
            Error::Kube(e) | Error::Api { source: e, .. } => Some(e),
            _ => None,
        }
    }

    /// Whether the API answered 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        self.kube().and_then(api_code) == Some(404)
    }
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Configuration.
    pub config: Config,
    /// Whether this replica may write.
    pub leader: Leader,
    /// Metrics.
    pub metrics: Metrics,
    /// Event recorder.
    pub recorder: Recorder,
    /// The UserSandboxes this controller manages (`SANDBOX_SELECTOR`; cluster-scoped, small).
    pub sandboxes: Store<UserSandbox>,
    /// Every UserSandbox, whatever `SANDBOX_SELECTOR` says: owner ids, namespaces and hosts are
    /// contested across all of them (see [`crate::conflict`]).
    pub all_sandboxes: Store<UserSandbox>,
    /// Every watched UserDeployment (hosts are contested across sandboxes).
    pub deployments: Store<UserDeployment>,
    /// UserDeployments refused for a conflict (host or name) and the channel that reconciles
    /// them again when another UserDeployment goes (it may have held what they claim).
    pub conflicts: Conflicts,
    /// Every watched Template.
    pub templates: Store<Template>,
    /// What was last applied to each child.
    pub children: Arc<ChildCache>,
    /// New UserDeployments whose children are applied and whose first status waits (see
    /// `deployment::FIRST_STATUS_GRACE`), with when they were first applied. Entries live for a
    /// few seconds: removed with the first status write.
    pub first_status: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The last status this process wrote to a UserDeployment, while the cache has not seen that
    /// write yet: the `resourceVersion` the cache then had, and a fingerprint of the status. A
    /// reconcile that runs before the watch delivers the write (another child event a few ms
    /// later) compares with this instead of the stale cached status, and writes nothing when it
    /// is the same (`hack/bench` found 31% of new apps written twice, 20 ms apart, without it).
    /// How long a note lives: see [`UnseenWrites`].
    pub written_status: UnseenWrites,
    /// The apps last decided to be suspended for their sandbox's deployment limit (see
    /// [`suspend`]).
    pub suspended: suspend::Noted,
}

/// UserDeployments that lost a host or name to an older one, to reconcile again when things
/// change; a small set (conflicts are rare), filled and emptied by the reconciles.
pub struct Conflicts {
    losers: std::sync::Mutex<std::collections::HashSet<ObjectRef<UserDeployment>>>,
    retrigger: futures::channel::mpsc::UnboundedSender<ObjectRef<UserDeployment>>,
}

impl Conflicts {
    /// A new set whose retriggers go to `retrigger` (the UserDeployment controller's
    /// `reconcile_on` stream).
    pub fn new(retrigger: futures::channel::mpsc::UnboundedSender<ObjectRef<UserDeployment>>) -> Self {
        Conflicts {
            losers: Default::default(),
            retrigger,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<ObjectRef<UserDeployment>>> {
        self.losers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that `r` was refused for a conflict.
    pub fn lost(&self, r: ObjectRef<UserDeployment>) {
        self.lock().insert(r);
    }

    /// Notes that `r` holds what it claims (or is gone).
    pub fn settled(&self, r: &ObjectRef<UserDeployment>) {
        let mut losers = self.lock();
        if losers.remove(r) {
            losers.shrink_to_fit();
        }
    }

    /// Whether `r` is noted as refused.
    pub fn is_loser(&self, r: &ObjectRef<UserDeployment>) -> bool {
        self.lock().contains(r)
    }

    /// Reconciles `r` again soon.
    pub fn retrigger(&self, r: ObjectRef<UserDeployment>) {
        let _ = self.retrigger.unbounded_send(r);
    }

    /// Reconciles every refused UserDeployment again (something they may have lost to went).
    pub fn retrigger_losers(&self) {
        for r in self.lock().iter() {
            let _ = self.retrigger.unbounded_send(r.clone());
        }
    }
}

/// Writes this process made that the cache has not shown yet, by object key: the
/// `resourceVersion` the cached object had when the write was made, a fingerprint of what was
/// written, and when. A note goes when a reconcile sees a newer version in the cache, and in any
/// case a minute after the write (the watch delivers a write within milliseconds; a Ready app may
/// never be reconciled again, and a note per app would grow with the number of apps).
#[derive(Default)]
pub struct UnseenWrites(std::sync::Mutex<Notes>);

type Note = (String, u64, std::time::Instant);

#[derive(Default)]
struct Notes {
    by_key: std::collections::HashMap<String, Note>,
    swept: Option<std::time::Instant>,
}

/// How long a note is kept at most.
const NOTE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

impl UnseenWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, Notes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a write made on top of the cached object at `cached_version`.
    pub fn note(&self, key: String, cached_version: Option<&str>, fingerprint: u64) {
        let now = std::time::Instant::now();
        let mut notes = self.lock();
        // Sweep at most every few seconds: one pass over the notes of the last minute.
        if notes.swept.is_none_or(|t| now.duration_since(t) > NOTE_LIFETIME / 10) {
            notes
                .by_key
                .retain(|_, (_, _, at)| now.duration_since(*at) < NOTE_LIFETIME);
            notes.by_key.shrink_to_fit();
            notes.swept = Some(now);
        }
        notes
            .by_key
            .insert(key, (cached_version.unwrap_or_default().to_string(), fingerprint, now));
    }

    /// The fingerprint of the last write to `key` if the cache still shows `cached_version`, the
    /// version the write was made on; once the cache shows another version the note is dropped.
    pub fn unseen(&self, key: &str, cached_version: Option<&str>) -> Option<u64> {
        let mut notes = self.lock();
        let (version, fingerprint, at) = notes.by_key.get(key)?;
        if cached_version.unwrap_or_default() == version && at.elapsed() < NOTE_LIFETIME {
            return Some(*fingerprint);
        }
        notes.by_key.remove(key);
        None
    }

    /// Drops the note of `key` (the object is going away).
    pub fn forget(&self, key: &str) {
        self.lock().by_key.remove(key);
    }

    /// Number of notes.
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The caches a [`Context`] reads.
pub struct Stores {
    /// See [`Context::sandboxes`].
    pub sandboxes: Store<UserSandbox>,
    /// See [`Context::all_sandboxes`].
    pub all_sandboxes: Store<UserSandbox>,
    /// See [`Context::templates`].
    pub templates: Store<Template>,
    /// See [`Context::deployments`].
    pub deployments: Store<UserDeployment>,
}

impl Context {
    /// Whether this controller manages `sb` (it matches `SANDBOX_SELECTOR`).
    pub fn manages(&self, sb: &UserSandbox) -> bool {
        self.config.sandbox_selector.is_empty() || self.sandboxes.get(&ObjectRef::from_obj(sb)).is_some()
    }

    /// A new context.
    pub fn new(
        client: Client,
        config: Config,
        leader: Leader,
        metrics: Metrics,
        stores: Stores,
        children: Arc<ChildCache>,
        conflicts: Conflicts,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(config.identity.clone()),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Arc::new(Context {
            client,
            config,
            leader,
            metrics,
            recorder,
            sandboxes: stores.sandboxes,
            all_sandboxes: stores.all_sandboxes,
            deployments: stores.deployments,
            templates: stores.templates,
            children,
            conflicts,
            first_status: Default::default(),
            written_status: Default::default(),
            suspended: Default::default(),
        })
    }

    /// Fails unless this replica may write now.
    pub fn ensure_leader(&self) -> Result<(), Error> {
        if self.leader.is_leader() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    /// The one place every write of the controller goes through: refused unless this replica
    /// leads, counted in `writes{kind="<parent_kind>"}`, and a failure names `step` (what was
    /// being done to which object). `call` is a future not yet polled: nothing is sent unless
    /// the check passes.
    pub async fn write<T>(
        &self,
        parent_kind: &str,
        step: impl std::fmt::Display,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        self.ensure_leader()?;
        self.metrics.writes.get_or_create(&Metrics::kind(parent_kind)).inc();
        call.await.map_err(|source| Error::Api {
            step: step.to_string(),
            source,
        })
    }

    /// Server-side applies `obj` under the one field manager (forcing ownership of our fields)
    /// and returns the object as stored.
    pub async fn apply<K>(&self, parent_kind: &str, obj: &K) -> Result<K, Error>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
        K::Scope: ApiScope,
    {
        let api: Api<K> = K::Scope::api(self.client.clone(), obj.namespace().as_deref());
        let name = obj.name_any();
        let step = format!(
            "apply {} {}",
            K::kind(&()),
            object_path(obj.namespace().as_deref(), &name)
        );
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.write(parent_kind, step, api.patch(&name, &params, &Patch::Apply(obj)))
            .await
    }

    /// Applies a child unless the cache says the same content is already in place untouched.
    /// Returns the stored object when it was applied, `None` when skipped.
    pub async fn apply_child<K>(&self, parent_kind: &str, obj: &K) -> Result<Option<K>, Error>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + 'static,
        K::Scope: ApiScope,
    {
        let hash = crate::child_cache::content_hash(&serde_json::to_string(obj).unwrap_or_default());
        let key = crate::child_cache::key_of(obj);
        if self.children.unchanged(&key, hash) {
            return Ok(None);
        }
        let stored = self.apply(parent_kind, obj).await?;
        let rollout = (&stored as &dyn std::any::Any)
            .downcast_ref::<k8s_openapi::api::apps::v1::Deployment>()
            .map(crate::child_cache::RolloutState::of);
        self.children.applied(&stored, hash, rollout);
        Ok(Some(stored))
    }

    /// Deletes the objects of kind `K` in `namespace` matching `selector` whose names are not in
    /// `keep` (orphans). Returns how many were deleted.
    pub async fn prune<K>(
        &self,
        parent_kind: &str,
        namespace: &str,
        selector: &str,
        keep: &[String],
    ) -> Result<usize, Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
    {
        self.prune_in(
            parent_kind,
            &Api::<K>::namespaced(self.client.clone(), namespace),
            selector,
            keep,
        )
        .await
    }

    /// [`Context::prune`] through a given Api (also for dynamic kinds). A kind the cluster does
    /// not serve (e.g. ExternalSecret without the External Secrets Operator) has nothing to prune.
    pub async fn prune_in<K>(
        &self,
        parent_kind: &str,
        api: &Api<K>,
        selector: &str,
        keep: &[String],
    ) -> Result<usize, Error>
    where
        K: Resource + Clone + Debug + DeserializeOwned,
    {
        let kind = api.resource_url().rsplit('/').next().unwrap_or_default().to_string();
        let list = match api.list_metadata(&ListParams::default().labels(selector)).await {
            Ok(list) => list,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(0),
            Err(source) => {
                return Err(Error::Api {
                    step: format!("list {kind} ({selector})"),
                    source,
                });
            }
        };
        let mut deleted = 0;
        for obj in list.items {
            let name = obj.name_any();
            if keep.contains(&name) || obj.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let step = format!(
                "delete {kind} {}",
                object_path(obj.metadata.namespace.as_deref(), &name)
            );
            match self
                .write(parent_kind, step, api.delete(&name, &DeleteParams::background()))
                .await
            {
                Ok(_) => deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// Publishes a Warning event about `obj` (best effort: failures are logged).
    pub async fn warn<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, note: String) {
        self.event(obj, EventType::Warning, reason, note).await
    }

    /// Publishes an event about `obj` (best effort: failures are logged).
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, note: String) {
        if !self.leader.is_leader() {
            return;
        }
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::debug!(error = %e, "could not publish event");
        }
    }

    /// Runs one reconcile, counting it and timing it for the metrics.
    /// The reconcile runs in a span `reconcile{kind, object}`, so everything it logs names the
    /// object (kube-runtime's own span covers only the creation of the future, not its run).
    pub async fn timed(
        &self,
        kind: &str,
        object: String,
        reconcile: impl Future<Output = Result<Action, Error>>,
    ) -> Result<Action, Error> {
        use tracing::Instrument as _;
        let started = std::time::Instant::now();
        let result = reconcile
            .instrument(tracing::info_span!("reconcile", kind, object = %object))
            .await;
        let labels = Metrics::kind(kind);
        self.metrics.reconciles.get_or_create(&labels).inc();
        self.metrics
            .duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Records a failed reconcile and chooses the retry.
    pub fn on_error(&self, kind: &str, name: &str, error: &Error) -> Action {
        self.metrics
            .errors
            .get_or_create(&ErrorLabels {
                kind: kind.into(),
                category: error.category().into(),
            })
            .inc();
        match error {
            Error::NotLeader => Action::requeue(Duration::from_secs(5)),
            e if e.category() == "conflict" => Action::requeue(Duration::from_millis(200)),
            Error::StaleCache => Action::requeue(Duration::from_millis(200)),
            _ => {
                tracing::warn!(kind, name, error = %error, category = error.category(), "reconcile failed; retrying");
                Action::requeue(Duration::from_secs(5))
            }
        }
    }
}

/// `namespace/name`, or `name` for a cluster-scoped object.
pub fn object_path(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Picks `Api::namespaced` or `Api::all` by a resource's scope.
pub trait ApiScope {
    /// The Api of `K` for an object in `namespace`.
    fn api<K: Resource<Scope = Self, DynamicType = ()>>(client: Client, namespace: Option<&str>) -> Api<K>
    where
        Self: Sized;
}

impl ApiScope for k8s_openapi::NamespaceResourceScope {
    fn api<K: Resource<Scope = Self, DynamicType = ()>>(client: Client, namespace: Option<&str>) -> Api<K> {
        Api::namespaced(client, namespace.unwrap_or("default"))
    }
}

impl ApiScope for k8s_openapi::ClusterResourceScope {
    fn api<K: Resource<Scope = Self, DynamicType = ()>>(client: Client, _namespace: Option<&str>) -> Api<K> {
        Api::all(client)
    }
}

/// Parameters of status writes (merge patches under our field manager).
pub fn status_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Builds a condition, keeping `lastTransitionTime` from `previous` when the status did not change.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    condition_at(previous, type_, status, reason, message, generation, &now)
}

/// [`condition`] at time `now` (the pure form: `now` is the transition time if the status changed).
pub fn condition_at(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Whether two condition lists say the same, ignoring transition times.
pub fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

#[cfg(test)]
mod tests {
    use super::UnseenWrites;

    #[test]
    fn a_write_counts_until_the_cache_shows_another_version() {
        let notes = UnseenWrites::default();
        assert_eq!(notes.unseen("ns/app", Some("10")), None);
        notes.note("ns/app".into(), Some("10"), 7);
        // The cache still has the version the write was made on: the write is what counts.
        assert_eq!(notes.unseen("ns/app", Some("10")), Some(7));
        assert_eq!(notes.unseen("ns/other", Some("10")), None);
        // The watch delivered the write (or a later change): the cache is right again.
        assert_eq!(notes.unseen("ns/app", Some("11")), None);
        assert!(notes.is_empty(), "the note is dropped, not kept for every object");
        assert_eq!(notes.unseen("ns/app", Some("10")), None);
    }

    #[test]
    fn forgetting_drops_the_note() {
        let notes = UnseenWrites::default();
        notes.note("ns/app".into(), None, 1);
        assert_eq!(notes.unseen("ns/app", None), Some(1));
        notes.forget("ns/app");
        assert_eq!(notes.len(), 0);
    }
}
