//! KUBERNETES_ENABLED=false: the API works without a cluster. Deployments are kept in the
//! database; their child objects are rendered with the controller's validate and build steps
//! (the `policy` crate) and shown; their status is Pending with reason `KubernetesDisabled`. The catalog is the
//! built-in templates of `examples/`. Nothing runs, so there are no pods or logs: the log route
//! answers 409 ([`super::LOGS_NEED_A_CLUSTER`], the trait's default).
//! Templates are only the built-in ones: writing one answers 409
//! ([`super::TEMPLATES_NEED_A_CLUSTER`], the trait's default), while validating one works (the
//! controller's rules, without the cluster's dry run).

use std::sync::Arc;

use async_trait::async_trait;
use crds::{DeploymentPhase, Plan, Template, UserDeployment, UserDeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use tokio::sync::broadcast;

use super::{Change, Platform, SandboxInfo};
use crate::config::Config;
use crate::db::{Db, User};
use crate::error::{ApiError, ApiResult};
use crate::views::EventView;

/// Condition reason of every deployment without Kubernetes.
pub const KUBERNETES_DISABLED: &str = "KubernetesDisabled";

/// The built-in catalog (the example templates, in the platform namespace).
const BUILT_IN: &[&str] = &[
    include_str!("../../../examples/20-template-hello-web.yaml"),
    include_str!("../../../examples/21-template-guestbook.yaml"),
];

/// Deployments in the database, nothing in a cluster.
pub struct OfflinePlatform {
    db: Db,
    config: Arc<Config>,
    templates: Vec<Arc<Template>>,
    tx: broadcast::Sender<Change>,
}

impl OfflinePlatform {
    /// The offline platform over `db`.
    pub fn new(db: Db, config: Arc<Config>) -> anyhow::Result<OfflinePlatform> {
        let mut templates = vec![];
        for doc in BUILT_IN {
            let mut t: Template = serde_yaml::from_str(doc)?;
            t.metadata.namespace = Some(config.settings.platform_namespace.clone());
            let problems = policy::validate::validate_template(&t.spec, &config.settings);
            t.status = Some(crds::TemplateStatus {
                valid: problems.is_empty(),
                reasons: problems,
                ..Default::default()
            });
            templates.push(Arc::new(t));
        }
        let (tx, _) = broadcast::channel(1024);
        Ok(OfflinePlatform {
            db,
            config,
            templates,
            tx,
        })
    }

    fn decode(&self, manifest: &str) -> ApiResult<Arc<UserDeployment>> {
        let ud: UserDeployment = serde_json::from_str(manifest)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored deployment is not readable: {e}")))?;
        Ok(Arc::new(ud))
    }

    fn template_for(&self, ud: &UserDeployment) -> Option<&Template> {
        let r = ud.spec.template_ref.as_ref()?;
        let own = ud.namespace().unwrap_or_default();
        let none = policy::templates::Sandboxes::default();
        policy::templates::resolve(r, &own, &self.config.settings.platform_namespace, &none, |ns, name| {
            self.templates
                .iter()
                .find(|t| t.namespace().as_deref() == Some(ns) && t.name_any() == name)
        })
        .map(|t| t.as_ref())
    }
}

fn pending_status(generation: i64) -> UserDeploymentStatus {
    UserDeploymentStatus {
        phase: DeploymentPhase::Pending,
        observed_generation: Some(generation),
        conditions: vec![Condition {
            type_: crds::conditions::READY.into(),
            status: "False".into(),
            reason: KUBERNETES_DISABLED.into(),
            message: "KUBERNETES_ENABLED=false: the deployment is stored and rendered but not run".into(),
            observed_generation: Some(generation),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
        }],
        ..Default::default()
    }
}

#[async_trait]
impl Platform for OfflinePlatform {
    async fn ensure_sandbox(&self, user: &User) -> ApiResult<()> {
        // No UserSandbox without Kubernetes, but the same refusal as when creating one.
        match self
            .config
            .forbidden_sandbox_namespace(&self.config.namespace_for(&user.id))
        {
            Some(why) => Err(ApiError::Forbidden(why)),
            None => Ok(()),
        }
    }

    fn sandbox(&self, user: &User) -> SandboxInfo {
        SandboxInfo::new(
            user.id.clone(),
            self.config.namespace_for(&user.id),
            Plan::Free,
            true,
            None,
        )
    }

    fn templates(&self, namespace: &str) -> Vec<Arc<Template>> {
        // The built-in templates live in the platform namespace: the controller's visibility rule.
        policy::templates::listed(
            self.templates.iter().cloned(),
            namespace,
            &self.config.settings.platform_namespace,
            &policy::templates::Sandboxes::default(),
        )
    }

    async fn deployments(&self, namespace: &str) -> ApiResult<Vec<Arc<UserDeployment>>> {
        let rows = self.db.list_offline_deployments(namespace).await?;
        rows.iter().map(|m| self.decode(m)).collect()
    }

    async fn deployment(&self, namespace: &str, name: &str) -> ApiResult<Option<Arc<UserDeployment>>> {
        Ok(self
            .deployments(namespace)
            .await?
            .into_iter()
            .find(|d| d.name_any() == name))
    }

    async fn create(&self, mut ud: UserDeployment) -> ApiResult<Arc<UserDeployment>> {
        ud.metadata.generation = Some(1);
        ud.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        ud.metadata.uid = Some(crate::auth::random_token(12));
        ud.status = Some(pending_status(1));
        let ns = ud.namespace().unwrap_or_default();
        let manifest = serde_json::to_string(&ud).map_err(anyhow::Error::from)?;
        if !self
            .db
            .insert_offline_deployment(&ns, &ud.name_any(), &manifest)
            .await?
        {
            return Err(ApiError::Conflict(format!(
                "a deployment named {} exists already",
                ud.name_any()
            )));
        }
        let ud = Arc::new(ud);
        let _ = self.tx.send(Change::Applied(ud.clone()));
        Ok(ud)
    }

    async fn replace_spec(
        &self,
        current: &UserDeployment,
        spec: crds::UserDeploymentSpec,
    ) -> ApiResult<Arc<UserDeployment>> {
        let mut ud = current.clone();
        let generation = ud.metadata.generation.unwrap_or(1) + 1;
        ud.spec = spec;
        ud.metadata.generation = Some(generation);
        ud.status = Some(pending_status(generation));
        let manifest = serde_json::to_string(&ud).map_err(anyhow::Error::from)?;
        let ns = ud.namespace().unwrap_or_default();
        if !self
            .db
            .update_offline_deployment(&ns, &ud.name_any(), &manifest)
            .await?
        {
            return Err(ApiError::NotFound(format!("deployment {} not found", ud.name_any())));
        }
        let ud = Arc::new(ud);
        let _ = self.tx.send(Change::Applied(ud.clone()));
        Ok(ud)
    }

    async fn delete(&self, namespace: &str, name: &str) -> ApiResult<bool> {
        let gone = self.db.delete_offline_deployment(namespace, name).await?;
        if gone {
            let _ = self.tx.send(Change::Deleted {
                namespace: namespace.into(),
                name: name.into(),
            });
        }
        Ok(gone)
    }

    async fn events(&self, _namespace: &str, _name: &str) -> ApiResult<Vec<EventView>> {
        Ok(vec![])
    }

    fn manifests(&self, ud: &UserDeployment) -> Option<Vec<serde_json::Value>> {
        let ns = ud.namespace().unwrap_or_default();
        let user_id = self.config.user_for_namespace(&ns)?;
        let template = self.template_for(ud).map(|t| &t.spec);
        let vd = match policy::validate::validate_deployment(ud, template, &user_id, &self.config.settings) {
            Ok(vd) => vd,
            Err(invalid) => return Some(vec![serde_json::json!({ "invalid": invalid.message })]),
        };
        let c = policy::build::deployment::build(&vd, &self.config.settings, &policy::BuildSettings::default());
        let mut out = vec![];
        let mut push = |v: Result<serde_json::Value, serde_json::Error>| {
            if let Ok(v) = v {
                out.push(v)
            }
        };
        c.config_maps.iter().for_each(|o| push(serde_json::to_value(o)));
        c.deployments.iter().for_each(|o| push(serde_json::to_value(o)));
        c.services.iter().for_each(|o| push(serde_json::to_value(o)));
        c.ingress.iter().for_each(|o| push(serde_json::to_value(o)));
        c.network_policy.iter().for_each(|o| push(serde_json::to_value(o)));
        c.external_secrets.iter().for_each(|o| push(serde_json::to_value(o)));
        Some(out)
    }

    async fn deliver_secrets(
        &self,
        _ud: &UserDeployment,
        _values: &crate::secrets::Values,
        _per_service: &std::collections::BTreeMap<String, crate::secrets::Values>,
        _services: &[String],
        _roll: bool,
    ) -> ApiResult<bool> {
        // Nothing runs without Kubernetes: the values stay in the secret store.
        Ok(false)
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    async fn ready(&self) -> Result<(), String> {
        self.db.ping().await.map_err(|e| format!("database: {e}"))
    }
}
