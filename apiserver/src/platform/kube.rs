//! KUBERNETES_ENABLED=true: templates, sandboxes and deployments are custom resources. One watch
//! per kind feeds an in-memory cache that every read is served from, and the deployments watch also
//! feeds the change stream behind `/api/events`, however many browsers listen. The watches are
//! re-listed every KUBERNETES_RECONCILE_INTERVAL as a safety net against missed events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use crds::{Plan, Template, UserDeployment, UserSandbox};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use super::{AppPod, Change, LogRequest, LogStream, Platform, PodSummary, SandboxInfo};
use crate::config::Config;
use crate::db::User;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::views::EventView;

/// Field manager of the server's writes.
pub const FIELD_MANAGER: &str = "k8s-scheduler-server";
/// Annotation on the UserSandboxes the server creates: the id of the installation (its database)
/// that created it, so that two installations on one cluster never hand out each other's.
pub const INSTALLATION_ANNOTATION: &str = "k8s-scheduler.io/installation";
/// Annotation on the UserSandboxes the server creates: the owner's identity, the hex SHA-256 of
/// issuer + "\n" + subject ([`crate::db::identity_hash`]), never the subject itself.
pub const OWNER_IDENTITY_ANNOTATION: &str = "k8s-scheduler.io/owner-identity";
/// Label on delivered Secrets: a keyed hash of their values ([`values_label`]); a change rolls
/// the pods.
pub const SECRET_HASH_LABEL: &str = "k8s-scheduler.io/values-hash";

/// The key of [`values_label`]: SECRETS_HASH_KEY; else derived from SECRETS_ENCRYPTION_KEY (an
/// HMAC of a fixed label under it, so the label reveals nothing about that key); else random per
/// process start (logged: labels then change at a restart, and the next write of a secret rolls
/// the pods once more).
pub fn values_hash_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use secrecy::ExposeSecret;
    let decode = |name: &str, v: &secrecy::SecretString| -> anyhow::Result<Vec<u8>> {
        base64::engine::general_purpose::STANDARD
            .decode(v.expose_secret().trim())
            .map_err(|_| anyhow::anyhow!("{name} must be base64 (openssl rand -base64 32)"))
    };
    let mut key = [0u8; 32];
    if let Some(k) = &config.secrets_hash_key {
        let bytes = decode("SECRETS_HASH_KEY", k)?;
        anyhow::ensure!(
            bytes.len() == 32,
            "SECRETS_HASH_KEY must decode to 32 bytes, not {}",
            bytes.len()
        );
        key.copy_from_slice(&bytes);
    } else if let Some(k) = &config.secrets_encryption_key {
        let bytes = decode("SECRETS_ENCRYPTION_KEY", k)?;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("SECRETS_ENCRYPTION_KEY: {e}"))?;
        mac.update(b"k8s-scheduler.io/values-hash label key v1");
        key.copy_from_slice(&mac.finalize().into_bytes());
    } else {
        use rand::RngCore;
        rand::rng().fill_bytes(&mut key);
        tracing::warn!(
            "SECRETS_HASH_KEY is not set (nor SECRETS_ENCRYPTION_KEY): the key of the {SECRET_HASH_LABEL} \
             label is random until the next restart; set SECRETS_HASH_KEY (openssl rand -base64 32)"
        );
    }
    Ok(key)
}

/// The value of [`SECRET_HASH_LABEL`] for a Secret holding `data`: HMAC-SHA256 under `key` of
/// every key and value (each followed by a NUL byte, in key order), hex, first 128 bits. Keyed, so
/// that someone who can read labels (but not Secrets) cannot confirm a guessed value by hashing
/// it; deterministic, so that an unchanged content keeps its label and a change shows.
pub fn values_label(key: &[u8; 32], data: &crate::secrets::Values) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    for (k, v) in data {
        mac.update(k.as_bytes());
        mac.update(&[0]);
        mac.update(v.as_bytes());
        mac.update(&[0]);
    }
    mac.finalize().into_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Custom resources through watch caches.
pub struct KubePlatform {
    client: Client,
    config: Arc<Config>,
    deployments: Store<UserDeployment>,
    templates: Store<Template>,
    sandboxes: Store<UserSandbox>,
    tx: broadcast::Sender<Change>,
    views: Views,
    /// This installation's id ([`Platform::set_installation`]).
    installation: std::sync::OnceLock<String>,
    /// Key of the [`SECRET_HASH_LABEL`] ([`values_hash_key`]).
    hash_key: [u8; 32],
}

/// Whose a UserSandbox is, seen from one user of this installation.
enum Ownership {
    /// Made by this installation for this identity.
    Mine,
    /// Without the marks, and its owner is this user by id and verified email: adopt it.
    Adoptable,
    /// Someone else's; why.
    Other(String),
}

/// The JSON view of every cached deployment, by namespace and name, rendered once per change so
/// that listing a sandbox's deployments only joins strings (see docs/benchmarks.md, "API").
type Views = Arc<std::sync::RwLock<HashMap<String, BTreeMap<String, Arc<str>>>>>;

