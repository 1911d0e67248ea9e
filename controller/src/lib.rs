//! The k8s-scheduler operator. It owns the `UserSandbox`, `Template` and `UserDeployment`
//! custom resources: every child object and every status is written here, by the elected leader.
#![forbid(unsafe_code)]

pub mod child_cache;
pub mod children;
pub mod config;
pub mod conflict;
pub mod diagnose;
#[cfg(test)]
mod fake_api;
pub mod gateway;
pub mod leader;
pub mod lean;
pub mod metrics;
pub mod reconcile;

use anyhow::Context as _;
use crds::{Template, UserDeployment, UserSandbox};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Config as WatcherConfig;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use crate::child_cache::{ChildCache, RolloutState};
use crate::config::Config;
use crate::gateway::HTTPRoute;
use crate::leader::{Election, Leader};
use crate::lean::LeanMeta;
use crate::metrics::{Metrics, Readiness};
use crate::reconcile::{Conflicts, Context, Stores, deployment, sandbox, template};
use policy::build::{MANAGED_BY, MANAGER};

/// Sets up logging: JSON when stderr is not a terminal, human-readable otherwise.
pub fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,tower=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

/// A kube client from `--kubeconfig`, else `KUBECONFIG`/in-cluster configuration.
pub async fn client(config: &Config) -> anyhow::Result<Client> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}: cannot read it", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("--kubeconfig {}: invalid", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration: set KUBECONFIG or --kubeconfig, or run in a cluster")?,
    };
    // No client-side read timeout (kube's default): a watch that sees no event for that long (a
    // quiet UserSandbox or Template watch) would fail with a timeout, and while the watcher backs
    // off after that error the controller's trigger stream stalls, delaying every new
    // UserDeployment by a second or more (`hack/bench latency` found it: the slowest apps were
    // always the ones created 60 s after start). Watches have their own idle timeout in
    // kube-runtime, and the apiserver ends them after `timeoutSeconds`.
    Ok(Client::try_from(kube_config)?)
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "controller".into());
    format!("{host}-{}", std::process::id())
}

/// Installs ring as the process's TLS crypto provider. The workspace also links aws-lc (through the
/// AWS SDK), and rustls refuses to guess between two; every binary calls this first.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs the controller until a signal arrives or leadership is lost.
pub async fn run(mut config: Config) -> anyhow::Result<()> {
    install_crypto_provider();
    if config.identity.is_empty() {
        config.identity = default_identity();
    }
    let client = client(&config).await?;
    client
        .apiserver_version()
        .await
        .context("the Kubernetes API does not answer; check KUBECONFIG / --kubeconfig")?;
    // How public apps are routed, decided once: a Gateway API installed later takes a restart.
    let served = gateway::http_routes_served(&client)
        .await
        .context("discovering whether the cluster serves the Gateway API (gateway.networking.k8s.io/v1)")?;
    let (routing, why) = gateway::resolve(config.build.routing, served).map_err(anyhow::Error::msg)?;
    tracing::info!(
        routing = %routing,
        gateway = %format!("{}/{}", config.build.gateway_namespace, config.build.gateway_name),
        "{why}"
    );
    config.build.routing = routing;
    config.http_routes_served = served;

    let metrics = Metrics::default();
    let ready = Readiness::default();
    let server = tokio::spawn(metrics::serve(
        metrics.clone(),
        config.metrics_addr,
        config.health_probe_addr,
        ready.clone(),
    ));
    // A standby is healthy and ready: it is waiting for the lease.
    ready.set();

    let leader = if config.leader_elect {
        let election = Election {
            namespace: config.lease_namespace.clone(),
            name: config.lease_name.clone(),
            identity: config.identity.clone(),
            lease_duration: config.lease_duration(),
        };
        tokio::select! {
            l = leader::acquire(client.clone(), election) => l,
            _ = shutdown_signal() => return Ok(()),
        }
    } else {
        Leader::always()
    };
    metrics.leader.set(1);

    let result = tokio::select! {
        r = run_controllers(client, config, leader.clone(), metrics.clone()) => r,
        _ = leader.lost() => Err(anyhow::anyhow!("lost the leader lease; exiting so that a fresh process stands by")),
        r = server => match r {
            Ok(Ok(())) => Err(anyhow::anyhow!("the metrics/probe server stopped")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.into()),
        },
    };
    metrics.leader.set(0);
    result
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

fn namespaced_api<K>(client: &Client, watch_namespace: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    if watch_namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), watch_namespace)
    }
}

