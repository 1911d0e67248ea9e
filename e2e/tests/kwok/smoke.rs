//! Smoke tests of the test foundation: the local control plane schedules and "runs" pods (kwok),
//! serves custom resources and watches, and temporary namespaces are removed afterwards; the test
//! PostgreSQL and Redis servers answer.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::services::{fresh_postgres, fresh_redis};
use e2e::wait::poll;
use e2e::{unique_name, wait_for, with_namespace};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::conditions;
use kube::runtime::watcher::{self, Event};
use kube::{Api, CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn deployment_becomes_available_with_running_pods() -> Result<()> {
    let _turn = e2e::suite::turn("smoke").await;
    let ns_name = with_namespace(|client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": "web" },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [{ "name": "web", "image": "registry.invalid/web:1" }] }
                }
            }
        }))?;
        deployments.create(&PostParams::default(), &deployment).await?;

        let available = |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Available" && c.status == "True"))
        };
        let d = wait_for(&deployments, "web", TIMEOUT, "Deployment Available", available).await?;
        assert_eq!(d.status.and_then(|s| s.available_replicas), Some(2));

        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let running = poll(TIMEOUT, "2 pods Running", || async {
            let list = pods.list(&ListParams::default().labels("app=web")).await?;
            let running: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .collect();
            Ok((running.len() == 2).then_some(running))
        })
        .await?;
        for pod in &running {
            assert!(
                pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some(),
                "pod {} was not scheduled to a node",
                pod.name_any()
            );
        }
        Ok(ns)
    })
    .await?;

    // The namespace is gone once with_namespace returns.
    let namespaces: Api<Namespace> = Api::all(e2e::client().await?);
    ensure!(
        namespaces.get_opt(&ns_name).await?.is_none(),
        "namespace {ns_name} still exists"
    );
    Ok(())
}

/// A throwaway custom resource used only by this test.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(group = "smoke.e2e.k8s-scheduler.io", version = "v1", kind = "Widget", namespaced)]
pub struct WidgetSpec {
    /// How many sprockets.
    pub sprockets: u32,
}

#[tokio::test]
async fn registers_crd_creates_and_watches_custom_object() -> Result<()> {
    let _turn = e2e::suite::turn("smoke").await;
    let client = e2e::client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Widget::crd();
    let crd_name = crd.name_any();
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e).context("registering the Widget CRD"),
    }
    wait_for(
        &crds,
        &crd_name,
        TIMEOUT,
        "CRD Established",
        conditions::is_crd_established(),
    )
    .await?;

    with_namespace(|client, ns| async move {
        let widgets: Api<Widget> = Api::namespaced(client, &ns);
        let stream = watcher::watcher(widgets.clone(), watcher::Config::default());
        let mut stream = Box::pin(stream);
        // Wait for the initial listing to finish so the create below is seen as a live event.
        loop {
            match stream.try_next().await? {
                Some(Event::InitDone) => break,
                Some(_) => continue,
                None => anyhow::bail!("watch ended before its initial list"),
            }
        }
        let name = unique_name("widget");
        widgets
            .create(&PostParams::default(), &Widget::new(&name, WidgetSpec { sprockets: 3 }))
            .await?;
        let seen = tokio::time::timeout(TIMEOUT, async {
            while let Some(ev) = stream.next().await {
                if let Event::Apply(w) = ev?
                    && w.name_any() == name
                {
                    return Ok::<_, anyhow::Error>(w);
                }
            }
            anyhow::bail!("watch ended before the widget was seen")
        })
        .await
        .context("the created widget never came through the watch")??;
        assert_eq!(seen.spec.sprockets, 3);
        Ok(())
    })
    .await?;

    crds.delete(&crd_name, &DeleteParams::default()).await?;
    e2e::wait_until_gone(&crds, &crd_name, TIMEOUT).await
}

#[tokio::test]
async fn each_test_gets_a_fresh_postgres_database() -> Result<()> {
    let _turn = e2e::suite::turn("smoke").await;
    use sqlx::Connection;
    let a = fresh_postgres().await?;
    let b = fresh_postgres().await?;
    assert_ne!(a.name, b.name);
    let mut conn = sqlx::postgres::PgConnection::connect(&a.url).await?;
    let (db,): (String,) = sqlx::query_as("SELECT current_database()").fetch_one(&mut conn).await?;
    assert_eq!(db, a.name);
    let (tables,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_one(&mut conn)
            .await?;
    assert_eq!(tables, 0, "a fresh database has no tables");
    sqlx::query("CREATE TABLE t (x int)").execute(&mut conn).await?;
    let mut other = sqlx::postgres::PgConnection::connect(&b.url).await?;
    let (tables,): (i64,) = sqlx::query_as("SELECT count(*) FROM information_schema.tables WHERE table_name = 't'")
        .fetch_one(&mut other)
        .await?;
    assert_eq!(tables, 0, "databases of different tests are isolated");
    Ok(())
}

#[tokio::test]
async fn redis_answers_with_a_private_key_prefix() -> Result<()> {
    let _turn = e2e::suite::turn("smoke").await;
    let mut r = fresh_redis().await?;
    let key = format!("{}greeting", r.prefix);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("hello")
        .query_async(&mut r.conn)
        .await?;
    let got: String = redis::cmd("GET").arg(&key).query_async(&mut r.conn).await?;
    assert_eq!(got, "hello");
    let other = fresh_redis().await?;
    assert_ne!(r.prefix, other.prefix);
    Ok(())
}