fn index_view(views: &Views, ud: &UserDeployment, deleted: bool) {
    let ns = ud.namespace().unwrap_or_default();
    let mut v = views.write().unwrap_or_else(|e| e.into_inner());
    if deleted {
        if let Some(m) = v.get_mut(&ns) {
            m.remove(&ud.name_any());
            if m.is_empty() {
                v.remove(&ns);
            }
        }
    } else if let Ok(json) = serde_json::to_string(&crate::views::DeploymentView::of(ud)) {
        v.entry(ns).or_default().insert(ud.name_any(), Arc::from(json));
    }
}

impl KubePlatform {
    /// The name of `owner`'s UserSandbox, creating it first if there is none.
    async fn sandbox_name(&self, owner: &User) -> ApiResult<String> {
        match self.user_sandbox(owner) {
            Some(sb) => Ok(sb.name_any()),
            None => {
                self.ensure_sandbox(owner).await?;
                Ok(self.config.namespace_for(&owner.id))
            }
        }
    }

    /// Starts the three watches and waits (up to 30 s) for their first listing.
    pub async fn start(client: Client, config: Arc<Config>, metrics: Metrics) -> anyhow::Result<Arc<KubePlatform>> {
        let (tx, _) = broadcast::channel(4096);
        let views: Views = Default::default();
        let resync = config.kubernetes_reconcile_interval;
        let deployments = spawn_cache(Api::<UserDeployment>::all(client.clone()), resync, metrics.clone(), {
            let tx = tx.clone();
            let views = views.clone();
            move |ud: Arc<UserDeployment>, deleted: bool, initial: bool| {
                index_view(&views, &ud, deleted);
                if initial {
                    return;
                }
                let change = if deleted {
                    Change::Deleted {
                        namespace: ud.namespace().unwrap_or_default(),
                        name: ud.name_any(),
                    }
                } else {
                    Change::Applied(ud)
                };
                let _ = tx.send(change);
            }
        });
        let templates = spawn_cache(
            Api::<Template>::all(client.clone()),
            resync,
            metrics.clone(),
            |_, _, _| {},
        );
        let sandboxes = spawn_cache(Api::<UserSandbox>::all(client.clone()), resync, metrics, |_, _, _| {});
        let synced = async {
            let _ = deployments.wait_until_ready().await;
            let _ = templates.wait_until_ready().await;
            let _ = sandboxes.wait_until_ready().await;
        };
        if tokio::time::timeout(Duration::from_secs(30), synced).await.is_err() {
            tracing::warn!(
                "the watch caches are not filled after 30 s (are the k8s-scheduler CRDs installed?); \
                 /readyz reports not ready until they are"
            );
        }
        let hash_key = values_hash_key(&config)?;
        Ok(Arc::new(KubePlatform {
            hash_key,
            client,
            config,
            deployments,
            templates,
            sandboxes,
            tx,
            views,
            installation: Default::default(),
        }))
    }

    /// The user's own sandbox: the UserSandbox named after the user's namespace (how the server
    /// names them), else one with that namespace (created with kubectl); either only when it is
    /// [`Ownership::Mine`].
    fn user_sandbox(&self, user: &User) -> Option<Arc<UserSandbox>> {
        let ns = self.config.namespace_for(&user.id);
        let mine = |s: &UserSandbox| s.spec.namespace == ns && matches!(self.ownership(s, user), Ownership::Mine);
        self.sandboxes
            .get(&ObjectRef::new(&ns))
            .filter(|s| mine(s))
            .or_else(|| self.sandboxes.find(|s| mine(s)))
    }

    /// Whose `sb` is: the user's only when it carries this installation's id and the user's
    /// identity hash (and names the user as owner). A sandbox without either mark (made before
    /// the marks existed, or with kubectl) is adoptable when its owner is the user by id and by
    /// verified email.
    fn ownership(&self, sb: &UserSandbox, user: &User) -> Ownership {
        let this = self.installation.get().map(String::as_str).unwrap_or("");
        let marks = sb.annotations();
        let installation = marks.get(INSTALLATION_ANNOTATION).map(String::as_str);
        let identity = marks.get(OWNER_IDENTITY_ANNOTATION).map(String::as_str);
        let owner = &sb.spec.owner;
        let owner_email = owner.email.as_deref().unwrap_or("");
        if owner.user_id != user.id {
            return Ownership::Other(format!("its owner is the user id {}", owner.user_id));
        }
        match (installation, identity) {
            (None, None) if !owner_email.is_empty() && owner_email.eq_ignore_ascii_case(&user.email) => {
                Ownership::Adoptable
            }
            (None, None) => Ownership::Other(format!(
                "it carries no owner marks and its owner email ({owner_email:?}) is not your verified email"
            )),
            (Some(i), _) if i != this => Ownership::Other(format!(
                "it was created by another installation of k8s-scheduler (installation {i}; this installation is \
                 {this}) sharing this cluster, or for a database that was replaced"
            )),
            (None, _) => Ownership::Other("it carries no installation mark".into()),
            (_, Some(id)) if id == user.identity() => Ownership::Mine,
            _ => Ownership::Other("it belongs to another identity (issuer and subject) with the same user id".into()),
        }
    }

