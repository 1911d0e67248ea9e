//! Kubernetes RBAC follows a sandbox's members (issue 16): with `MEMBER_IDENTITY`, the operator
//! binds each member's Kubernetes identity in the sandbox namespace to the chart's ClusterRole of
//! their role (templates/sandbox-roles.yaml), and `kubectl auth can-i --as <identity>` answers
//! as the role says, following every change of the members. The operator runs with the chart's
//! own RBAC (templates/operator-rbac.yaml), so binding those roles needs nothing more than it
//! grants. The chart's ClusterRoles that aggregate into Kubernetes' view and edit are checked too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use crds::UserSandbox;
use e2e::operator::{ControllerProcess, TestSandbox, kubectl, kubectl_apply};
use e2e::{unique_name, with_namespace};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use policy::build::sandbox::MEMBER_ROLE_LABEL;
use serde_json::json;
use serde_yaml::Value;

/// How long RBAC may take to follow a change: the controller's reconcile, the apiserver's RBAC
/// cache, and for aggregation the controller-manager's clusterrole-aggregation controller.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Kubernetes version `helm template` renders for (as the chart tests do).
const KUBE_VERSION: &str = "v1.36.3";

/// What is asked, as `kubectl auth can-i` arguments.
const REQUESTS: [&[&str]; 10] = [
    &["create", "userdeployments.k8s-scheduler.io"],
    &["list", "userdeployments.k8s-scheduler.io"],
    &["patch", "templates.k8s-scheduler.io"],
    &["get", "pods", "--subresource=log"],
    &["list", "replicasets.apps"],
    // Secrets hold the apps' values (the server's); pods and their Deployments are the
    // operator's (restart an app through its UserDeployment); RBAC is the platform's.
    &["get", "secrets"],
    &["delete", "pods"],
    &["create", "pods", "--subresource=exec"],
    &["patch", "deployments.apps"],
    &["create", "rolebindings.rbac.authorization.k8s.io"],
];

/// The answers to [`REQUESTS`] of each role (`None`: someone who is not a member).
fn allowed(role: Option<&str>) -> [bool; 10] {
    let read = [false, true, false, true, true, false, false, false, false, false];
    let write = [true, true, true, true, true, false, false, false, false, false];
    match role {
        Some("admin" | "developer") => write,
        Some("viewer") => read,
        _ => [false; 10],
    }
}

