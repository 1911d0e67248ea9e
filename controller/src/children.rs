//! The child kinds of a UserDeployment, in one list: [`each_child_kind!`]. Applying, pruning,
//! cleaning up, counting, the child cache's tables and the watches all come from it, so a new
//! kind is one line there, its [`Child`] impl below (which field of the build holds it, how it is
//! watched) and its builder in `policy::build::deployment`.
//!
//! The ExternalSecret is not in the list: a kind without Rust types (a `DynamicObject` whose API
//! may not be served), applied and pruned through a dynamic Api and not watched.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::NamespaceResourceScope;
pub use k8s_openapi::api::apps::v1::Deployment;
pub use k8s_openapi::api::core::v1::{ConfigMap, Service};
pub use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
pub use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use policy::build::deployment::DeploymentChildren;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::child_cache::ChildCache;
use crate::config::Config;
pub use crate::gateway::HTTPRoute;
use crate::lean::{DeploymentRollout, LeanMeta};
use crate::reconcile::{Context, Error};

/// The one list of a UserDeployment's child kinds, in apply order: config before the workloads
/// that mount it, Services before the routes that send traffic to them. Cleanup goes in reverse:
/// routes first (stop traffic), then the workloads. `$visit!` is called with the types.
macro_rules! each_child_kind {
    ($visit:ident) => {
        $visit!(
            $crate::children::ConfigMap,
            $crate::children::Deployment,
            $crate::children::Service,
            $crate::children::PodDisruptionBudget,
            $crate::children::NetworkPolicy,
            $crate::children::Ingress,
            $crate::children::HTTPRoute
        )
    };
}
pub(crate) use each_child_kind;

/// A kind of child of a UserDeployment.
pub trait Child:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The kind's name (the cache's table of it).
    const KIND: &'static str;
    /// Compared by `metadata.generation` instead of `resourceVersion`: others write its status
    /// often (the Deployment controller, the gateway controller).
    const BY_GENERATION: bool = false;
    /// What its watch delivers: a lean form of the object.
    type Watched: Resource<DynamicType = ()> + Send + 'static;
    /// The desired objects of this kind in a build.
    fn desired(c: &DeploymentChildren) -> &[Self];
    /// Whether the cluster serves the kind; one it does not is neither watched nor pruned.
    fn served(_config: &Config) -> bool {
        true
    }
    /// The watch that keeps the child cache current and triggers the owner's reconcile.
    fn events(
        client: &Client,
        config: &Config,
        cache: &Arc<ChildCache>,
    ) -> BoxStream<'static, Result<Self::Watched, watcher::Error>>;
}

/// A kind watched as metadata only (`LeanMeta`), compared by `resourceVersion`.
macro_rules! meta_child {
    ($k:ty, $kind:literal, |$c:ident| $desired:expr) => {
        impl Child for $k {
            const KIND: &'static str = $kind;
            type Watched = LeanMeta<$k>;
            fn desired($c: &DeploymentChildren) -> &[Self] {
                $desired
            }
            fn events(
                client: &Client,
                config: &Config,
                cache: &Arc<ChildCache>,
            ) -> BoxStream<'static, Result<Self::Watched, watcher::Error>> {
                crate::child_events::<LeanMeta<$k>>(client, config, cache, |_| None).boxed()
            }
        }
    };
}

meta_child!(ConfigMap, "ConfigMap", |c| &c.config_maps);
meta_child!(Service, "Service", |c| &c.services);
meta_child!(PodDisruptionBudget, "PodDisruptionBudget", |c| &c.disruption_budgets);
meta_child!(NetworkPolicy, "NetworkPolicy", |c| c.network_policy.as_slice());
meta_child!(Ingress, "Ingress", |c| c.ingress.as_slice());

impl Child for Deployment {
    const KIND: &'static str = "Deployment";
    const BY_GENERATION: bool = true;
    /// With its rollout state, so readiness needs no extra read.
    type Watched = DeploymentRollout;
    fn desired(c: &DeploymentChildren) -> &[Self] {
        &c.deployments
    }
    fn events(
        client: &Client,
        config: &Config,
        cache: &Arc<ChildCache>,
    ) -> BoxStream<'static, Result<Self::Watched, watcher::Error>> {
        crate::child_events::<DeploymentRollout>(client, config, cache, |d| Some(d.rollout())).boxed()
    }
}