    /// Takes `sb` (named `name`, found for the user's namespace) if it is the user's, adopting an
    /// unmarked one of theirs; else 409, changing nothing.
    async fn claim(&self, api: &Api<UserSandbox>, sb: &UserSandbox, user: &User) -> ApiResult<()> {
        let name = sb.name_any();
        match self.ownership(sb, user) {
            Ownership::Mine => Ok(()),
            Ownership::Adoptable => {
                let patch = serde_json::json!({
                    "metadata": {
                        "resourceVersion": sb.resource_version(),
                        "annotations": {
                            INSTALLATION_ANNOTATION: self.installation.get(),
                            OWNER_IDENTITY_ANNOTATION: user.identity(),
                        },
                    },
                });
                let pp = kube::api::PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                api.patch(&name, &pp, &kube::api::Patch::Merge(&patch)).await?;
                tracing::info!(user = %user.id, sandbox = %name, "adopted the user's unmarked UserSandbox");
                Ok(())
            }
            Ownership::Other(why) => {
                tracing::warn!(user = %user.id, sandbox = %name, why, "refused a UserSandbox that is not the user's");
                Err(ApiError::Conflict(format!(
                    "the UserSandbox {name} (namespace {}) is not yours: {why}. Nothing was changed. An administrator \
                     must resolve this: delete that UserSandbox if it is stale, or, if it is yours, set its \
                     spec.owner.email to your verified email and remove its {INSTALLATION_ANNOTATION} and \
                     {OWNER_IDENTITY_ANNOTATION} annotations so that this server adopts it",
                    sb.spec.namespace
                )))
            }
        }
    }
}

/// Runs a watch of `api` into a cache, re-listing every `resync`; `on_change(object, deleted,
/// initial)` hears about every added, changed or removed object (`initial`: from the first listing).
fn spawn_cache<K, F>(api: Api<K>, resync: Duration, metrics: Metrics, mut on_change: F) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: FnMut(Arc<K>, bool, bool) + Send + 'static,
{
    let (reader, mut writer) = reflector::store::<K>();
    let store = reader.clone();
    let kind = K::plural(&()).to_string();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let _watch = metrics.watch_started(&kind);
            let stream = watcher::watcher(api.clone(), watcher::Config::default()).default_backoff();
            let mut stream = std::pin::pin!(stream);
            let deadline = tokio::time::sleep(resync);
            let mut deadline = std::pin::pin!(deadline);
            let mut seen: HashSet<ObjectRef<K>> = HashSet::new();
            loop {
                let event = tokio::select! {
                    _ = &mut deadline => break,
                    e = stream.next() => e,
                };
                let event = match event {
                    Some(Ok(e)) => e,
                    Some(Err(e)) => {
                        tracing::warn!(kind, error = %e, "watch failed; retrying with backoff");
                        continue;
                    }
                    None => break,
                };
                match &event {
                    WatchEvent::Init => seen.clear(),
                    WatchEvent::InitApply(o) => {
                        let key = ObjectRef::from_obj(o);
                        let changed = reader
                            .get(&key)
                            .is_none_or(|old| old.resource_version() != o.resource_version());
                        seen.insert(key);
                        if changed {
                            on_change(Arc::new(o.clone()), false, first);
                        }
                    }
                    WatchEvent::InitDone => {
                        for old in reader.state() {
                            if !seen.contains(&ObjectRef::from_obj(old.as_ref())) {
                                on_change(old, true, false);
                            }
                        }
                        first = false;
                    }
                    WatchEvent::Apply(o) => on_change(Arc::new(o.clone()), false, false),
                    WatchEvent::Delete(o) => on_change(Arc::new(o.clone()), true, false),
                }
                writer.apply_watcher_event(&event);
            }
        }
    });
    store
}

impl KubePlatform {
    fn template_api(&self, t: &Template) -> Api<Template> {
        Api::namespaced(self.client.clone(), &t.namespace().unwrap_or_default())
    }
}

/// A template write's outcome: the stored object; or, when the API server refused it as invalid
/// (its schema, CEL rules, a bad name), every cause it gave, by field; or the error, in words that
/// say what to do (a taken name, a change meanwhile, a sandbox not provisioned yet).
fn template_write(written: Result<Template, kube::Error>, t: &Template) -> ApiResult<super::TemplateWrite> {
    match written {
        Ok(stored) => Ok(Ok(Arc::new(stored))),
        Err(kube::Error::Api(s)) if s.code == 422 || (s.code == 400 && s.reason == "BadRequest") => {
            Ok(Err(status_problems(&s)))
        }
        Err(e) if namespace_missing(&e) => Err(ApiError::Unavailable(
            "your sandbox namespace is still being prepared; retry in a few seconds".into(),
        )),
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => Err(ApiError::Conflict(format!(
            "a template named {} exists already in your sandbox; PUT /api/templates/{} replaces it",
            t.name_any(),
            t.name_any()
        ))),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(ApiError::Conflict(format!(
            "the template {} changed meanwhile (another client or GitOps); reload it and try again",
            t.name_any()
        ))),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Err(ApiError::NotFound(format!("template {:?} not found", t.name_any())))
        }
        Err(e) => Err(e.into()),
    }
}