/// Runs the three controllers (the caller holds the lease).
pub async fn run_controllers(client: Client, config: Config, leader: Leader, metrics: Metrics) -> anyhow::Result<()> {
    let wns = config.watch_namespace.clone();
    let concurrency = config.concurrency;
    let ctrl_config = kube::runtime::controller::Config::default().concurrency(concurrency);

    let sandboxes: Api<UserSandbox> = Api::all(client.clone());
    let sandbox_watch = || {
        let c = WatcherConfig::default().any_semantic();
        if config.sandbox_selector.is_empty() {
            c
        } else {
            c.labels(&config.sandbox_selector)
        }
    };
    // Sandboxes: reconciled when their spec changes or a child's spec or labels change; quota
    // usage updates (every pod start) do not trigger anything, usage is refreshed on resync.
    let (sandbox_store, sandbox_writer) = reflector::store();
    let sandbox_stream = watcher(sandboxes.clone(), sandbox_watch())
        .default_backoff()
        .modify(|sb: &mut UserSandbox| sb.metadata.managed_fields = None)
        .reflect(sandbox_writer);
    let sandbox_stream = triggers(sandbox_stream, spec_predicate::<UserSandbox>);
    // Quotas: metadata only. Their status changes with every pod, service and UserDeployment
    // created in the sandbox (2.5 events per app in `hack/bench`), and the full objects cost the
    // apiserver and this process for nothing; an edit of the spec shows in the managed fields
    // (the editor's entry), a deletion as a deletion.
    let quotas = triggers(
        watcher(
            Api::<LeanMeta<k8s_openapi::api::core::v1::ResourceQuota>>::all(client.clone()),
            managed(),
        )
        .default_backoff(),
        |q: &LeanMeta<k8s_openapi::api::core::v1::ResourceQuota>| spec_writes(&q.metadata),
    );
    let namespaces = triggers(
        watcher(
            Api::<LeanMeta<k8s_openapi::api::core::v1::Namespace>>::all(client.clone()),
            managed(),
        )
        .default_backoff(),
        |n: &LeanMeta<k8s_openapi::api::core::v1::Namespace>| {
            hash_of(&(&n.metadata.labels, n.metadata.deletion_timestamp.is_some()))
        },
    );
    // The members' RoleBindings (metadata only, and only theirs: the role label): one deleted or
    // edited by someone else is repaired at once. Membership changes come with the sandbox's spec.
    let member_bindings = triggers(
        watcher(
            Api::<LeanMeta<k8s_openapi::api::rbac::v1::RoleBinding>>::all(client.clone()),
            WatcherConfig::default()
                .labels(&format!(
                    "{MANAGED_BY}={MANAGER},{}",
                    policy::build::sandbox::MEMBER_ROLE_LABEL
                ))
                .any_semantic(),
        )
        .default_backoff(),
        |rb: &LeanMeta<k8s_openapi::api::rbac::v1::RoleBinding>| spec_writes(&rb.metadata),
    );
    // Every sandbox, whatever SANDBOX_SELECTOR says: owner ids (and hosts) are contested across
    // all of them. A change of one reconciles the managed sandboxes with the same owner id (the
    // younger one of two takes over when the older goes).
    let (all_sandbox_store, all_sandbox_writer) = reflector::store();
    let all_sandbox_stream = watcher(sandboxes.clone(), WatcherConfig::default().any_semantic())
        .default_backoff()
        .modify(|sb: &mut UserSandbox| sb.metadata.managed_fields = None)
        .reflect(all_sandbox_writer);
    let managed_sandboxes = sandbox_store.clone();
    // Not `owns_stream`: kube-runtime keys an owner found through a namespaced child (the quota)
    // as `<child namespace>/<name>`, a different key from the cluster-scoped sandbox's own, so
    // the two could run concurrently and the older one's status win: a sandbox stayed
    // QuotaPending for minutes in `hack/bench`. Owners are keyed by name alone here.
    let sandbox_ctrl = Controller::for_stream(sandbox_stream, sandbox_store.clone())
        .with_config(ctrl_config.clone())
        .watches_stream(quotas, |q| sandbox_owners(&q.metadata))
        .watches_stream(namespaces, |n| sandbox_owners(&n.metadata))
        .watches_stream(member_bindings, |rb| sandbox_owners(&rb.metadata))
        .watches_stream(
            triggers(all_sandbox_stream, spec_predicate::<UserSandbox>),
            move |changed: UserSandbox| {
                managed_sandboxes
                    .state()
                    .into_iter()
                    .filter(|sb| {
                        sb.spec.owner.user_id == changed.spec.owner.user_id && sb.name_any() != changed.name_any()
                    })
                    .map(|sb| ObjectRef::from_obj(&*sb))
                    .collect::<Vec<_>>()
            },
        );

    let templates: Api<Template> = namespaced_api(&client, &wns);
    let template_ctrl =
        Controller::new(templates.clone(), WatcherConfig::default().any_semantic()).with_config(ctrl_config.clone());
    let template_store = template_ctrl.store();

    let children = Arc::new(ChildCache::default());
    let (ud_store, ud_writer) = reflector::store();
    let (retrigger, retriggered) = futures::channel::mpsc::unbounded();
    let ctx = Context::new(
        client.clone(),
        config.clone(),
        leader,
        metrics.clone(),
        Stores {
            sandboxes: sandbox_store.clone(),
            all_sandboxes: all_sandbox_store.clone(),
            templates: template_store,
            deployments: ud_store.clone(),
        },
        children.clone(),
        Conflicts::new(retrigger),
    );

    // UserDeployments: cached without managedFields, to keep memory low at scale.
    let uds: Api<UserDeployment> = namespaced_api(&client, &wns);
    let deletions = ctx.clone();
    let ud_stream = watcher(uds, list_config(&config, WatcherConfig::default()))
        .default_backoff()
        .modify(trim_user_deployment)
        .reflect(ud_writer)
        .inspect(move |event| match event {
            // An app that goes may have held a host or a name that others were refused, and
            // a place under its sandbox's deployment limit that a suspended app may take.
            Ok(watcher::Event::Delete(ud)) => {
                deletions.conflicts.retrigger_losers();
                retrigger_suspended(&deletions, ud);
            }
            // One being deleted counts no more against the limit.
            Ok(watcher::Event::Apply(ud)) if ud.metadata.deletion_timestamp.is_some() => {
                retrigger_suspended(&deletions, ud)
            }
            _ => {}
        });
    // Our own status writes do not trigger a reconcile; spec, finalizer and deletion changes do.
    let ud_stream = triggers(ud_stream, ud_predicate);

    let by_template = ud_store.clone();
    let platform_ns = config.settings.platform_namespace.clone();
    let by_sandbox = ud_store.clone();
    let same_owner = all_sandbox_store.clone();
    let resync = futures::stream::unfold((), |()| async {
        tokio::time::sleep(deployment::RESYNC).await;
        Some(((), ()))
    });
    let mut ud_ctrl = Controller::for_stream(ud_stream, ud_store.clone())
        .with_config(ctrl_config)
        .reconcile_all_on(resync)
        .reconcile_on(retriggered)
        .watches(
            templates,
            WatcherConfig::default().any_semantic(),
            move |t: Template| {
                let tns = t.namespace().unwrap_or_default();
                let name = t.name_any();
                by_template
                    .state()
                    .into_iter()
                    .filter(|ud| {
                        ud.spec.template_ref.as_ref().is_some_and(|r| {
                            r.name == name
                                && match &r.namespace {
                                    Some(ns) => *ns == tns,
                                    None => ud.namespace().as_deref() == Some(tns.as_str()) || tns == platform_ns,
                                }
                        })
                    })
                    .map(|ud| ObjectRef::from_obj(&*ud))
                    .collect::<Vec<_>>()
            },
        )
        .watches_stream(
            triggers(watcher(sandboxes, sandbox_watch()).default_backoff(), sandbox_placement),
            move |sb: UserSandbox| {
                // The sandbox's apps, and those of sandboxes with the same owner id (one of them
                // holds the id; when it goes, another does).
                let namespaces: std::collections::HashSet<String> = same_owner
                    .state()
                    .iter()
                    .filter(|o| o.spec.owner.user_id == sb.spec.owner.user_id)
                    .map(|o| o.spec.namespace.clone())
                    .chain([sb.spec.namespace.clone()])
                    .collect();
                by_sandbox
                    .state()
                    .into_iter()
                    .filter(|ud| ud.namespace().is_some_and(|ns| namespaces.contains(&ns)))
                    .map(|ud| ObjectRef::from_obj(&*ud))
                    .collect::<Vec<_>>()
            },
        );
    // A watch per child kind the cluster serves (see `children`).
    macro_rules! watch_children {
        ($($k:ty),*) => {$(
            if <$k as crate::children::Child>::served(&config) {
                ud_ctrl = ud_ctrl.owns_stream(<$k as crate::children::Child>::events(&client, &config, &children));
            } else {
                children.unwatched::<$k>();
            }
        )*};
    }
    crate::children::each_child_kind!(watch_children);

    let gauges = {
        let metrics = metrics.clone();
        let (s, t, d) = (sandbox_store.clone(), ctx.templates.clone(), ud_store.clone());
        async move {
            loop {
                metrics
                    .managed
                    .get_or_create(&Metrics::kind("UserSandbox"))
                    .set(s.len() as i64);
                metrics
                    .managed
                    .get_or_create(&Metrics::kind("Template"))
                    .set(t.len() as i64);
                metrics
                    .managed
                    .get_or_create(&Metrics::kind("UserDeployment"))
                    .set(d.len() as i64);
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        }
    };

    // UserDeployments need the sandbox and template caches: start them once those are filled.
    let ud_ctx = ctx.clone();
    let ud_run = async move {
        let _ = ud_ctx.sandboxes.wait_until_ready().await;
        let _ = ud_ctx.all_sandboxes.wait_until_ready().await;
        let _ = ud_ctx.templates.wait_until_ready().await;
        tracing::info!("sandbox and template caches ready; reconciling UserDeployments");
        ud_ctrl
            .graceful_shutdown_on(shutdown_signal())
            .run(deployment::reconcile, deployment::error_policy, ud_ctx)
            .for_each(|_| async {})
            .await
    };
    let sb_run = sandbox_ctrl
        .graceful_shutdown_on(shutdown_signal())
        .run(sandbox::reconcile, sandbox::error_policy, ctx.clone())
        .for_each(|_| async {});
    let tpl_run = template_ctrl
        .graceful_shutdown_on(shutdown_signal())
        .run(template::reconcile, template::error_policy, ctx.clone())
        .for_each(|_| async {});
    tokio::select! {
        _ = async { tokio::join!(sb_run, tpl_run, ud_run) } => {},
        _ = gauges => {},
    }
    tracing::info!("controllers stopped");
    Ok(())
}

/// Reconciles again the suspended apps of `gone`'s namespace (an app deleted or being deleted
/// frees a place under the sandbox's deployment limit).
fn retrigger_suspended(ctx: &reconcile::Context, gone: &UserDeployment) {
    let Some(ns) = gone.metadata.namespace.as_deref() else {
        return;
    };
    for r in ctx.suspended.in_namespace(ns) {
        ctx.conflicts.retrigger(r);
    }
}

/// What the UserDeployment cache keeps of an object: everything the reconciler reads, without
/// what only costs memory at 10,000 objects (managedFields, kubectl's last-applied copy).
pub fn trim_user_deployment(ud: &mut UserDeployment) {
    // `None`, not `clear()`: a cleared Vec keeps its buffer.
    ud.metadata.managed_fields = None;
    ud.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// Turns watch events into reconcile triggers: an applied object only when `property` changed
/// since it was last seen (so relists and status-only updates trigger nothing), every deletion.
fn triggers<K, S>(events: S, property: fn(&K) -> Option<u64>) -> impl futures::Stream<Item = Result<K, watcher::Error>>
where
    K: Resource + Send + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    // Keyed by a hash of the uid: 16 bytes per object at 10,000 objects, not a copy of the uid.
    let mut seen: std::collections::HashMap<u64, Option<u64>> = std::collections::HashMap::new();
    let key = |o: &K| {
        let m = o.meta();
        hash_of(&(&m.uid, &m.namespace, &m.name)).unwrap_or_default()
    };
    events.flat_map(move |ev| {
        let out: Vec<Result<K, watcher::Error>> = match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let value = property(&o);
                if seen.insert(key(&o), value) == Some(value) {
                    vec![]
                } else {
                    vec![Ok(o)]
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                seen.remove(&key(&o));
                vec![Ok(o)]
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => vec![],
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(out)
    })
}

/// Trigger property of a child without `metadata.generation` (ResourceQuota, RoleBinding): its
/// labels, its deletion, and every managed-fields entry except the status subresource's. A spec
/// edit adds or changes its writer's entry (who and when: the lean watch does not parse field
/// sets); status updates (the quota controller's usage) change nothing here.
fn spec_writes(meta: &kube::api::ObjectMeta) -> Option<u64> {
    let writes: Vec<(String, String, String)> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|f| f.subresource.as_deref().unwrap_or_default().is_empty())
        .map(|f| {
            (
                f.manager.clone().unwrap_or_default(),
                f.operation.clone().unwrap_or_default(),
                f.time.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    hash_of(&(&meta.labels, meta.deletion_timestamp.is_some(), writes))
}

/// Trigger property of a sandbox for its apps: its spec, its deletion, and what decides whether
/// apps may run in its namespace (the namespace its status names and why it is not Ready).
fn sandbox_placement(sb: &UserSandbox) -> Option<u64> {
    let status = sb.status.as_ref();
    let ready = status.and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == crds::conditions::READY)
            .map(|c| (c.status.clone(), c.reason.clone()))
    });
    hash_of(&(
        sb.metadata.generation,
        sb.metadata.deletion_timestamp.is_some(),
        status.and_then(|s| s.namespace.clone()),
        ready,
    ))
}

/// The UserSandboxes owning a child, keyed as the sandboxes themselves are (cluster-scoped: no
/// namespace).
fn sandbox_owners(meta: &ObjectMeta) -> Vec<ObjectRef<UserSandbox>> {
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == "UserSandbox" && o.api_version.starts_with("k8s-scheduler.io/"))
        .map(|o| ObjectRef::new(&o.name))
        .collect()
}

