//! Where templates, sandboxes and deployments live, behind one trait with two implementations:
//! - [`kube::KubePlatform`] (KUBERNETES_ENABLED=true): custom resources, read from watch caches,
//!   written with the Kubernetes API; the controller does the rest.
//! - [`offline::OfflinePlatform`] (KUBERNETES_ENABLED=false): deployments kept in the database,
//!   templates from the built-in catalog, children rendered with the controller's build step, and
//!   status Pending with reason `KubernetesDisabled`.
//!
//! Callers pass the namespace of the signed-in user; nothing here takes a namespace from a body.

pub mod kube;
pub mod offline;

use std::sync::Arc;

use async_trait::async_trait;
use crds::{Plan, Template, UserDeployment};
use tokio::sync::broadcast;

use crate::db::User;
use crate::error::ApiResult;
use crate::views::EventView;

/// A change to a deployment, as streamed to browsers.
#[derive(Clone, Debug)]
pub enum Change {
    /// Created or changed (spec or status).
    Applied(Arc<UserDeployment>),
    /// Gone.
    Deleted {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

impl Change {
    /// Namespace of the changed deployment.
    pub fn namespace(&self) -> String {
        match self {
            Change::Applied(ud) => ::kube::ResourceExt::namespace(ud.as_ref()).unwrap_or_default(),
            Change::Deleted { namespace, .. } => namespace.clone(),
        }
    }
}

/// The user's sandbox as the API shows it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    /// Name of the UserSandbox.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Plan: free, business or enterprise.
    #[schema(value_type = String)]
    pub plan: Plan,
    /// Whether the controller has provisioned it.
    pub ready: bool,
    /// Most deployments the plan allows (absent: unlimited).
    pub deployment_limit: Option<i32>,
}

/// A sandbox and its apps as usage billing sees them ([`Platform::usage_snapshot`]).
#[derive(Clone, Debug)]
pub struct SandboxApps {
    /// Its namespace.
    pub namespace: String,
    /// Its owner's id (a person's, or a team's).
    pub owner: String,
    /// Its organization (a team's sandbox), from the organization label.
    pub org: Option<String>,
    /// Its apps as the controller last reported them.
    pub apps: Vec<Arc<UserDeployment>>,
}

impl SandboxInfo {
    /// A sandbox view; the limit comes from the plan unless the sandbox overrides it.
    pub fn new(name: String, namespace: String, plan: Plan, ready: bool, override_limit: Option<i32>) -> SandboxInfo {
        let deployment_limit = plan.deployment_limit(override_limit);
        SandboxInfo {
            name,
            namespace,
            plan,
            ready,
            deployment_limit,
        }
    }
}

/// A pod of one service of an app, as the log route chooses among them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSummary {
    /// Its name.
    pub name: String,
    /// Whether it is Running (phase).
    pub running: bool,
    /// When it was created.
    pub created: Option<k8s_openapi::jiff::Timestamp>,
    /// Whether it is being deleted (an old pod of a rollout).
    pub deleting: bool,
}

/// A pod of an app, as its usage view counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPod {
    /// Its service (`k8s-scheduler.io/service`).
    pub service: String,
    /// Restarts of its containers, summed.
    pub restarts: u32,
    /// The service container's CPU limit (a quantity), if any.
    pub cpu_limit: Option<String>,
    /// The service container's memory limit (a quantity), if any.
    pub memory_limit: Option<String>,
}

/// What a log request asks of the Kubernetes pod log API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRequest {
    /// The container: the service's name.
    pub container: String,
    /// The previous (terminated) container's log.
    pub previous: bool,
    /// Lines from the end of the log.
    pub tail_lines: i64,
    /// Keep the stream open for new lines.
    pub follow: bool,
    /// Most bytes Kubernetes sends (`limitBytes`).
    pub limit_bytes: i64,
}

/// Log output as the pod log API sends it: byte chunks, not split into lines.
pub type LogStream = futures::stream::BoxStream<'static, std::io::Result<axum::body::Bytes>>;

/// Why a server without Kubernetes has no logs.
pub const LOGS_NEED_A_CLUSTER: &str = "logs need a cluster: this server runs with KUBERNETES_ENABLED=false, \
     so deployments are stored and rendered but never run, and there are no pods whose logs could be shown";

/// Why a server without Kubernetes cannot write templates.
pub const TEMPLATES_NEED_A_CLUSTER: &str = "writing templates needs a cluster: this server runs with \
     KUBERNETES_ENABLED=false, where the catalog is the built-in templates only (templates are Template \
     custom resources); POST /api/templates/validate still checks one with the controller's rules";

