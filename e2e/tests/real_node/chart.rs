//! The Helm chart on a real node (`hack/cluster up --real`): `helm install` from the images of
//! `hack/image`, without DEV_MODE. The operator and the server run as pods under Pod Security
//! `restricted`; a user signs in through the test OpenID provider, stores a secret through
//! `/api/secrets`, deploys hello-web through `/api/deployments`, and the app's URL answers through
//! the gateway with the parameter value and the secret's value.
//!
//! What runs where: the node's pods reach this machine only at the node's bridge address
//! [`NODE_IP`], never at 127.0.0.1. So the OpenID provider listens there (its issuer URL is the
//! same for the server pod and for this test), and a TCP relay there forwards to the test
//! PostgreSQL on loopback (for the server and its migration Job). The test reaches the server the
//! way a browser on this machine would: `http://<release>.localhost:<gateway port>` through
//! Traefik (the chart's server Ingress, plain HTTP: `server.url.scheme=http`), which is also the
//! server's BASE_URL and the OAuth redirect URI's origin.
//!
//! Built only with `--features real-node`: `cargo test -p e2e --features real-node --test
//! real_node_chart`. Needs E2E_KUBECONFIG and E2E_GATEWAY_PORT of a real-node cluster (`hack/cluster
//! paths`), E2E_POSTGRES_URL (hack/test starts PostgreSQL), HELM and KUBECTL (hack/test sets them),
//! `hack/oidc/install` done, and the images of `hack/image` imported into the node (`hack/cluster
//! load-images`); this test never builds images.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use crds::{Template, UserSandbox};
use e2e::cluster::TEST_NAMESPACE_LABEL;
use e2e::oidc::{OidcClient, OidcProvider};
use e2e::operator::{RUN_LABEL, drop_deployment_finalizers, is_ready_condition, kubectl};
use e2e::real_node::{
    GATEWAY_NAME, GATEWAY_NAMESPACE, NODE_IP, VERSION, gateway_port, get_through_gateway, hello_template,
    loopback_client,
};
use e2e::wait::poll;
use e2e::{unique_name, wait_for, wait_until_gone};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use rand::RngCore;
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

/// `helm install --wait`: the migration Job, then both Deployments Available.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// An app from POST to Ready (first pod start on the node included).
const APP_READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Waiting reasons that mean the image is not on the node (images are never pulled here).
const IMAGE_ERRORS: &[&str] = &[
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
];
/// Waiting reasons that will not go away by waiting (the pod spec or the program is wrong).
const FATAL_WAITING: &[&str] = &["CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff"];

fn helm() -> tokio::process::Command {
    let bin = std::env::var("HELM")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "helm".into());
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--kubeconfig").arg(e2e::cluster::kubeconfig_path());
    cmd
}

