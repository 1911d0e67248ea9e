//! What the real-node suites (`tests/real_node/`) share: the images
//! `hack/image` builds, the gateway `hack/cluster up --real` publishes on loopback, and the
//! hello-web Template.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::wait::poll;

/// Image tag of `hack/image`: the workspace version (the chart's appVersion must match it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The node's bridge address: the only address of this machine that pods can reach.
pub const NODE_IP: &str = "10.244.1.1";
/// The Gateway `hack/cluster up --real` installs (hack/node/traefik.yaml).
pub const GATEWAY_NAME: &str = "k8s-scheduler";
/// Its namespace, which is also where the gateway's pods run (`INGRESS_NAMESPACE`).
pub const GATEWAY_NAMESPACE: &str = "gateway-system";

/// `ghcr.io/k8s-scheduler/<name>:<version>`, as `hack/image` tags it.
pub fn image(name: &str) -> String {
    format!("ghcr.io/k8s-scheduler/{name}:{VERSION}")
}

/// The gateway's loopback port: `E2E_GATEWAY_PORT` (required: these suites need a real node).
pub fn gateway_port() -> Result<u16> {
    let v = std::env::var("E2E_GATEWAY_PORT").context(
        "E2E_GATEWAY_PORT is not set: these tests need a real node; start one with \
         `hack/cluster up --real` and export E2E_KUBECONFIG and E2E_GATEWAY_PORT from `hack/cluster paths` \
         (hack/test does this)",
    )?;
    v.parse().with_context(|| format!("E2E_GATEWAY_PORT={v} is not a port"))
}

/// A client builder that sends requests for `host` to loopback (the port stays the URL's), as a
/// browser on this machine resolves `*.localhost`.
pub fn loopback_client(host: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder().resolve(host, SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// GET `url` through the gateway (its host resolved to loopback), retrying until the route is
/// programmed and the answer is 200; returns the body.
pub async fn get_through_gateway(url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("the app's URL {url} is not a URL"))?;
    let host = parsed.host_str().context("URL without host")?.to_string();
    let http = loopback_client(&host).timeout(Duration::from_secs(5)).build()?;
    poll(
        Duration::from_secs(60),
        &format!("HTTP 200 from {url} through the gateway"),
        || {
            let http = http.clone();
            async move {
                let resp = http.get(url).send().await?;
                let status = resp.status();
                let body = resp.text().await?;
                if status.is_success() {
                    Ok(Some(body))
                } else {
                    bail!("{status}: {body}")
                }
            }
        },
    )
    .await
}

/// The hello-web Template (examples/apps/hello-web): a `GREETING` parameter and a secret `API_KEY`
/// that the app shows (`SHOW_ENV`), so a test sees both reach the container.
pub fn hello_template(namespace: &str, visibility: &str) -> serde_json::Value {
    json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "Template",
        "metadata": { "name": "hello-web", "namespace": namespace },
        "spec": {
            "displayName": "Hello web",
            "visibility": visibility,
            "parameters": [
                { "name": "GREETING", "default": "Hello" },
                { "name": "API_KEY", "secret": true },
            ],
            "services": [{
                "name": "web", "image": image("hello-web"), "port": 8080, "healthCheckPath": "/healthz",
                "env": { "SHOW_ENV": "API_KEY" },
                "resources": { "requests": { "cpu": "20m", "memory": "16Mi" }, "limits": { "cpu": "200m", "memory": "64Mi" } },
            }],
            "ingress": { "service": "web" },
        },
    })
}