/// Trigger property: generation (spec changes) and deletion.
fn spec_predicate<K: Resource>(obj: &K) -> Option<u64> {
    hash_of(&(obj.meta().generation, obj.meta().deletion_timestamp.is_some()))
}

fn hash_of<T: std::hash::Hash>(value: &T) -> Option<u64> {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    Some(h.finish())
}

/// Trigger predicate of UserDeployments: generation (spec), finalizers and deletion.
fn ud_predicate(ud: &UserDeployment) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ud.metadata.generation.hash(&mut h);
    ud.metadata.finalizers.hash(&mut h);
    ud.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// Full watch of a child kind feeding the child cache (objects are not kept), as owner triggers.
pub(crate) fn child_events<K>(
    client: &Client,
    config: &Config,
    cache: &Arc<ChildCache>,
    rollout: fn(&K) -> Option<RolloutState>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let cache = cache.clone();
    watcher(
        namespaced_api::<K>(client, &config.watch_namespace),
        list_config(config, managed()),
    )
    .default_backoff()
    .map_ok(move |ev| {
        cache.observe(&ev, rollout);
        ev
    })
    .touched_objects()
}

/// Full watch of the HTTPRoutes (their status says whether the Gateway accepted them) feeding
/// the child cache, as owner triggers. Routes are few and small; they are not kept.
pub(crate) fn route_events(
    client: &Client,
    config: &Config,
    cache: &Arc<ChildCache>,
) -> impl futures::Stream<Item = Result<HTTPRoute, watcher::Error>> + Send + 'static {
    let cache = cache.clone();
    watcher(
        namespaced_api::<HTTPRoute>(client, &config.watch_namespace),
        list_config(config, managed()),
    )
    .default_backoff()
    .map_ok(move |ev| {
        if let watcher::Event::Apply(r) | watcher::Event::InitApply(r) = &ev {
            cache.note_refusal(r, r.refusal());
        }
        cache.observe(&ev, |_| None);
        ev
    })
    .touched_objects()
}

/// How the large caches (UserDeployments, children) are filled: streaming lists, or small pages.
fn list_config(config: &Config, watch: WatcherConfig) -> WatcherConfig {
    if config.streaming_lists {
        watch.streaming_lists()
    } else {
        watch.any_semantic().page_size(100)
    }
}

fn managed() -> WatcherConfig {
    WatcherConfig::default()
        .labels(&format!("{MANAGED_BY}={MANAGER}"))
        .any_semantic()
}