/// Runs kubectl with `args`; stdout and stderr together (for diagnostics: never fails).
fn kubectl_text(args: &[&str]) -> String {
    match kubectl().args(args).output() {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("(kubectl {args:?} did not run: {e})"),
    }
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// `url` with its host and port replaced by `addr` (the relay in front of the test PostgreSQL).
fn with_address(url: &str, addr: SocketAddr) -> Result<String> {
    let mut u = Url::parse(url).with_context(|| format!("E2E_POSTGRES_URL database URL {url} does not parse"))?;
    u.set_ip_host(addr.ip())
        .map_err(|()| anyhow::anyhow!("cannot set the host of {url}"))?;
    u.set_port(Some(addr.port()))
        .map_err(|()| anyhow::anyhow!("cannot set the port of {url}"))?;
    Ok(u.into())
}

/// Where a `postgres://` URL points (the relay's target).
fn address_of(url: &str) -> Result<SocketAddr> {
    let u = Url::parse(url).with_context(|| format!("database URL {url} does not parse"))?;
    let host = u.host_str().context("database URL without host")?;
    let port = u.port().unwrap_or(5432);
    let ip: std::net::IpAddr = host.parse().with_context(|| {
        format!("the test PostgreSQL's host {host} is not an IP address (hack/test uses 127.0.0.1)")
    })?;
    Ok(SocketAddr::new(ip, port))
}

/// One install of the chart and everything the test made for it.
struct Install {
    client: Client,
    release: String,
    /// The release namespace (also PLATFORM_NAMESPACE).
    namespace: String,
    /// `http://<release>.localhost:<gateway port>`: BASE_URL, and what this test calls.
    base: String,
    gateway_port: u16,
}

impl Install {
    fn server_host(&self) -> String {
        format!("{}.localhost", self.release)
    }

    /// The chart's values: one replica each, memory sessions, the database secrets backend,
    /// HTTPRoutes on the node's Gateway with plain-HTTP URLs on the gateway's port, the server
    /// behind its own Ingress on that port, sign-in at `issuer`.
    fn values(&self, issuer: &str) -> Value {
        let run_label = format!("{RUN_LABEL}={}", self.release);
        json!({
            "domain": "localhost",
            "routing": {
                "mode": "gateway",
                "controllerNamespace": GATEWAY_NAMESPACE,
                "url": { "scheme": "http", "port": self.gateway_port },
                "gateway": { "create": false, "name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE },
            },
            "operator": {
                "replicas": 1,
                // The MutatingAdmissionPolicy has a cluster-wide fixed name that the other suites
                // apply too (e2e::operator::ensure_crds): Helm would refuse to adopt it, and
                // `helm uninstall` would remove it under them. The controller adds the finalizer
                // itself without it.
                "finalizerPolicy": false,
                // Only this release's sandboxes: other tests' sandboxes may exist on this cluster.
                "extraEnv": [{ "name": "SANDBOX_SELECTOR", "value": run_label }],
                "podDisruptionBudget": { "enabled": false },
            },
            "server": {
                "replicas": 1,
                "url": { "scheme": "http", "port": self.gateway_port },
                "ingress": { "enabled": true, "className": "traefik", "host": self.server_host() },
                // OIDC_ISSUER_URL has no chart value (Google by default): the test provider's issuer.
                // SANDBOX_LABELS: the UserSandboxes it creates carry the operator's selector.
                "extraEnv": [
                    { "name": "OIDC_ISSUER_URL", "value": issuer },
                    { "name": "SANDBOX_LABELS", "value": run_label },
                ],
                "podDisruptionBudget": { "enabled": false },
            },
            "kubernetes": { "namespaceTemplate": format!("{}-%s", self.release) },
            // Memory sessions need one replica; cookies without Secure on plain HTTP.
            "session": { "backend": "memory", "cookieSecure": false },
            "secrets": { "backend": "database" },
        })
    }

    /// The Secret the chart expects (`server.existingSecret`).
    async fn create_secret(&self, client_id: &str, client_secret: &str, dsn: &str) -> Result<()> {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": { "name": "k8s-scheduler-server", "namespace": self.namespace },
            "stringData": {
                "GOOGLE_CLIENT_ID": client_id,
                "GOOGLE_CLIENT_SECRET": client_secret,
                "DATABASE_DSN": dsn,
                "SECRETS_ENCRYPTION_KEY": random_b64(32),
            },
        }))?;
        Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .create(&PostParams::default(), &secret)
            .await
            .context("creating the server's Secret")?;
        Ok(())
    }

    /// `helm install --wait`, watching the pods meanwhile: a missing image or a container that
    /// cannot start fails at once with what to do, instead of when Helm's timeout runs out.
    async fn helm_install(&self, values: &Value) -> Result<()> {
        let values_file = std::env::temp_dir().join(format!("{}-values.yaml", self.release));
        std::fs::write(&values_file, serde_yaml::to_string(values)?)?;
        let mut child = helm()
            .args([
                "install",
                &self.release,
                &e2e::repo_path("charts/k8s-scheduler").display().to_string(),
            ])
            .args(["--namespace", &self.namespace, "--wait", "--timeout"])
            .arg(format!("{}s", INSTALL_TIMEOUT.as_secs()))
            .arg("--values")
            .arg(&values_file)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("running helm (hack/test sets HELM; or put helm on PATH)")?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let outcome = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for pod in &list.items {
                    stuck(pod)?;
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        let out = child.wait_with_output().await?;
        let _ = std::fs::remove_file(&values_file);
        ensure!(
            outcome.success(),
            "helm install {} failed ({outcome}):\n{}{}",
            self.release,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Both Deployments Available, their pods Ready, restricted as the chart says and as the
    /// runtime reports (the uid the container really runs as).
    async fn check_pods(&self) -> Result<()> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        for component in ["operator", "server"] {
            let name = format!("{}-{component}", self.release);
            let d = deployments
                .get(&name)
                .await
                .with_context(|| format!("Deployment {name}"))?;
            let available = d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
            ensure!(
                available == 1,
                "Deployment {name}: {available} available replicas, expected 1"
            );

            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
            let selector = format!(
                "app.kubernetes.io/instance={},app.kubernetes.io/component={component}",
                self.release
            );
            let list = pods.list(&ListParams::default().labels(&selector)).await?;
            ensure!(!list.items.is_empty(), "no pod of {name}");
            for pod in &list.items {
                ensure_restricted_and_ready(pod).with_context(|| format!("pod {} of {name}", pod.name_any()))?;
            }
        }
        Ok(())
    }

    /// What helps when something failed: pods, events, the logs of the operator and the server
    /// (and of the migration Job), the sandbox namespace's pods and events.
    fn diagnostics(&self, sandbox_ns: Option<&str>) -> String {
        let ns = self.namespace.as_str();
        let mut out = String::new();
        let mut section = |title: String, body: String| {
            out.push_str(&format!("\n--- {title}\n{}\n", body.trim_end()));
        };
        section(
            format!("pods, deployments, jobs, ingresses in {ns}"),
            kubectl_text(&["-n", ns, "get", "pods,deployments,jobs,ingresses", "-o", "wide"]),
        );
        section(
            format!("events in {ns}"),
            kubectl_text(&["-n", ns, "get", "events", "--sort-by=.lastTimestamp"]),
        );
        for (what, target) in [
            ("migration Job", format!("job/{}-server-migrate", self.release)),
            ("operator", format!("deployment/{}-operator", self.release)),
            ("server", format!("deployment/{}-server", self.release)),
        ] {
            section(
                format!("{what} log ({target})"),
                kubectl_text(&["-n", ns, "logs", &target, "--all-containers", "--tail=60"]),
            );
        }
        if let Some(sns) = sandbox_ns {
            section(
                format!("sandbox {sns}"),
                kubectl_text(&[
                    "-n",
                    sns,
                    "get",
                    "pods,userdeployments,httproutes,secrets",
                    "-o",
                    "wide",
                ]),
            );
            section(
                format!("events in {sns}"),
                kubectl_text(&["-n", sns, "get", "events", "--sort-by=.lastTimestamp"]),
            );
        }
        out
    }

    /// Removes the user's sandboxes while the operator still runs (it removes the apps'
    /// finalizers), then the release and its namespace.
    async fn cleanup(&self) -> Result<()> {
        let sandboxes: Api<UserSandbox> = Api::all(self.client.clone());
        let mine = sandboxes
            .list(&ListParams::default().labels(&format!("{RUN_LABEL}={}", self.release)))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        for sb in &mine {
            let _ = sandboxes.delete(&sb.name_any(), &DeleteParams::foreground()).await;
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for sb in &mine {
            if wait_until_gone(&sandboxes, &sb.name_any(), Duration::from_secs(90))
                .await
                .is_err()
            {
                // The operator is gone or stuck: free the apps so that the namespace can go.
                drop_deployment_finalizers(&self.client, &sb.spec.namespace).await;
                let _ = namespaces.delete(&sb.spec.namespace, &DeleteParams::background()).await;
            }
        }
        let out = helm()
            .args(["uninstall", &self.release, "--namespace", &self.namespace, "--wait"])
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        let uninstalled = match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(anyhow::anyhow!(
                "helm uninstall {}: {}",
                self.release,
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => Err(anyhow::Error::from(e).context("running helm uninstall")),
        };
        let _ = namespaces.delete(&self.namespace, &DeleteParams::background()).await;
        for sb in &mine {
            wait_until_gone(&namespaces, &sb.spec.namespace, Duration::from_secs(120)).await?;
        }
        wait_until_gone(&namespaces, &self.namespace, Duration::from_secs(120)).await?;
        uninstalled
    }
}

/// Fails when a container of `pod` waits for a reason that waiting will not cure.
fn stuck(pod: &Pod) -> Result<()> {
    let Some(status) = &pod.status else { return Ok(()) };
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in all {
        let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let message = waiting.message.as_deref().unwrap_or_default();
        if IMAGE_ERRORS.contains(&reason) {
            bail!(
                "pod {} cannot start: image {} is not on the node ({reason}: {message}); images are never pulled \
                 here: build them with `hack/image build --profile dev --out target/images` and import them with \
                 `hack/cluster load-images` (hack/test does both)",
                pod.name_any(),
                c.image
            );
        }
        if FATAL_WAITING.contains(&reason) {
            bail!(
                "pod {} container {} cannot run: {reason}: {message}",
                pod.name_any(),
                c.name
            );
        }
    }
    Ok(())
}

/// Pod Security `restricted` as the chart sets it, the pod Ready, and each container running as
/// uid 65532 according to the container runtime.
fn ensure_restricted_and_ready(pod: &Pod) -> Result<()> {
    let spec = pod.spec.as_ref().context("no spec")?;
    let psc = spec.security_context.as_ref().context("no pod securityContext")?;
    ensure!(psc.run_as_non_root == Some(true), "runAsNonRoot is not true: {psc:?}");
    ensure!(psc.run_as_user == Some(65532), "runAsUser is not 65532: {psc:?}");
    ensure!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()) == Some("RuntimeDefault"),
        "seccompProfile is not RuntimeDefault: {psc:?}"
    );
    for c in &spec.containers {
        let sc = c
            .security_context
            .as_ref()
            .with_context(|| format!("container {} has no securityContext", c.name))?;
        ensure!(
            sc.allow_privilege_escalation == Some(false),
            "container {}: allowPrivilegeEscalation is not false",
            c.name
        );
        ensure!(
            sc.read_only_root_filesystem == Some(true),
            "container {}: readOnlyRootFilesystem is not true",
            c.name
        );
        let dropped = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.clone())
            .unwrap_or_default();
        ensure!(
            dropped == ["ALL"],
            "container {}: capabilities drop {dropped:?}, not [ALL]",
            c.name
        );
    }
    let status = pod.status.as_ref().context("no status")?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ensure!(ready, "not Ready: {:?}", status.conditions);
    for cs in status.container_statuses.iter().flatten() {
        let uid = cs.user.as_ref().and_then(|u| u.linux.as_ref()).map(|l| l.uid);
        ensure!(
            uid == Some(65532),
            "container {} runs as uid {uid:?} according to the runtime, not 65532",
            cs.name
        );
    }
    Ok(())
}