/// The problems of a refused write as the API server lists them: one per cause (`field` as it
/// names it, e.g. `spec.services[0].resources.limits.cpu`), else its whole message.
pub fn status_problems(s: &kube::core::Status) -> Vec<crate::views::FieldProblem> {
    use crate::views::FieldProblem;
    let causes = s.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
    let problems: Vec<FieldProblem> = causes
        .iter()
        .map(|c| {
            let field = c.field.trim_start_matches('.').to_string();
            let message = if c.message.is_empty() {
                c.reason.clone()
            } else {
                c.message.clone()
            };
            FieldProblem::new(field, message)
        })
        .collect();
    if problems.is_empty() {
        vec![FieldProblem::new("", s.message.clone())]
    } else {
        problems
    }
}

fn namespace_missing(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "namespaces"))
}

#[async_trait]
impl Platform for KubePlatform {
    async fn ensure_sandbox(&self, user: &User) -> ApiResult<()> {
        if self.user_sandbox(user).is_some() {
            return Ok(());
        }
        let ns = self.config.namespace_for(&user.id);
        if let Some(why) = self.config.forbidden_sandbox_namespace(&ns) {
            return Err(ApiError::Forbidden(why));
        }
        let Some(installation) = self.installation.get() else {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "the installation id is not set (Platform::set_installation)"
            )));
        };
        let api: Api<UserSandbox> = Api::all(self.client.clone());
        // One named after the namespace (read through: the cache may lag), else one made with
        // kubectl under another name for that namespace.
        let existing = match api.get_opt(&ns).await? {
            Some(sb) => Some(sb),
            None => self.sandboxes.find(|s| s.spec.namespace == ns).map(|s| (*s).clone()),
        };
        if let Some(sb) = existing {
            return self.claim(&api, &sb, user).await;
        }
        let mut labels = self.config.sandbox_labels.0.clone();
        labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
        let sb: UserSandbox = serde_json::from_value(serde_json::json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1",
            "kind": "UserSandbox",
            "metadata": {
                "name": ns,
                "labels": labels,
                "annotations": {
                    INSTALLATION_ANNOTATION: installation,
                    OWNER_IDENTITY_ANNOTATION: user.identity(),
                },
            },
            "spec": {
                "owner": { "userId": user.id, "email": user.email },
                "plan": "free",
                "namespace": ns,
            },
        }))
        .map_err(anyhow::Error::from)?;
        match api
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &sb,
            )
            .await
        {
            Ok(_) => {
                tracing::info!(user = %user.id, "created the user's UserSandbox");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Created meanwhile (another request or replica): take it only if it is ours.
                let sb = api.get(&ns).await?;
                self.claim(&api, &sb, user).await
            }
            Err(e) => Err(e.into()),
        }
    }

    fn set_installation(&self, id: &str) {
        let _ = self.installation.set(id.to_string());
    }

    fn sandbox(&self, user: &User) -> SandboxInfo {
        let ns = self.config.namespace_for(&user.id);
        match self.user_sandbox(user) {
            Some(sb) => SandboxInfo::new(
                sb.name_any(),
                sb.spec.namespace.clone(),
                sb.spec.plan,
                sb.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == crds::conditions::READY && c.status == "True")
                }),
                sb.spec.quota_overrides.as_ref().and_then(|o| o.deployments),
            ),
            None => SandboxInfo::new(ns.clone(), ns, Plan::Free, false, None),
        }
    }

    fn templates(&self, namespace: &str) -> Vec<Arc<Template>> {
        // The controller's rule: what is listed is what runs.
        policy::templates::listed(
            self.templates.state(),
            namespace,
            &self.config.settings.platform_namespace,
            &self.sandboxes(),
        )
    }

    async fn deployments(&self, namespace: &str) -> ApiResult<Vec<Arc<UserDeployment>>> {
        let mut out: Vec<Arc<UserDeployment>> = self
            .deployments
            .state()
            .into_iter()
            .filter(|d| d.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(out)
    }

    async fn count_deployments(&self, namespace: &str) -> ApiResult<usize> {
        // A consistent (quorum) list of names only: the watch cache can lag a create made a
        // moment ago. The sandbox's ResourceQuota (count/userdeployments) is the hard limit.
        let api: Api<UserDeployment> = Api::namespaced(self.client.clone(), namespace);
        let list = api
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("counting deployments in {namespace}: {e}")))?;
        Ok(list.items.len())
    }

    async fn deployment(&self, namespace: &str, name: &str) -> ApiResult<Option<Arc<UserDeployment>>> {
        if let Some(d) = self.deployments.get(&ObjectRef::new(name).within(namespace)) {
            return Ok(Some(d));
        }
        // Not cached (yet): read-your-writes right after a create.
        let api: Api<UserDeployment> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?.map(Arc::new))
    }

    async fn create(&self, ud: UserDeployment) -> ApiResult<Arc<UserDeployment>> {
        let ns = ud.namespace().unwrap_or_default();
        let api: Api<UserDeployment> = Api::namespaced(self.client.clone(), &ns);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api.create(&pp, &ud).await {
            Ok(created) => Ok(Arc::new(created)),
            Err(e) if namespace_missing(&e) => Err(ApiError::Unavailable(
                "your sandbox namespace is still being prepared; retry in a few seconds".into(),
            )),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(ApiError::Conflict(format!(
                "a deployment named {} exists already",
                ud.name_any()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn replace_spec(
        &self,
        current: &UserDeployment,
        spec: crds::UserDeploymentSpec,
    ) -> ApiResult<Arc<UserDeployment>> {
        let ns = current.namespace().unwrap_or_default();
        let api: Api<UserDeployment> = Api::namespaced(self.client.clone(), &ns);
        let mut next = current.clone();
        next.spec = spec;
        next.status = None;
        next.metadata.managed_fields = None;
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api.replace(&current.name_any(), &pp, &next).await {
            Ok(d) => Ok(Arc::new(d)),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(ApiError::Conflict(
                "the deployment changed meanwhile (another client or GitOps); reload and try again".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, namespace: &str, name: &str) -> ApiResult<bool> {
        let api: Api<UserDeployment> = Api::namespaced(self.client.clone(), namespace);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn template(&self, namespace: &str, name: &str) -> ApiResult<Option<Arc<Template>>> {
        let api: Api<Template> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?.map(Arc::new))
    }

    async fn dry_run_template(&self, t: &Template, replace: bool) -> ApiResult<Vec<crate::views::FieldProblem>> {
        let pp = PostParams {
            dry_run: true,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        let written = if replace {
            self.template_api(t).replace(&t.name_any(), &pp, t).await
        } else {
            self.template_api(t).create(&pp, t).await
        };
        match template_write(written, t) {
            Ok(Ok(_)) => Ok(vec![]),
            Ok(Err(problems)) => Ok(problems),
            Err(e) => Err(e),
        }
    }

    async fn create_template(&self, t: Template) -> ApiResult<super::TemplateWrite> {
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        template_write(self.template_api(&t).create(&pp, &t).await, &t)
    }

    async fn replace_template(&self, t: Template) -> ApiResult<super::TemplateWrite> {
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        template_write(self.template_api(&t).replace(&t.name_any(), &pp, &t).await, &t)
    }

    async fn delete_template(&self, namespace: &str, name: &str) -> ApiResult<bool> {
        let api: Api<Template> = Api::namespaced(self.client.clone(), namespace);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn deployments_naming_template(&self, name: &str) -> Vec<Arc<UserDeployment>> {
        // The cache: a scan of every deployment on a rare request (a template's delete or
        // visibility change), where a read-through LIST of every namespace would cost the API
        // server far more. An app created in the last moment may be missed; the controller then
        // reports it TemplateNotFound, which names the template.
        self.deployments
            .state()
            .into_iter()
            .filter(|ud| ud.spec.template_ref.as_ref().is_some_and(|r| r.name == name))
            .collect()
    }

    async fn events(&self, namespace: &str, name: &str) -> ApiResult<Vec<EventView>> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let lp = ListParams::default()
            .fields(&format!(
                "involvedObject.kind=UserDeployment,involvedObject.name={name}"
            ))
            .limit(100);
        let mut events = api.list(&lp).await?.items;
        events.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
        Ok(events
            .into_iter()
            .map(|e| EventView {
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
                count: e.count.unwrap_or(1),
                last_seen: e.last_timestamp.map(|t| t.0.to_string()),
            })
            .collect())
    }

    fn manifests(&self, _ud: &UserDeployment) -> Option<Vec<serde_json::Value>> {
        None
    }

    fn list_json(&self, namespace: &str) -> Option<String> {
        let v = self.views.read().unwrap_or_else(|e| e.into_inner());
        let Some(m) = v.get(namespace) else {
            return Some("[]".into());
        };
        let mut out = String::with_capacity(m.values().map(|j| j.len() + 1).sum::<usize>() + 2);
        out.push('[');
        for (i, j) in m.values().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(j);
        }
        out.push(']');
        Some(out)
    }

    async fn deliver_secrets(
        &self,
        ud: &UserDeployment,
        values: &crate::secrets::Values,
        per_service: &std::collections::BTreeMap<String, crate::secrets::Values>,
        services: &[String],
        roll: bool,
    ) -> ApiResult<bool> {
        if !self.config.settings.cluster_secret_store.is_empty() {
            // External Secrets Operator syncs them from the same Vault/AWS paths.
            return Ok(false);
        }
        if !roll && values.is_empty() && per_service.is_empty() {
            // A new deployment without secret values: nothing to write (nothing to remove yet).
            return Ok(false);
        }
        let ns = ud.namespace().unwrap_or_default();
        let name = ud.name_any();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        // The controller's naming functions: the names its containers read (issue 15 item 16).
        let main = policy::names::secret(&name, ud.spec.secret_name.as_deref());
        let mut wanted: Vec<(String, &crate::secrets::Values)> = vec![(main, values)];
        for svc in services {
            let secret = policy::names::service_secret(&name, svc);
            match per_service.get(svc) {
                Some(v) => wanted.push((secret, v)),
                None => {
                    // No service-scoped values (any more): the optional Secret goes.
                    if let Ok(Some(old)) = api.get_opt(&secret).await
                        && old
                            .metadata
                            .labels
                            .as_ref()
                            .is_some_and(|l| l.contains_key(SECRET_HASH_LABEL))
                    {
                        let _ = api.delete(&secret, &DeleteParams::default()).await;
                    }
                }
            }
        }
        let mut changed = false;
        for (secret_name, data) in wanted {
            let hash = values_label(&self.hash_key, data);
            let existing = api.get_opt(&secret_name).await?;
            let old_hash = existing
                .as_ref()
                .and_then(|s| s.metadata.labels.as_ref()?.get(SECRET_HASH_LABEL).cloned());
            if old_hash.as_deref() == Some(hash.as_str()) {
                continue;
            }
            let secret: Secret = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": secret_name,
                    "namespace": ns,
                    "labels": { SECRET_HASH_LABEL: hash, "app.kubernetes.io/managed-by": FIELD_MANAGER },
                    "ownerReferences": [{
                        "apiVersion": "k8s-scheduler.io/v1alpha1",
                        "kind": "UserDeployment",
                        "name": name,
                        "uid": ud.uid().unwrap_or_default(),
                    }],
                },
                "type": "Opaque",
                "stringData": data,
            }))
            .map_err(anyhow::Error::from)?;
            let pp = kube::api::PatchParams::apply(FIELD_MANAGER).force();
            api.patch(&secret_name, &pp, &kube::api::Patch::Apply(&secret)).await?;
            // A first write is not a change of values that running pods hold.
            changed |= existing.is_some();
        }
        if changed && roll {
            // Read through, and again after a conflict: the controller writes the deployment
            // too (its finalizer right after creation), so the cached copy may be one version
            // behind, and the roll must not fail the secret write for that.
            let api: Api<UserDeployment> = Api::namespaced(self.client.clone(), &ns);
            for attempt in 1..=3 {
                let Some(current) = api.get_opt(&name).await? else {
                    break;
                };
                let mut spec = current.spec.clone();
                spec.restarted_at = Some(format!("secrets-{}", k8s_openapi::jiff::Timestamp::now()));
                match self.replace_spec(&current, spec).await {
                    Err(ApiError::Conflict(_)) if attempt < 3 => continue,
                    other => {
                        other?;
                        break;
                    }
                }
            }
        }
        Ok(changed)
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    async fn service_pods(&self, namespace: &str, deployment: &str, service: &str) -> ApiResult<Vec<PodSummary>> {
        // Read through (no pod cache): a log request is rare next to list calls, and a watch of
        // every pod in every sandbox would cost the server memory it does not otherwise need.
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let selector = format!(
            "{}={deployment},{}={service}",
            policy::build::DEPLOYMENT_LABEL,
            policy::build::SERVICE_LABEL
        );
        let pods = api.list(&ListParams::default().labels(&selector)).await?;
        Ok(pods
            .items
            .into_iter()
            .map(|p| PodSummary {
                name: p.name_any(),
                running: p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"),
                created: p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                deleting: p.metadata.deletion_timestamp.is_some(),
            })
            .collect())
    }

    async fn logs(&self, namespace: &str, pod: &str, request: &LogRequest) -> ApiResult<LogStream> {
        use futures::AsyncReadExt;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let lp = LogParams {
            container: Some(request.container.clone()),
            previous: request.previous,
            tail_lines: Some(request.tail_lines),
            follow: request.follow,
            limit_bytes: Some(request.limit_bytes),
            ..Default::default()
        };
        let reader = match api.log_stream(pod, &lp).await {
            Ok(r) => r,
            // The pod log API's refusals name the container and why: not started yet
            // (ContainerCreating), no previous container, ...: the request is fine, the pod is not
            // there yet.
            Err(kube::Error::Api(s)) if s.code == 400 => {
                return Err(ApiError::Conflict(format!("no log to show yet: {}", s.message)));
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(ApiError::NotFound(format!(
                    "pod {pod} is gone (replaced meanwhile); retry to read its successor's log"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        // Chunks as they arrive (a follow stream must not wait for a full buffer).
        let stream = futures::stream::try_unfold(Box::pin(reader), |mut reader| async move {
            let mut buf = vec![0u8; 16 * 1024];
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((axum::body::Bytes::from(buf), reader)))
        });
        Ok(Box::pin(stream))
    }

    fn has_sandbox(&self, owner: &User) -> bool {
        self.user_sandbox(owner).is_some()
    }

    fn sandboxes(&self) -> policy::templates::Sandboxes {
        let all = self.sandboxes.state();
        policy::templates::Sandboxes::from_sandboxes(all.iter().map(|s| s.as_ref()))
    }

    async fn put_sandbox(
        &self,
        owner: &User,
        plan: Plan,
        members: Vec<crds::SandboxMember>,
        org: Option<&str>,
    ) -> ApiResult<()> {
        // Compared with a fresh read, not the cache: two member changes in a row must not find the
        // first one's state missing from a cache that lags and skip the second.
        let api: Api<UserSandbox> = Api::all(self.client.clone());
        let current = api.get(&self.sandbox_name(owner).await?).await?;
        let label = current.labels().get(policy::templates::ORG_LABEL).map(String::as_str);
        if current.spec.plan == plan && current.spec.members == members && label == org {
            return Ok(());
        }
        // Merge patch of these fields only: the spec's others (quota overrides set by an
        // administrator) stay.
        let patch = serde_json::json!({
            "metadata": { "labels": { policy::templates::ORG_LABEL: org } },
            "spec": { "plan": plan, "members": members },
        });
        let pp = kube::api::PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch(&current.name_any(), &pp, &kube::api::Patch::Merge(&patch))
            .await?;
        tracing::info!(owner = %owner.id, members = members.len(), plan = plan.as_str(), "updated a team's UserSandbox");
        Ok(())
    }

    async fn set_sandbox_plan(&self, owner: &User, plan: Plan) -> ApiResult<()> {
        let api: Api<UserSandbox> = Api::all(self.client.clone());
        let name = self.sandbox_name(owner).await?;
        // A fresh read, like put_sandbox: a cache that lags must not skip a downgrade.
        let current = api.get(&name).await?;
        if current.spec.plan == plan {
            return Ok(());
        }
        let patch = serde_json::json!({ "spec": { "plan": plan } });
        let pp = kube::api::PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch(&name, &pp, &kube::api::Patch::Merge(&patch)).await?;
        tracing::info!(owner = %owner.id, from = current.spec.plan.as_str(), to = plan.as_str(), "billing changed a sandbox's plan");
        Ok(())
    }

    fn usage_snapshot(&self) -> Vec<super::SandboxApps> {
        let mut by_ns: std::collections::HashMap<String, super::SandboxApps> = self
            .sandboxes
            .state()
            .iter()
            .map(|sb| {
                (
                    sb.spec.namespace.clone(),
                    super::SandboxApps {
                        namespace: sb.spec.namespace.clone(),
                        owner: sb.spec.owner.user_id.clone(),
                        org: sb.labels().get(policy::templates::ORG_LABEL).cloned(),
                        apps: vec![],
                    },
                )
            })
            .collect();
        for ud in self.deployments.state() {
            if let Some(s) = ud.metadata.namespace.as_deref().and_then(|ns| by_ns.get_mut(ns)) {
                s.apps.push(ud);
            }
        }
        by_ns.into_values().collect()
    }

    async fn delete_sandbox(&self, owner: &User) -> ApiResult<()> {
        let Some(sb) = self.user_sandbox(owner) else {
            return Ok(());
        };
        let api: Api<UserSandbox> = Api::all(self.client.clone());
        match api.delete(&sb.name_any(), &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn app_pods(&self, namespace: &str, deployment: &str) -> ApiResult<Vec<AppPod>> {
        // Read through, like service_pods: only when a deployment page asks.
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let selector = format!("{}={deployment}", policy::build::DEPLOYMENT_LABEL);
        let pods = api.list(&ListParams::default().labels(&selector)).await?;
        Ok(pods.items.iter().filter_map(app_pod).collect())
    }

    async fn pod_usage(&self) -> crate::usage::Sampled {
        use crate::usage::Sampled;
        // One cluster-wide LIST of the platform's pods' metrics (not per sandbox): its cost does
        // not grow with the number of sandboxes.
        let path = format!(
            "/apis/metrics.k8s.io/v1beta1/pods?labelSelector={}%3D{}",
            policy::build::MANAGED_BY,
            policy::build::MANAGER
        );
        let request = match axum::http::Request::get(&path).body(vec![]) {
            Ok(r) => r,
            Err(e) => return Sampled::Unavailable(format!("building the metrics API request failed: {e}")),
        };
        match self.client.request::<PodMetricsList>(request).await {
            Ok(list) => Sampled::Pods(pod_usage_of(list)),
            Err(e) => Sampled::Unavailable(metrics_unavailable(&e)),
        }
    }

    async fn ready(&self) -> Result<(), String> {
        self.client
            .apiserver_version()
            .await
            .map_err(|e| format!("Kubernetes API: {e}"))?;
        for (kind, ready) in [
            (
                "userdeployments",
                self.deployments.wait_until_ready().now_or_never().is_some(),
            ),
            ("templates", self.templates.wait_until_ready().now_or_never().is_some()),
            (
                "usersandboxes",
                self.sandboxes.wait_until_ready().now_or_never().is_some(),
            ),
        ] {
            if !ready {
                return Err(format!("the {kind} cache is not filled yet (are the CRDs installed?)"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod values_label_tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> crate::secrets::Values {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_label_is_keyed_stable_and_follows_the_values() {
        let data = values(&[("PASSWORD", "hunter2"), ("TOKEN", "t")]);
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let label = values_label(&a, &data);
        assert_eq!(label.len(), 32, "{label}");
        assert!(
            label.chars().all(|c| c.is_ascii_hexdigit()),
            "a valid label value: {label}"
        );
        assert_eq!(label, values_label(&a, &data), "unchanged values keep their label");
        assert_ne!(
            label,
            policy::build::fnv_hash(&["PASSWORD", "hunter2", "TOKEN", "t"]),
            "not the unkeyed hash"
        );
        assert_ne!(label, values_label(&b, &data), "another key, another label");
        // Any change of a value (or key) changes the label, so the pods roll.
        assert_ne!(
            label,
            values_label(&a, &values(&[("PASSWORD", "hunter3"), ("TOKEN", "t")]))
        );
        assert_ne!(label, values_label(&a, &values(&[("PASSWORD", "hunter2")])));
        assert_ne!(
            values_label(&a, &values(&[("A", "bc")])),
            values_label(&a, &values(&[("AB", "c")])),
            "keys and values are delimited"
        );
    }

    #[test]
    fn the_key_comes_from_the_configuration() {
        use base64::Engine;
        let mut config = Config::for_tests("unused.db".into());
        let derived = values_hash_key(&config).unwrap();
        assert_eq!(
            derived,
            values_hash_key(&config).unwrap(),
            "derived from SECRETS_ENCRYPTION_KEY: stable"
        );
        let enc = base64::engine::general_purpose::STANDARD
            .decode(secrecy::ExposeSecret::expose_secret(
                config.secrets_encryption_key.as_ref().unwrap(),
            ))
            .unwrap();
        assert_ne!(derived.to_vec(), enc, "not the encryption key itself");
        config.secrets_hash_key = Some(secrecy::SecretString::from(
            base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
        ));
        assert_eq!(values_hash_key(&config).unwrap(), [9u8; 32]);
        config.secrets_hash_key = None;
        config.secrets_encryption_key = None;
        let (r1, r2) = (values_hash_key(&config).unwrap(), values_hash_key(&config).unwrap());
        assert_ne!(r1, r2, "random without a configured key");
    }
}

/// A pod of the platform as the usage view counts it; None without a service label.
fn app_pod(p: &Pod) -> Option<AppPod> {
    let service = p.labels().get(policy::build::SERVICE_LABEL)?.clone();
    let restarts = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count.max(0) as u32).sum())
        .unwrap_or(0);
    let limits = p
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == service))
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.limits.as_ref());
    let limit = |name: &str| limits.and_then(|l| l.get(name)).map(|q| q.0.clone());
    Some(AppPod {
        restarts,
        cpu_limit: limit("cpu"),
        memory_limit: limit("memory"),
        service,
    })
}

/// `metrics.k8s.io/v1beta1` PodMetricsList: the fields the usage view reads (k8s-openapi has no
/// types for the metrics API).
#[derive(Debug, serde::Deserialize)]
pub struct PodMetricsList {
    #[serde(default)]
    items: Vec<PodMetrics>,
}

#[derive(Debug, serde::Deserialize)]
struct PodMetrics {
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    containers: Vec<ContainerMetrics>,
}

#[derive(Debug, serde::Deserialize)]
struct ContainerMetrics {
    #[serde(default)]
    usage: BTreeMap<String, String>,
}

/// The usage of each pod of an app in `list` (metrics-server copies the pod's labels); pods
/// without the app and service labels, and quantities that do not parse, are left out.
pub fn pod_usage_of(list: PodMetricsList) -> Vec<crate::usage::PodUsage> {
    use crate::usage::{PodUsage, quantity};
    list.items
        .into_iter()
        .filter_map(|pm| {
            let labels = pm.metadata.labels.as_ref()?;
            let deployment = labels.get(policy::build::DEPLOYMENT_LABEL)?.clone();
            let service = labels.get(policy::build::SERVICE_LABEL)?.clone();
            let mut cpu = 0.0;
            let mut memory = 0.0;
            for c in &pm.containers {
                cpu += c.usage.get("cpu").and_then(|q| quantity(q)).unwrap_or(0.0);
                memory += c.usage.get("memory").and_then(|q| quantity(q)).unwrap_or(0.0);
            }
            Some(PodUsage {
                namespace: pm.metadata.namespace.clone()?,
                deployment,
                service,
                cpu_millicores: cpu * 1000.0,
                memory_bytes: memory as u64,
            })
        })
        .collect()
}

/// Why the metrics API gave no usage, in one sentence that says what to do.
pub fn metrics_unavailable(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 404 => {
            "the cluster serves no metrics API (metrics.k8s.io); install metrics-server to see CPU and memory".into()
        }
        kube::Error::Api(s) if s.code == 403 => "the server may not read the metrics API: its ServiceAccount needs \
             list on pods.metrics.k8s.io (the chart's server ClusterRole grants it)"
            .into(),
        kube::Error::Api(s) if s.code == 503 => format!(
            "the cluster's metrics API (metrics.k8s.io) does not answer ({}); check metrics-server",
            s.message
        ),
        other => format!("reading the metrics API (metrics.k8s.io) failed: {other}"),
    }
}
