//! Support for operator tests: the CRDs, controller processes and sandboxes.
//!
//! Tests run side by side against one cluster, so each test starts its own controller that only
//! looks at its own sandbox (`SANDBOX_SELECTOR`) and namespace (`WATCH_NAMESPACE`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use crds::{UserDeployment, UserSandbox};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::conditions;
use kube::{Api, Client, ResourceExt};

use crate::cluster::{kubeconfig_path, unique_name};
use crate::wait::{wait_for, wait_until_gone};

/// Label put on test sandboxes; the test's controller selects on it.
pub const RUN_LABEL: &str = "e2e.k8s-scheduler.io/run";

/// Installs (server-side applies) the project's CRDs and waits until they are established.
pub async fn ensure_crds(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds::all_crds() {
        let name = crd.name_any();
        api.patch(&name, &PatchParams::apply("e2e").force(), &Patch::Apply(&crd))
            .await
            .with_context(|| format!("installing CRD {name}"))?;
        wait_for(
            &api,
            &name,
            Duration::from_secs(60),
            "CRD established",
            conditions::is_crd_established(),
        )
        .await?;
    }
    ensure_finalizer_policy(client).await
}

/// The chart's MutatingAdmissionPolicy that adds the UserDeployment cleanup finalizer at create.
const FINALIZER_POLICY: &str = include_str!("../../charts/k8s-scheduler/files/userdeployment-finalizer-policy.yaml");

/// Installs the finalizer policy (the chart's file) and binds it to sandbox namespaces, as the
/// chart does without `operator.watchNamespace`.
pub async fn ensure_finalizer_policy(client: &Client) -> Result<()> {
    let gvk = |kind: &str| GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let policy: DynamicObject =
        serde_yaml::from_str(FINALIZER_POLICY).context("parsing userdeployment-finalizer-policy.yaml")?;
    let binding: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": { "name": policy.name_any() },
        "spec": {
            "policyName": policy.name_any(),
            "matchResources": { "namespaceSelector": { "matchExpressions": [
                { "key": policy::build::SANDBOX_LABEL, "operator": "Exists" },
            ] } },
        },
    }))?;
    for (obj, kind, plural) in [
        (&policy, "MutatingAdmissionPolicy", "mutatingadmissionpolicies"),
        (
            &binding,
            "MutatingAdmissionPolicyBinding",
            "mutatingadmissionpolicybindings",
        ),
    ] {
        let api: Api<DynamicObject> =
            Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk(kind), plural));
        api.patch(&obj.name_any(), &PatchParams::apply("e2e").force(), &Patch::Apply(obj))
            .await
            .with_context(|| format!("installing {kind} {} (needs Kubernetes 1.36+)", obj.name_any()))?;
    }
    Ok(())
}

/// Path of a binary built in this workspace (next to the test executable's `deps/`).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Beside the executable, or beside the `deps/` folder test executables live in.
    let mut dir = exe.parent().context("executable has no parent directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().context("deps/ has no parent directory")?;
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first (`cargo build -p {name}`; `hack/test` does)",
            path.display()
        );
    }
    Ok(path)
}

/// A controller process started for one test; killed when dropped.
pub struct ControllerProcess {
    child: Option<Child>,
    /// File its logs go to.
    pub log: PathBuf,
    /// Identity it uses in the Lease.
    pub identity: String,
}

impl ControllerProcess {
    /// Starts the controller binary against the cluster under test with `env` on top of test
    /// defaults (loopback listeners on free ports, leader election off).
    pub fn start(env: &[(&str, &str)]) -> Result<Self> {
        Self::start_with_kubeconfig(&kubeconfig_path(), env)
    }