/// A browser on this machine: cookie jar, no automatic redirects, `host` resolved to loopback
/// (the gateway's port is in the URLs; `*.localhost` is loopback for browsers).
fn browser(host: &str) -> Result<reqwest::Client> {
    Ok(loopback_client(host)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()?)
}

/// Signs in as `login` through the provider: /login, the provider's pages, the callback.
async fn sign_in(browser: &reqwest::Client, base: &str, provider: &OidcProvider, login: &str) -> Result<()> {
    let resp = browser.get(format!("{base}/login?redirect=/")).send().await?;
    let status = resp.status();
    ensure!(
        status.is_redirection(),
        "/login answered {status}: {}",
        resp.text().await.unwrap_or_default()
    );
    let to = resp
        .headers()
        .get("location")
        .context("no Location from /login")?
        .to_str()?
        .to_string();
    ensure!(
        to.starts_with(provider.issuer()),
        "/login sent the browser to {to}, not to the provider {} (OIDC_ISSUER_URL)",
        provider.issuer()
    );
    let callback = provider.authorize(&to, login).await?;
    ensure!(
        callback.starts_with(&format!("{base}/oauth2/callback")),
        "the provider redirected to {callback}, not to {base}/oauth2/callback (GOOGLE_REDIRECT_URL)"
    );
    let resp = browser.get(&callback).send().await?;
    let status = resp.status();
    ensure!(
        status.is_redirection(),
        "the callback answered {status}: {}",
        resp.text().await.unwrap_or_default()
    );
    Ok(())
}

