//! Plan changes reach the apps: a sandbox downgraded below its number of apps keeps every one of
//! them, and the newest beyond the new limit is suspended (its Deployments scaled to zero, a
//! `Suspended` condition saying why); upgraded again, it runs with its spec's replicas.
//! The plan is patched the way an admin does it today:
//! `kubectl patch usersandbox X --type merge -p '{"spec":{"plan":"free"}}'`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use crds::{UserDeployment, UserSandbox};
use e2e::operator::{TestSandbox, condition_of, create_deployment, is_ready_condition};
use e2e::wait::poll;
use e2e::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ResourceQuota, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(90);

/// An app of two inline services: `web` (`replicas` pods) and `worker` (one pod).
fn app(name: &str, replicas: i32) -> UserDeployment {
    serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "UserDeployment",
        "metadata": { "name": name },
        "spec": {
            "services": [
                { "name": "web", "image": "ghcr.io/example/web:1", "port": 8080, "replicas": replicas },
                { "name": "worker", "image": "ghcr.io/example/worker:1", "port": 9090 },
            ],
        },
    }))
    .expect("deployment")
}

async fn set_plan(client: &Client, sb: &TestSandbox, plan: &str) -> Result<()> {
    let api: Api<UserSandbox> = Api::all(client.clone());
    api.patch(
        &sb.name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "plan": plan } })),
    )
    .await
    .with_context(|| format!("patching the plan of {} to {plan}", sb.name))?;
    Ok(())
}

/// Waits until the Deployment `name` asks for `replicas` and runs exactly that many.
async fn scaled_to(client: &Client, ns: &str, name: &str, replicas: i32) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for(
        &api,
        name,
        TIMEOUT,
        &format!("Deployment scaled to {replicas}"),
        move |d: Option<&Deployment>| {
            d.is_some_and(|d| {
                let status = d.status.as_ref();
                d.spec.as_ref().and_then(|s| s.replicas) == Some(replicas)
                    && status.and_then(|s| s.replicas).unwrap_or(0) == replicas
                    && status.and_then(|s| s.ready_replicas).unwrap_or(0) == replicas
            })
        },
    )
    .await
    .map(|_| ())
}

/// The `(type, reason)` of the events about the UserDeployment `name`.
async fn events_of(client: &Client, ns: &str, name: &str) -> Result<Vec<(String, String)>> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().fields(&format!("regarding.name={name},regarding.kind=UserDeployment")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
        .collect())
}

#[tokio::test]
async fn a_downgrade_suspends_the_newest_app_and_an_upgrade_resumes_it() -> Result<()> {
    let _turn = e2e::suite::turn("suspend").await;
    crate::operator::with_sandbox(&[], |client, sb| async move {
        let ns = sb.namespace.as_str();
        let uds: Api<UserDeployment> = Api::namespaced(client.clone(), ns);
        // On business (10 deployments) both run. `first` is the older: created first, and its
        // name sorts first too, should both be created within the same second (creation times
        // have a resolution of one second; the name breaks ties).
        create_deployment(&uds, &app("first", 1)).await?;
        create_deployment(&uds, &app("second", 2)).await?;
        for name in ["first", "second"] {
            wait_for(
                &uds,
                name,
                TIMEOUT,
                "UserDeployment Ready",
                is_ready_condition::<UserDeployment>,
            )
            .await?;
        }
        scaled_to(&client, ns, "second-web", 2).await?;

        set_plan(&client, &sb, "free").await?;
        let suspended = wait_for(
            &uds,
            "second",
            TIMEOUT,
            "second Suspended",
            |ud: Option<&UserDeployment>| {
                condition_of(ud, "Suspended") == Some(("True".into(), "PlanLimitExceeded".into()))
            },
        )
        .await?;
        ensure!(
            condition_of(Some(&suspended), "Ready") == Some(("False".into(), "Suspended".into())),
            "Ready of a suspended app: {:?}",
            suspended.status
        );
        let message = suspended
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Suspended"))
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ensure!(
            message.starts_with("the free plan allows 1 deployment and this is the newest of 2;"),
            "the condition says why: {message}"
        );
        // Scaled to zero, every service; nothing deleted; the spec untouched.
        scaled_to(&client, ns, "second-web", 0).await?;
        scaled_to(&client, ns, "second-worker", 0).await?;
        ensure!(suspended.spec.services.as_ref().map(|s| s[0].replicas) == Some(Some(2)));
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        ensure!(services.get_opt("second-web").await?.is_some(), "the Service stays");
        // The older app runs on, untouched.
        let first = uds.get("first").await?;
        ensure!(
            is_ready_condition(Some(&first)) && condition_of(Some(&first), "Suspended").is_none(),
            "the older app runs: {:?}",
            first.status
        );
        scaled_to(&client, ns, "first-web", 1).await?;
        // The quota follows the plan: one UserDeployment, and both objects are still there.
        let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
        poll(TIMEOUT, "quota of the free plan", || async {
            let q = quotas.get("sandbox-quota").await?;
            let hard = q.spec.and_then(|s| s.hard).unwrap_or_default();
            Ok((hard.get("count/userdeployments.k8s-scheduler.io").map(|v| v.0.as_str()) == Some("1")).then_some(()))
        })
        .await?;
        ensure!(
            uds.list(&ListParams::default()).await?.items.len() == 2,
            "nothing deleted"
        );
        let events = poll(TIMEOUT, "the Suspended event", || async {
            let events = events_of(&client, ns, "second").await?;
            Ok(events
                .contains(&("Warning".to_string(), "Suspended".to_string()))
                .then_some(events))
        })
        .await?;
        ensure!(
            events.iter().filter(|(_, r)| r == "Suspended").count() == 1,
            "one Suspended event: {events:?}"
        );

        set_plan(&client, &sb, "business").await?;
        let resumed = wait_for(
            &uds,
            "second",
            TIMEOUT,
            "second Ready again",
            |ud: Option<&UserDeployment>| {
                is_ready_condition(ud) && condition_of(ud, "Suspended").is_some_and(|(s, _)| s == "False")
            },
        )
        .await?;
        ensure!(
            condition_of(Some(&resumed), "Suspended") == Some(("False".into(), "WithinPlanLimit".into())),
            "{:?}",
            resumed.status
        );
        scaled_to(&client, ns, "second-web", 2).await?;
        scaled_to(&client, ns, "second-worker", 1).await?;
        poll(TIMEOUT, "the Resumed event", || async {
            let events = events_of(&client, ns, "second").await?;
            Ok(events
                .contains(&("Normal".to_string(), "Resumed".to_string()))
                .then_some(()))
        })
        .await?;
        Ok(())
    })
    .await
}