    /// Like [`ControllerProcess::start`], authenticating with another kubeconfig (e.g. a
    /// ServiceAccount token).
    pub fn start_with_kubeconfig(kubeconfig: &std::path::Path, env: &[(&str, &str)]) -> Result<Self> {
        // E2E_CONTROLLER: another build of the controller (e.g. an older commit's, to see a test
        // fail on the code before a fix).
        let bin = match std::env::var_os("E2E_CONTROLLER").filter(|p| !p.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => workspace_binary("controller")?,
        };
        let identity = unique_name("ctrl");
        let log = std::env::temp_dir().join(format!("{identity}.log"));
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .env_remove("RUST_LOG")
            .env("DEPLOYMENT_DOMAIN", "apps.example.com")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("HEALTH_PROBE_ADDR", "127.0.0.1:0")
            .env("LEADER_ELECT", "false")
            .env("POD_NAME", &identity)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting the controller")?;
        Ok(ControllerProcess {
            child: Some(child),
            log,
            identity,
        })
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A sandbox created for one test, with its namespace and the controller that manages it.
#[derive(Clone)]
pub struct TestSandbox {
    /// Client for the cluster.
    pub client: Client,
    /// Name of the UserSandbox.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The owner's user id.
    pub user_id: String,
    /// Value of [`RUN_LABEL`] on the sandbox.
    pub run: String,
}

impl TestSandbox {
    /// Creates a UserSandbox (plan `business`) labelled for this test run.
    pub async fn create(client: &Client, extra_spec: serde_json::Value) -> Result<Self> {
        Self::create_as(client, &unique_name("run"), &unique_name("u"), extra_spec).await
    }

    /// Creates a UserSandbox (plan `business`) owned by `user_id`, labelled with run `run` (so
    /// that one test's controller can manage several sandboxes).
    pub async fn create_as(client: &Client, run: &str, user_id: &str, extra_spec: serde_json::Value) -> Result<Self> {
        ensure_crds(client).await?;
        let run = run.to_string();
        let user_id = user_id.to_string();
        let name = unique_name("sb");
        let namespace = format!("sandbox-{name}");
        let mut spec = serde_json::json!({
            "owner": { "userId": user_id, "email": format!("{user_id}@example.com") },
            "plan": "business",
            "namespace": namespace,
        });
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
            s.extend(extra.clone());
        }
        let namespace = spec["namespace"].as_str().unwrap_or(&namespace).to_string();
        let sb: UserSandbox = serde_json::from_value(serde_json::json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1",
            "kind": "UserSandbox",
            "metadata": { "name": name, "labels": { RUN_LABEL: run } },
            "spec": spec,
        }))?;
        // Created the way platform teams do it: `kubectl apply`.
        let (ok, out) = kubectl_apply(&serde_yaml::to_string(&sb)?)?;
        if !ok {
            bail!("kubectl apply of UserSandbox {name} failed: {out}");
        }
        Ok(TestSandbox {
            client: client.clone(),
            name,
            namespace,
            user_id,
            run,
        })
    }

    /// Environment that makes a controller manage only this sandbox.
    pub fn controller_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SANDBOX_SELECTOR", format!("{RUN_LABEL}={}", self.run)),
            ("WATCH_NAMESPACE", self.namespace.clone()),
        ]
    }

    /// Starts a controller for this sandbox with `extra` environment.
    pub fn start_controller(&self, extra: &[(&str, &str)]) -> Result<ControllerProcess> {
        let base = self.controller_env();
        let mut env: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend_from_slice(extra);
        ControllerProcess::start(&env)
    }

    /// Waits until the sandbox reports Ready (namespace, quota and policies in place).
    pub async fn wait_ready(&self) -> Result<UserSandbox> {
        let api: Api<UserSandbox> = Api::all(self.client.clone());
        wait_for(
            &api,
            &self.name,
            Duration::from_secs(60),
            "UserSandbox Ready",
            is_ready_condition::<UserSandbox>,
        )
        .await
    }

    /// Deletes the sandbox and waits until its namespace is gone.
    pub async fn delete(self) -> Result<()> {
        let api: Api<UserSandbox> = Api::all(self.client.clone());
        match api.delete(&self.name, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        wait_until_gone(&api, &self.name, Duration::from_secs(120)).await?;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        // The garbage collector removes the namespace (owned by the sandbox); make sure.
        let _ = namespaces.delete(&self.namespace, &DeleteParams::background()).await;
        wait_until_gone(&namespaces, &self.namespace, Duration::from_secs(120)).await
    }
}

/// Whether an object's status has a `Ready` condition that is `True`.
pub fn is_ready_condition<K: serde::Serialize>(obj: Option<&K>) -> bool {
    condition_of(obj, "Ready").is_some_and(|(status, _)| status == "True")
}

/// `(status, reason)` of condition `type_` in an object's status.
pub fn condition_of<K: serde::Serialize>(obj: Option<&K>, type_: &str) -> Option<(String, String)> {
    let v = serde_json::to_value(obj?).ok()?;
    let conds = v.get("status")?.get("conditions")?.as_array()?.clone();
    conds.into_iter().find(|c| c["type"] == type_).map(|c| {
        (
            c["status"].as_str().unwrap_or_default().to_string(),
            c["reason"].as_str().unwrap_or_default().to_string(),
        )
    })
}

/// Removes the controller's cleanup finalizer from every UserDeployment in `namespace` (best
/// effort), for clean-ups that run when no controller does: otherwise a deleted namespace stays
/// Terminating on the shared local cluster for good.
pub async fn drop_deployment_finalizers(client: &Client, namespace: &str) {
    let uds: Api<UserDeployment> = Api::namespaced(client.clone(), namespace);
    let Ok(items) = uds.list_metadata(&ListParams::default()).await else {
        return;
    };
    // Sixteen at a time: a benchmark sandbox holds a thousand.
    use futures::StreamExt;
    futures::stream::iter(items)
        .for_each_concurrent(16, |ud| {
            let uds = uds.clone();
            async move {
                let _ = uds
                    .patch_metadata(
                        &ud.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({ "metadata": { "finalizers": null } })),
                    )
                    .await;
            }
        })
        .await;
}

/// Creates a UserDeployment, retrying while the namespace's quota is still being computed
/// (the apiserver refuses objects counted by a quota whose usage is not known yet).
pub async fn create_deployment(api: &Api<UserDeployment>, ud: &UserDeployment) -> Result<UserDeployment> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        match api.create(&PostParams::default(), ud).await {
            Ok(created) => return Ok(created),
            // Transient, and the apiserver says to try again: the quota not counted yet, or
            // its usage updated by another create at the same moment (409 on resourcequotas,
            // seen at concurrency 32 in `hack/bench`).
            Err(kube::Error::Api(s))
                if ((s.code == 403 && s.message.contains("status unknown for quota"))
                    || (s.code == 409 && s.message.contains("resourcequotas")))
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(anyhow::Error::from(e).context(format!("creating UserDeployment {}", ud.name_any()))),
        }
    }
}

/// The kubectl to use: `KUBECTL` (set by `hack/test`), else `kubectl` on PATH.
pub fn kubectl() -> Command {
    let bin = std::env::var("KUBECTL")
        .ok()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "kubectl".into());
    let mut cmd = Command::new(bin);
    cmd.arg("--kubeconfig").arg(kubeconfig_path());
    cmd
}

/// Runs `kubectl apply -f -` with `yaml` on stdin; returns (success, stdout + stderr).
pub fn kubectl_apply(yaml: &str) -> Result<(bool, String)> {
    use std::io::Write;
    let mut child = kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl (set KUBECTL, or put kubectl on PATH)")?;
    child
        .stdin
        .take()
        .context("kubectl stdin")?
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}