/// `kubectl auth can-i --as <user> <request> -n <ns>`.
fn can_i(user: &str, ns: &str, request: &[&str]) -> Result<bool> {
    let out = kubectl()
        .args(["auth", "can-i", "--as", user, "-n", ns])
        .args(request)
        .stdin(Stdio::null())
        .output()
        .context("running kubectl (set KUBECTL, or put kubectl on PATH)")?;
    let answer = String::from_utf8_lossy(&out.stdout);
    match answer.lines().next().map(str::trim) {
        Some("yes") => Ok(true),
        Some(no) if no.starts_with("no") => Ok(false),
        _ => bail!(
            "kubectl auth can-i --as {user} {request:?}: {answer}{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Where the answers for `who` (identity, role) differ from the role's, as lines to read.
fn mismatches(ns: &str, who: &[(&str, Option<&str>)]) -> Result<Vec<String>> {
    let mut wrong = vec![];
    for (user, role) in who {
        for (request, want) in REQUESTS.iter().zip(allowed(*role)) {
            let got = can_i(user, ns, request)?;
            if got != want {
                wrong.push(format!("{user} ({role:?}) {request:?}: can-i {got}, want {want}"));
            }
        }
    }
    Ok(wrong)
}

/// Waits until every identity of `who` has exactly the rights of its role in `ns`.
async fn until_rights(ns: &str, who: &[(&str, Option<&str>)], what: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let wrong = mismatches(ns, who)?;
        if wrong.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: after {TIMEOUT:?}:\n{}", wrong.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until `check` answers true.
async fn until(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if check()? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not reached after {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The members' RoleBindings in `ns`: name → (ClusterRole, subjects).
async fn member_bindings(
    client: &Client,
    ns: &str,
) -> Result<std::collections::BTreeMap<String, (String, Vec<String>)>> {
    let api: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default().labels(MEMBER_ROLE_LABEL))
        .await?
        .items
        .into_iter()
        .map(|rb| {
            let subjects = rb.subjects.iter().flatten().map(|s| s.name.clone()).collect();
            (rb.name_any(), (rb.role_ref.name, subjects))
        })
        .collect())
}

/// The chart's sandbox ClusterRoles and the operator's RBAC, rendered for `release` in `ns`.
fn render(release: &str, ns: &str, sets: &[&str]) -> Result<Vec<Value>> {
    let mut cmd = Command::new(
        std::env::var("HELM")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "helm".into()),
    );
    cmd.args(["template", release])
        .arg(e2e::repo_path("charts/k8s-scheduler"))
        .args(["--namespace", ns, "--kube-version", KUBE_VERSION])
        .args(["--show-only", "templates/sandbox-roles.yaml"])
        .args(["--show-only", "templates/operator-rbac.yaml"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("running helm (hack/test sets HELM)")?;
    ensure!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut docs = vec![];
    for d in String::from_utf8_lossy(&out.stdout).split("\n---") {
        let v: Value = serde_yaml::from_str(d).with_context(|| format!("rendered YAML:\n{d}"))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// `kubectl apply` of the rendered documents of `kinds`.
fn apply(docs: &[Value], kinds: &[&str]) -> Result<Vec<String>> {
    let chosen: Vec<&Value> = docs
        .iter()
        .filter(|d| kinds.contains(&d["kind"].as_str().unwrap_or_default()))
        .collect();
    let yaml = chosen
        .iter()
        .map(serde_yaml::to_string)
        .collect::<Result<Vec<_>, _>>()?
        .join("---\n");
    let (ok, out) = kubectl_apply(&yaml)?;
    ensure!(ok, "kubectl apply: {out}");
    Ok(chosen
        .iter()
        .filter(|d| d["metadata"]["namespace"].is_null())
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or_default().to_lowercase(),
                d["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect())
}

/// Deletes cluster-scoped objects (`kind/name`), best effort.
fn delete_cluster_objects(objects: &[String]) {
    if !objects.is_empty() {
        let _ = kubectl().arg("delete").args(objects).arg("--ignore-not-found").output();
    }
}

/// A kubeconfig that authenticates as the ServiceAccount `sa` of `ns` (a one-hour token).
fn service_account_kubeconfig(sa: &str, ns: &str) -> Result<PathBuf> {
    let out = kubectl()
        .args(["create", "token", sa, "-n", ns, "--duration=1h"])
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl create token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    let admin: Value = serde_yaml::from_str(&std::fs::read_to_string(e2e::cluster::kubeconfig_path())?)?;
    let kc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{ "name": "c", "cluster": serde_json::to_value(&admin["clusters"][0]["cluster"])? }],
        "users": [{ "name": "sa", "user": { "token": token } }],
        "contexts": [{ "name": "sa", "context": { "cluster": "c", "user": "sa" } }],
        "current-context": "sa",
    });
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique_name("members")));
    std::fs::write(&path, serde_yaml::to_string(&kc)?)?;
    Ok(path)
}

/// Starts a controller for `sb` with `extra` environment, authenticating with `kubeconfig`.
fn start(sb: &TestSandbox, kubeconfig: &Path, extra: &[(&str, &str)]) -> Result<ControllerProcess> {
    let base = sb.controller_env();
    let mut env: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(extra);
    ControllerProcess::start_with_kubeconfig(kubeconfig, &env)
}

async fn set_members(client: &Client, sb: &TestSandbox, members: serde_json::Value) -> Result<()> {
    Api::<UserSandbox>::all(client.clone())
        .patch(
            &sb.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "members": members } })),
        )
        .await?;
    Ok(())
}

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const ERIN: &str = "erin@example.com";

