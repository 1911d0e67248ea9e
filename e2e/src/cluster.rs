//! The cluster under test and temporary namespaces.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use rand::Rng;

use crate::wait::wait_until_gone;

/// Label put on every namespace this library creates, so stray ones can be found and removed.
pub const TEST_NAMESPACE_LABEL: &str = "k8s-scheduler.io/e2e";

/// How long a temporary namespace may take to disappear after deletion.
pub const NAMESPACE_DELETE_TIMEOUT: Duration = Duration::from_secs(120);

/// The kubeconfig of the cluster under test: `E2E_KUBECONFIG` when set, otherwise the one
/// written by `hack/cluster up` (`$K8S_SCHEDULER_STATE/kubeconfig`, default
/// `~/.local/state/k8s-scheduler/cluster/kubeconfig`).
pub fn kubeconfig_path() -> PathBuf {
    if let Some(p) = std::env::var_os("E2E_KUBECONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let state = std::env::var_os("K8S_SCHEDULER_STATE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/root".into());
            home.join(".local/state/k8s-scheduler/cluster")
        });
    state.join("kubeconfig")
}

/// A kube client for the cluster under test.
///
/// Fails with a message saying what to do when there is no cluster: tests must not skip silently.
pub async fn client() -> Result<Client> {
    // Two crypto providers are linked in the workspace (ring, aws-lc); pick ring, like the binaries.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).with_context(|| {
        format!(
            "no cluster to test against: cannot read kubeconfig {}; run `hack/cluster up` \
             (or set E2E_KUBECONFIG to an existing cluster's kubeconfig)",
            path.display()
        )
    })?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", path.display()))?;
    let client = Client::try_from(config)?;
    client.apiserver_version().await.with_context(|| {
        format!(
            "the cluster of {} does not answer; is it up? (`hack/cluster status`)",
            path.display()
        )
    })?;
    Ok(client)
}

/// A DNS-label-safe name: `prefix-` followed by 8 random lowercase characters.
pub fn unique_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}-{suffix}")
}

/// Runs `body` with a client and a fresh namespace, then deletes the namespace and waits until it
/// is gone — also when `body` fails or panics, whose panic is then resumed.
pub async fn with_namespace<F, Fut, T>(body: F) -> Result<T>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let client = client().await?;
    let name = unique_name("e2e");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([(TEST_NAMESPACE_LABEL.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating test namespace {name}"))?;

    let outcome = tokio::spawn(body(client.clone(), name.clone())).await;

    let cleanup = async {
        match namespaces.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(anyhow::Error::from(e).context(format!("deleting namespace {name}"))),
        }
        wait_until_gone(&namespaces, &name, NAMESPACE_DELETE_TIMEOUT).await
    }
    .await;

    match outcome {
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => Err(anyhow::anyhow!("test body was cancelled: {join}")),
        Ok(result) => {
            let value = result?;
            cleanup?;
            Ok(value)
        }
    }
}