/// The outcome of a template write the cluster may refuse as invalid: the stored object, or every
/// problem the API server named (schema, CEL rules), by field.
pub type TemplateWrite = Result<Arc<Template>, Vec<crate::views::FieldProblem>>;

/// Templates, sandboxes and deployments.
#[async_trait]
pub trait Platform: Send + Sync {
    /// Creates the user's sandbox when it does not exist (first sign-in); 409 when a sandbox of
    /// that name belongs to another identity or installation, 403 when the user's namespace would
    /// be a system or the platform's namespace.
    async fn ensure_sandbox(&self, user: &User) -> ApiResult<()>;
    /// Tells the platform this installation's id (from the database, once at start), which marks
    /// the sandboxes it creates.
    fn set_installation(&self, _id: &str) {}
    /// The user's sandbox.
    fn sandbox(&self, user: &User) -> SandboxInfo;
    /// Templates visible from `namespace`: its own and the platform's public ones.
    fn templates(&self, namespace: &str) -> Vec<Arc<Template>>;
    /// Deployments of a namespace, by name.
    async fn deployments(&self, namespace: &str) -> ApiResult<Vec<Arc<UserDeployment>>>;
    /// How many deployments a namespace has now, for the plan's limit on creates: read through
    /// to the source of truth, so a create right after another one counts it (a watch cache may
    /// not have seen it yet).
    async fn count_deployments(&self, namespace: &str) -> ApiResult<usize> {
        Ok(self.deployments(namespace).await?.len())
    }
    /// One deployment.
    async fn deployment(&self, namespace: &str, name: &str) -> ApiResult<Option<Arc<UserDeployment>>>;
    /// Creates a deployment (already validated); 409 when the name is taken.
    async fn create(&self, ud: UserDeployment) -> ApiResult<Arc<UserDeployment>>;
    /// Replaces the spec of a deployment (already validated).
    async fn replace_spec(
        &self,
        current: &UserDeployment,
        spec: crds::UserDeploymentSpec,
    ) -> ApiResult<Arc<UserDeployment>>;
    /// Deletes a deployment; false when there is none.
    async fn delete(&self, namespace: &str, name: &str) -> ApiResult<bool>;
    /// Recent events of a deployment.
    async fn events(&self, namespace: &str, name: &str) -> ApiResult<Vec<EventView>>;
    /// The JSON array of a namespace's deployment views, pre-rendered (None: build it from
    /// [`Platform::deployments`]).
    fn list_json(&self, _namespace: &str) -> Option<String> {
        None
    }
    /// Child objects as the controller would build them (offline only).
    fn manifests(&self, ud: &UserDeployment) -> Option<Vec<serde_json::Value>>;
    /// Changes to all deployments (callers filter by namespace).
    fn subscribe(&self) -> broadcast::Receiver<Change>;
    /// Delivers a deployment's merged secret values to its pods: the Secret `<name>-secrets`
    /// (`spec.secretName`) and one `<name>-<service>-secrets` per service with service-scoped
    /// values, owned by the UserDeployment. When the values changed and `roll` is set, the pods
    /// are restarted. Returns whether anything changed.
    async fn deliver_secrets(
        &self,
        ud: &UserDeployment,
        values: &crate::secrets::Values,
        per_service: &std::collections::BTreeMap<String, crate::secrets::Values>,
        services: &[String],
        roll: bool,
    ) -> ApiResult<bool>;
    /// The pods of service `service` of deployment `deployment` (by the builder's labels,
    /// `policy::build::DEPLOYMENT_LABEL` and `SERVICE_LABEL`). Without a cluster (the default,
    /// which the offline platform keeps): 409, [`LOGS_NEED_A_CLUSTER`].
    async fn service_pods(&self, _namespace: &str, _deployment: &str, _service: &str) -> ApiResult<Vec<PodSummary>> {
        Err(crate::error::ApiError::Conflict(LOGS_NEED_A_CLUSTER.into()))
    }
    /// The log of a container of pod `pod`, streamed as it comes. Without a cluster: 409.
    async fn logs(&self, _namespace: &str, _pod: &str, _request: &LogRequest) -> ApiResult<LogStream> {
        Err(crate::error::ApiError::Conflict(LOGS_NEED_A_CLUSTER.into()))
    }
    /// Whether `owner` has a sandbox (cached; without a cluster: always).
    fn has_sandbox(&self, _owner: &User) -> bool {
        true
    }
    /// Creates `owner`'s sandbox if needed and sets its plan, members and organization (a
    /// team's: the controller binds the members' roles in its namespace, and the organization
    /// label decides who sees its `org` templates). Writes nothing when they are as asked.
    async fn put_sandbox(
        &self,
        _owner: &User,
        _plan: Plan,
        _members: Vec<crds::SandboxMember>,
        _org: Option<&str>,
    ) -> ApiResult<()> {
        Ok(())
    }
    /// Sets the plan of `owner`'s sandbox (billing, for a person without an organization),
    /// creating the sandbox if needed; the controller then adjusts its quota and suspends or
    /// resumes apps. Writes nothing when the plan is as asked.
    async fn set_sandbox_plan(&self, _owner: &User, _plan: Plan) -> ApiResult<()> {
        Ok(())
    }
    /// Every sandbox with its apps, for usage billing (without a cluster: none).
    fn usage_snapshot(&self) -> Vec<SandboxApps> {
        vec![]
    }
    /// The sandboxes as the template visibility rule sees them (owners, members, organizations);
    /// without a cluster none, so only a sandbox's own and the platform's templates are visible.
    fn sandboxes(&self) -> policy::templates::Sandboxes {
        policy::templates::Sandboxes::default()
    }
    /// Deletes `owner`'s sandbox (a deleted team's), with its namespace and apps.
    async fn delete_sandbox(&self, _owner: &User) -> ApiResult<()> {
        Ok(())
    }
    /// The pods of app `deployment` in `namespace` (restarts, limits). Without a cluster: none.
    async fn app_pods(&self, _namespace: &str, _deployment: &str) -> ApiResult<Vec<AppPod>> {
        Ok(vec![])
    }
    /// The CPU and memory of the platform's pods in every sandbox, from the cluster's metrics API.
    async fn pod_usage(&self) -> crate::usage::Sampled {
        crate::usage::Sampled::Unavailable(
            "the server runs without Kubernetes (KUBERNETES_ENABLED=false): no CPU or memory to show".into(),
        )
    }
    /// Template `name` of `namespace`, read through to the source of truth (a write needs its
    /// current version; the watch cache may lag a write made a moment ago).
    async fn template(&self, namespace: &str, name: &str) -> ApiResult<Option<Arc<Template>>> {
        Ok(self.templates(namespace).into_iter().find(|t| {
            ::kube::ResourceExt::namespace(t.as_ref()).as_deref() == Some(namespace)
                && ::kube::ResourceExt::name_any(t.as_ref()) == name
        }))
    }
    /// What the cluster says of storing `t` (already validated by the controller's rules): a
    /// server-side dry run of its create (`replace` false) or of its replace (`replace` true, `t`
    /// carrying the current resourceVersion), so that the CRD's schema and CEL rules answer too.
    /// Every problem it names, by field; none without a cluster (nothing more to ask).
    async fn dry_run_template(&self, _t: &Template, _replace: bool) -> ApiResult<Vec<crate::views::FieldProblem>> {
        Ok(vec![])
    }
    /// Creates a Template (already validated); 409 when the name is taken. Without a cluster:
    /// 409, [`TEMPLATES_NEED_A_CLUSTER`].
    async fn create_template(&self, _t: Template) -> ApiResult<TemplateWrite> {
        Err(crate::error::ApiError::Conflict(TEMPLATES_NEED_A_CLUSTER.into()))
    }
    /// Replaces a Template (already validated; `t` carries the resourceVersion it was read at, so
    /// a change made meanwhile is a 409). Without a cluster: 409.
    async fn replace_template(&self, _t: Template) -> ApiResult<TemplateWrite> {
        Err(crate::error::ApiError::Conflict(TEMPLATES_NEED_A_CLUSTER.into()))
    }
    /// Deletes a Template; false when there is none. Without a cluster: 409.
    async fn delete_template(&self, _namespace: &str, _name: &str) -> ApiResult<bool> {
        Err(crate::error::ApiError::Conflict(TEMPLATES_NEED_A_CLUSTER.into()))
    }
    /// Every deployment, in any namespace, whose `templateRef` names a template called `name`
    /// (callers resolve each reference to see whether it means theirs). Without a cluster: none
    /// (no template can be written there, so none can be in use).
    fn deployments_naming_template(&self, _name: &str) -> Vec<Arc<UserDeployment>> {
        vec![]
    }
    /// Whether the backing store answers.
    async fn ready(&self) -> Result<(), String>;
}
