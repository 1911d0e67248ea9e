//! UserSandbox → Namespace, ResourceQuota, LimitRange, NetworkPolicies, default ServiceAccount.

use std::sync::Arc;
use std::time::Duration;

use crds::conditions::{DEGRADED, READY, reasons};
use crds::sandbox::SandboxUsage;
use crds::{UserSandbox, UserSandboxStatus};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Context, Error, condition, same_conditions, status_params};
use crate::build::{self, MANAGED_BY, MANAGER, SANDBOX_LABEL};
use crate::metrics::Metrics;

const KIND: &str = "UserSandbox";

/// Reconciles one UserSandbox.
pub async fn reconcile(sb: Arc<UserSandbox>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.timed(KIND, reconcile_inner(&sb, &ctx)).await
}

/// Retry policy for failed sandbox reconciles.
pub fn error_policy(sb: Arc<UserSandbox>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.on_error(KIND, &sb.name_any(), error)
}

async fn reconcile_inner(sb: &UserSandbox, ctx: &Context) -> Result<Action, Error> {
    ctx.ensure_leader()?;
    if sb.metadata.deletion_timestamp.is_some() {
        // Children carry owner references: the garbage collector removes the namespace.
        return Ok(Action::await_change());
    }
    let name = sb.name_any();
    let ns_name = &sb.spec.namespace;
    let generation = sb.metadata.generation;
    let previous = sb.status.clone().unwrap_or_default();

    // Never adopt a namespace that belongs to someone else.
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    if let Some(existing) = namespaces.get_metadata_opt(ns_name).await? {
        let owner = existing.labels().get(SANDBOX_LABEL);
        if owner != Some(&name) {
            let message = match owner {
                Some(other) => format!("namespace {ns_name} belongs to sandbox {other}"),
                None => format!("namespace {ns_name} already exists and is not managed by k8s-scheduler"),
            };
            ctx.warn(sb, reasons::NAMESPACE_CONFLICT, message.clone()).await;
            let status = UserSandboxStatus {
                namespace: None,
                observed_generation: generation,
                usage: None,
                conditions: vec![
                    condition(
                        &previous.conditions,
                        READY,
                        false,
                        reasons::NAMESPACE_CONFLICT,
                        message.clone(),
                        generation,
                    ),
                    condition(
                        &previous.conditions,
                        DEGRADED,
                        true,
                        reasons::NAMESPACE_CONFLICT,
                        message,
                        generation,
                    ),
                ],
            };
            write_status(ctx, sb, &previous, status).await?;
            return Ok(Action::await_change());
        }
    }

    let children = build::sandbox::build(sb, &ctx.config);
    ctx.apply(KIND, &children.namespace).await?;
    let quota = ctx.apply(KIND, &children.quota).await?;
    ctx.apply(KIND, &children.limit_range).await?;
    let keep: Vec<String> = children.network_policies.iter().map(|p| p.name_any()).collect();
    for policy in &children.network_policies {
        ctx.apply(KIND, policy).await?;
    }
    ctx.prune::<NetworkPolicy>(
        KIND,
        ns_name,
        &format!("{MANAGED_BY}={MANAGER},{SANDBOX_LABEL}={name}"),
        &keep,
    )
    .await?;
    ctx.apply(KIND, &children.service_account).await?;
    if let Some(rb) = &children.server_role_binding {
        ctx.apply(KIND, rb).await?;
    }

    let status = UserSandboxStatus {
        namespace: Some(ns_name.clone()),
        observed_generation: generation,
        usage: Some(usage(&quota)),
        conditions: vec![
            condition(
                &previous.conditions,
                READY,
                true,
                reasons::PROVISIONED,
                format!("namespace {ns_name} with quota and policies is in place"),
                generation,
            ),
            condition(
                &previous.conditions,
                DEGRADED,
                false,
                reasons::AS_EXPECTED,
                String::new(),
                generation,
            ),
        ],
    };
    write_status(ctx, sb, &previous, status).await?;
    // Usage is refreshed on this resync (usage updates alone do not trigger a reconcile).
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn usage(quota: &ResourceQuota) -> SandboxUsage {
    let used = quota.status.as_ref().and_then(|s| s.used.clone()).unwrap_or_default();
    SandboxUsage {
        deployments: used
            .get("count/userdeployments.k8s-scheduler.io")
            .and_then(|q| q.0.parse().ok())
            .unwrap_or(0),
        cpu: used.get("requests.cpu").map(|q| q.0.clone()),
        memory: used.get("requests.memory").map(|q| q.0.clone()),
    }
}

async fn write_status(
    ctx: &Context,
    sb: &UserSandbox,
    previous: &UserSandboxStatus,
    status: UserSandboxStatus,
) -> Result<(), Error> {
    if previous.namespace == status.namespace
        && previous.observed_generation == status.observed_generation
        && previous.usage == status.usage
        && same_conditions(&previous.conditions, &status.conditions)
    {
        return Ok(());
    }
    ctx.ensure_leader()?;
    let api: Api<UserSandbox> = Api::all(ctx.client.clone());
    ctx.metrics.writes.get_or_create(&Metrics::kind(KIND)).inc();
    api.patch_status(
        &sb.name_any(),
        &status_params(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}