/// A same-origin JSON request of the signed-in browser (the server's CSRF check wants the Origin
/// of BASE_URL); returns the status and the body (JSON, or the text as a string).
async fn api(
    browser: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let mut req = browser
        .request(method.clone(), format!("{base}{path}"))
        .header("origin", base);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

#[tokio::test]
async fn chart_install_sign_in_and_hello_web_through_the_api() -> Result<()> {
    let _turn = e2e::suite::turn("real_node_chart").await;
    let started = Instant::now();
    let gateway_port = gateway_port()?;
    let client = e2e::client().await?;

    // The test PostgreSQL, reachable from pods through a relay on the node's bridge address.
    let db = e2e::services::fresh_postgres().await?;
    let listen: SocketAddr = format!("{NODE_IP}:0").parse()?;
    let relay = e2e::net::relay(listen, address_of(&db.url)?)
        .await
        .context("the relay to PostgreSQL needs the real node's bridge (hack/cluster up --real)")?;
    let dsn = with_address(&db.url, relay.addr)?;

    let release = unique_name("chart");
    let base = format!("http://{release}.localhost:{gateway_port}");
    // The OAuth client the server signs in with, at a provider the server pod can reach.
    let client_id = format!("{release}-server");
    let client_secret = random_b64(24);
    let provider = OidcProvider::start_on(
        NODE_IP,
        &[OidcClient {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            redirect_uris: vec![format!("{base}/oauth2/callback")],
        }],
    )
    .await?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Pod Security `restricted` enforced on the release namespace: the chart's pods must pass it.
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": release, "labels": {
        TEST_NAMESPACE_LABEL: "true",
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    } } }))?;
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {release}"))?;
    // From here on every outcome goes through `install.cleanup()`.
    let install = Install {
        client: client.clone(),
        namespace: release.clone(),
        base,
        release,
        gateway_port,
    };

    let mut sandbox_ns: Option<String> = None;
    let result = async {
        install.create_secret(&client_id, &client_secret, &dsn).await?;
        let t = Instant::now();
        install.helm_install(&install.values(provider.issuer())).await?;
        eprintln!("helm install --wait: {:?}", t.elapsed());
        install.check_pods().await?;

        // The server through its Ingress on the gateway (Traefik picks the Ingress up shortly).
        let browser = browser(&install.server_host())?;
        let base = install.base.as_str();
        poll(
            Duration::from_secs(60),
            &format!("{base}/readyz through the gateway"),
            || {
                let browser = browser.clone();
                async move {
                    let resp = browser.get(format!("{base}/readyz")).send().await?;
                    Ok(resp.status().is_success().then_some(()))
                }
            },
        )
        .await?;
        let (_, flags) = api(&browser, base, Method::GET, "/api/config", None).await?;
        ensure!(
            flags["devMode"] == json!(false),
            "the chart's server runs in DEV_MODE: {flags}"
        );
        ensure!(
            flags["baseUrl"] == json!(base),
            "BASE_URL is {}, expected {base}",
            flags["baseUrl"]
        );

        // Sign-in through the OpenID provider; the first request makes the user's sandbox.
        let login = unique_name("user");
        sign_in(&browser, base, &provider, &login).await?;
        let (status, me) = api(&browser, base, Method::GET, "/api/me", None).await?;
        ensure!(status == StatusCode::OK, "/api/me after sign-in: {status} {me}");
        ensure!(me["authenticatedBy"] == json!("session"), "/api/me: {me}");
        let user_id = me["user"]["id"]
            .as_str()
            .context("/api/me without user.id")?
            .to_string();
        let expected_ns = format!("{}-{user_id}", install.release);
        ensure!(
            me["sandbox"]["namespace"] == json!(expected_ns),
            "the sandbox namespace is not KUBERNETES_NAMESPACE's: {me}"
        );
        sandbox_ns = Some(expected_ns.clone());
        let sandbox_name = me["sandbox"]["name"]
            .as_str()
            .context("/api/me without sandbox.name")?
            .to_string();
        let sandboxes: Api<UserSandbox> = Api::all(client.clone());
        wait_for(
            &sandboxes,
            &sandbox_name,
            Duration::from_secs(90),
            "the user's UserSandbox Ready (made by the operator pod)",
            is_ready_condition::<UserSandbox>,
        )
        .await?;

        // A public template in the platform namespace, which the server lists for the user.
        Api::<Template>::namespaced(client.clone(), &install.namespace)
            .create(
                &PostParams::default(),
                &serde_json::from_value::<Template>(hello_template(&install.namespace, "public"))?,
            )
            .await
            .context("creating the hello-web Template")?;
        poll(Duration::from_secs(60), "hello-web in GET /api/templates", || {
            let browser = browser.clone();
            async move {
                let (_, list) = api(&browser, base, Method::GET, "/api/templates", None).await?;
                Ok(list
                    .as_array()
                    .is_some_and(|l| l.iter().any(|t| t["name"] == "hello-web"))
                    .then_some(()))
            }
        })
        .await?;

        // The secret, stored through the API (database backend, encrypted), then the app reading it.
        let api_key = format!("key-{}", unique_name("s"));
        let (status, body) = api(
            &browser,
            base,
            Method::PUT,
            "/api/secrets/user/API_KEY",
            Some(json!({ "value": api_key })),
        )
        .await?;
        ensure!(
            status == StatusCode::CREATED,
            "PUT /api/secrets/user/API_KEY: {status} {body}"
        );
        let (_, listed) = api(&browser, base, Method::GET, "/api/secrets", None).await?;
        ensure!(
            listed.to_string().contains("API_KEY") && !listed.to_string().contains(&api_key),
            "GET /api/secrets lists the name, never the value: {listed}"
        );
        let greeting = format!("greetings-{}", unique_name("g"));
        let (status, body) = api(
            &browser,
            base,
            Method::POST,
            "/api/deployments",
            Some(json!({
                "template": "hello-web",
                "name": "hello",
                "parameters": { "GREETING": greeting },
                "secretRefs": ["API_KEY"],
            })),
        )
        .await?;
        ensure!(status == StatusCode::CREATED, "POST /api/deployments: {status} {body}");

        let t = Instant::now();
        let view = poll(APP_READY_TIMEOUT, "hello Ready in GET /api/deployments/hello", || {
            let browser = browser.clone();
            async move {
                let (status, view) = api(&browser, base, Method::GET, "/api/deployments/hello", None).await?;
                ensure!(status == StatusCode::OK, "{status} {view}");
                if view["ready"] == json!(true) {
                    Ok(Some(view))
                } else {
                    bail!(
                        "phase {} reason {} message {}",
                        view["phase"],
                        view["reason"],
                        view["message"]
                    )
                }
            }
        })
        .await?;
        eprintln!("hello-web Ready after {:?}", t.elapsed());
        let url = view["url"].as_str().context("Ready without a URL")?;
        let expected = format!("http://{user_id}-hello.localhost:{gateway_port}");
        ensure!(url == expected, "the app's URL is {url}, expected {expected}");
        let body = get_through_gateway(url).await?;
        ensure!(body.contains("hello-web"), "the app's answer lacks its name: {body}");
        ensure!(
            body.contains(&greeting),
            "the app's answer lacks the parameter value {greeting}: {body}"
        );
        ensure!(
            body.contains(&api_key),
            "the secret set through /api/secrets did not reach the container: {body}"
        );
        Ok(())
    }
    .await;

    let diagnostics = result.is_err().then(|| {
        format!(
            "{}\n--- OpenID provider log\n{}",
            install.diagnostics(sandbox_ns.as_deref()),
            provider.log()
        )
    });
    let cleaned = install.cleanup().await;
    drop(relay);
    eprintln!("whole test: {:?}", started.elapsed());
    if let Some(d) = diagnostics {
        let cleanup = match cleaned {
            Ok(()) => String::new(),
            Err(e) => format!("\n--- clean-up failed too (remove it by hand)\n{e:#}"),
        };
        return result.with_context(|| format!("diagnostics:{d}{cleanup}"));
    }
    cleaned.context("cleaning up the release")
}

#[test]
fn the_chart_version_is_the_image_tag() -> Result<()> {
    // The chart's appVersion is the default tag of both images; hack/image tags them with the
    // workspace version. If they differ, every pod of the chart waits for an image that is not there.
    let chart = std::fs::read_to_string(e2e::repo_path("charts/k8s-scheduler/Chart.yaml"))?;
    let chart: BTreeMap<String, serde_yaml::Value> = serde_yaml::from_str(&chart)?;
    let app_version = chart
        .get("appVersion")
        .and_then(|v| v.as_str())
        .context("no appVersion")?;
    ensure!(
        app_version == VERSION,
        "Chart.yaml appVersion {app_version} is not the workspace version {VERSION}"
    );
    Ok(())
}