#[tokio::test]
async fn kubectl_follows_the_members_roles() -> Result<()> {
    let _turn = e2e::suite::turn("members").await;
    with_namespace(|client, ns| async move {
        let release = unique_name("mbr");
        let docs = render(&release, &ns, &[])?;
        let mut cluster_objects = apply(&docs, &["ClusterRole", "ClusterRoleBinding", "ServiceAccount"])?;
        let sb = TestSandbox::create(
            &client,
            json!({ "members": [
                { "userId": "alice", "email": ALICE, "role": "admin" },
                { "userId": "bob", "email": BOB, "role": "developer" },
                { "userId": "carol", "email": CAROL, "role": "viewer" },
                { "userId": "dave", "role": "developer" },
            ] }),
        )
        .await?;
        let owner = format!("{}@example.com", sb.user_id);
        let sbns = sb.namespace.clone();
        let mut kubeconfig = None;
        let mut ctrl: Option<ControllerProcess> = None;
        let scenario = async {
            // The operator with the chart's ServiceAccount and ClusterRole: `bind` on the sandbox
            // roles is what lets it grant them.
            let kc = service_account_kubeconfig(&format!("{release}-operator"), &ns)?;
            kubeconfig = Some(kc.clone());
            ctrl = Some(start(
                &sb,
                &kc,
                &[("MEMBER_IDENTITY", "email"), ("SANDBOX_ROLE_PREFIX", &release)],
            )?);
            let ready = sb.wait_ready().await?;

            let role = |r: &str| format!("{release}-sandbox-{r}");
            let mut admins = vec![ALICE.to_string(), owner.clone()];
            admins.sort();
            let want = [
                ("k8s-scheduler-admins".to_string(), (role("admin"), admins)),
                ("k8s-scheduler-developers".into(), (role("developer"), vec![BOB.into()])),
                ("k8s-scheduler-viewers".into(), (role("viewer"), vec![CAROL.into()])),
            ]
            .into_iter()
            .collect();
            let got = member_bindings(&client, &sbns).await?;
            ensure!(got == want, "member RoleBindings:\n got {got:?}\nwant {want:?}");
            let message = ready
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .find(|c| c.type_ == "Ready")
                .map(|c| c.message.clone())
                .unwrap_or_default();
            ensure!(
                message.contains("without an email address") && message.ends_with(": dave"),
                "the Ready message names the member without an email: {message}"
            );

            until_rights(
                &sbns,
                &[
                    (ALICE, Some("admin")),
                    (&owner, Some("admin")),
                    (BOB, Some("developer")),
                    (CAROL, Some("viewer")),
                    (ERIN, None),
                ],
                "each member's rights as their role says",
            )
            .await?;

            // Carol becomes a developer, then Bob leaves.
            let members = |carol: &str, with_bob: bool| {
                let mut m = vec![
                    json!({ "userId": "alice", "email": ALICE, "role": "admin" }),
                    json!({ "userId": "carol", "email": CAROL, "role": carol }),
                    json!({ "userId": "dave", "role": "developer" }),
                ];
                if with_bob {
                    m.push(json!({ "userId": "bob", "email": BOB, "role": "developer" }));
                }
                serde_json::Value::Array(m)
            };
            set_members(&client, &sb, members("developer", true)).await?;
            until_rights(&sbns, &[(CAROL, Some("developer"))], "Carol a developer").await?;
            let got = member_bindings(&client, &sbns).await?;
            ensure!(
                !got.contains_key("k8s-scheduler-viewers"),
                "no viewer left, no viewers' RoleBinding: {got:?}"
            );
            set_members(&client, &sb, members("developer", false)).await?;
            until_rights(&sbns, &[(BOB, None)], "Bob gone").await?;
            until_rights(
                &sbns,
                &[(ALICE, Some("admin")), (CAROL, Some("developer"))],
                "the others keep their rights",
            )
            .await?;

            // A binding deleted by hand comes back at once (the operator watches them).
            let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), &sbns);
            rbs.delete("k8s-scheduler-admins", &DeleteParams::default()).await?;
            until("the admins' RoleBinding made again", || {
                Ok(can_i(ALICE, &sbns, REQUESTS[0])? && can_i(&owner, &sbns, REQUESTS[0])?)
            })
            .await?;

            // The chart's aggregated roles: Kubernetes' view reads the platform's resources, edit
            // writes them too.
            for (user, cluster_role) in [("viewer@example.com", "view"), ("editor@example.com", "edit")] {
                let rb: RoleBinding = serde_json::from_value(json!({
                    "metadata": { "name": unique_name("agg"), "namespace": sbns },
                    "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role },
                    "subjects": [{ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user }],
                }))?;
                rbs.create(&Default::default(), &rb).await?;
            }
            until("view and edit take the platform's resources", || {
                let view = |r: &[&str]| can_i("viewer@example.com", &sbns, r);
                let edit = |r: &[&str]| can_i("editor@example.com", &sbns, r);
                Ok(view(REQUESTS[1])?
                    && !view(REQUESTS[0])?
                    && edit(REQUESTS[0])?
                    && edit(REQUESTS[2])?
                    && edit(&["delete", "userdeployments.k8s-scheduler.io"])?)
            })
            .await?;

            // The kube-apiserver's OIDC users (`--oidc-username-prefix=oidc:`), and the roles of
            // another release (SANDBOX_ROLE_PREFIX): the operator changes the subjects and makes
            // the RoleBindings again for their new roleRef (an admin's kubeconfig: the chart's
            // operator may bind only its own release's roles).
            if let Some(mut c) = ctrl.take() {
                c.kill();
                let logs = c.logs();
                ensure!(
                    !logs.contains("forbidden"),
                    "the operator hit an RBAC denial with the chart's ClusterRole:\n{logs}"
                );
            }
            let release2 = unique_name("mbr");
            let docs2 = render(&release2, &ns, &["rbac.aggregateToDefaultRoles=false"])?;
            cluster_objects.extend(apply(
                &docs2
                    .into_iter()
                    .filter(|d| d["metadata"]["name"].as_str().is_some_and(|n| n.contains("-sandbox-")))
                    .collect::<Vec<_>>(),
                &["ClusterRole"],
            )?);
            ctrl = Some(start(
                &sb,
                &e2e::cluster::kubeconfig_path(),
                &[("MEMBER_IDENTITY", "oidc:oidc:"), ("SANDBOX_ROLE_PREFIX", &release2)],
            )?);
            until_rights(
                &sbns,
                &[
                    ("oidc:alice@example.com", Some("admin")),
                    ("oidc:carol@example.com", Some("developer")),
                    (ALICE, None),
                    (CAROL, None),
                ],
                "the OIDC identities, bound to the other release's roles",
            )
            .await?;
            let got = member_bindings(&client, &sbns).await?;
            ensure!(
                got.values()
                    .all(|(r, _)| r.starts_with(&format!("{release2}-sandbox-"))),
                "bound to {release2}'s roles: {got:?}"
            );

            // MEMBER_IDENTITY=none: no member bindings.
            if let Some(mut c) = ctrl.take() {
                c.kill();
            }
            ctrl = Some(start(
                &sb,
                &e2e::cluster::kubeconfig_path(),
                &[("MEMBER_IDENTITY", "none")],
            )?);
            let none_left = async {
                for _ in 0..(TIMEOUT.as_millis() / 500) {
                    if member_bindings(&client, &sbns).await?.is_empty() {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                bail!(
                    "member RoleBindings left with MEMBER_IDENTITY=none: {:?}",
                    member_bindings(&client, &sbns).await?
                )
            };
            none_left.await?;
            until_rights(
                &sbns,
                &[("oidc:alice@example.com", None)],
                "nobody bound with MEMBER_IDENTITY=none",
            )
            .await
        }
        .await;
        let logs = ctrl.as_ref().map(|c| c.logs()).unwrap_or_default();
        let cleanup = sb.delete().await;
        drop(ctrl);
        if let Some(kc) = kubeconfig {
            let _ = std::fs::remove_file(kc);
        }
        delete_cluster_objects(&cluster_objects);
        scenario.with_context(|| format!("controller log:\n{logs}"))?;
        cleanup
    })
    .await
}