impl Child for HTTPRoute {
    const KIND: &'static str = "HTTPRoute";
    const BY_GENERATION: bool = true;
    /// Whole: its status says whether the Gateway accepted it.
    type Watched = HTTPRoute;
    fn desired(c: &DeploymentChildren) -> &[Self] {
        c.http_route.as_slice()
    }
    /// Wherever the cluster serves HTTPRoutes, in either routing mode: a deleted route comes
    /// back, the Gateway's verdict reaches the app's status, and after a switch to Ingresses the
    /// old routes are still counted (and pruned).
    fn served(config: &Config) -> bool {
        config.http_routes_served
    }
    fn events(
        client: &Client,
        config: &Config,
        cache: &Arc<ChildCache>,
    ) -> BoxStream<'static, Result<Self::Watched, watcher::Error>> {
        crate::route_events(client, config, cache).boxed()
    }
}

macro_rules! kind_names {
    ($($k:ty),*) => { [$(<$k as Child>::KIND),*] };
}
macro_rules! kinds_by_generation {
    ($($k:ty),*) => { [$(<$k as Child>::BY_GENERATION),*] };
}

/// Names of the child kinds, in list order (the child cache's tables).
pub const KINDS: &[&str] = &each_child_kind!(kind_names);
/// Whether each kind of [`KINDS`] is compared by generation.
pub const BY_GENERATION: &[bool] = &each_child_kind!(kinds_by_generation);

/// Applies every desired child (unchanged ones are skipped by the child cache).
pub async fn apply_all(ctx: &Context, parent_kind: &str, c: &DeploymentChildren) -> Result<(), Error> {
    macro_rules! apply {
        ($($k:ty),*) => {$(
            for obj in <$k as Child>::desired(c) {
                ctx.apply_child(parent_kind, obj).await?;
            }
        )*};
    }
    each_child_kind!(apply);
    Ok(())
}

/// `Kind/name` of every desired child, in list order.
pub fn names(c: &DeploymentChildren) -> Vec<String> {
    let mut names = Vec::new();
    macro_rules! collect {
        ($($k:ty),*) => {$(
            names.extend(<$k as Child>::desired(c).iter().map(|o| format!("{}/{}", <$k as Child>::KIND, o.name_any())));
        )*};
    }
    each_child_kind!(collect);
    names
}

/// How many children a build holds (of the listed kinds).
pub fn count(c: &DeploymentChildren) -> usize {
    let mut n = 0;
    macro_rules! add {
        ($($k:ty),*) => {$( n += <$k as Child>::desired(c).len(); )*};
    }
    each_child_kind!(add);
    n
}

type PruneFn = for<'a> fn(&'a Context, &'a str, &'a str, &'a str, Vec<String>) -> BoxFuture<'a, Result<usize, Error>>;

fn prune_kind<'a, K: Child>(
    ctx: &'a Context,
    parent_kind: &'a str,
    namespace: &'a str,
    selector: &'a str,
    keep: Vec<String>,
) -> BoxFuture<'a, Result<usize, Error>> {
    Box::pin(async move {
        if !K::served(&ctx.config) {
            return Ok(0);
        }
        ctx.prune::<K>(parent_kind, namespace, selector, &keep).await
    })
}

/// Deletes the children matching `selector` in `namespace` that `keep` does not hold (all of
/// them with `None`: cleanup), kind by kind in reverse list order: routes first.
pub async fn prune_all(
    ctx: &Context,
    parent_kind: &str,
    namespace: &str,
    selector: &str,
    keep: Option<&DeploymentChildren>,
) -> Result<(), Error> {
    macro_rules! pruners {
        ($($k:ty),*) => {
            [$((
                prune_kind::<$k> as PruneFn,
                keep.map(|c| <$k as Child>::desired(c).iter().map(|o| o.name_any()).collect::<Vec<_>>())
                    .unwrap_or_default(),
            )),*]
        };
    }
    for (prune, keep) in each_child_kind!(pruners).into_iter().rev() {
        prune(ctx, parent_kind, namespace, selector, keep).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_with_its_own_name() {
        let mut kinds = KINDS.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), KINDS.len(), "{KINDS:?}");
        macro_rules! check {
            ($($k:ty),*) => {$(
                assert_eq!(<$k as Child>::KIND, <$k as Resource>::kind(&()));
                assert_eq!(<$k as Child>::KIND, <<$k as Child>::Watched as Resource>::kind(&()));
            )*};
        }
        each_child_kind!(check);
        assert_eq!(
            KINDS
                .iter()
                .zip(BY_GENERATION)
                .filter(|(_, g)| **g)
                .map(|(k, _)| *k)
                .collect::<Vec<_>>(),
            ["Deployment", "HTTPRoute"]
        );
    }
}
