//! Memory held per UserDeployment by the controller's caches, counted by a counting allocator (so
//! the figures are exact and repeatable, unlike RSS). It prints the bytes per object and fails
//! when they exceed the budget that keeps 10,000 UserDeployments within the 60 MiB RSS bar
//! (docs/benchmarks.md: `hack/bench scale` measures the RSS itself).
//!
//! One test in this binary on purpose: the allocator counts every thread.

use std::alloc::System;

use controller::child_cache::{ChildCache, RolloutState};
use crds::UserDeployment;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::json;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed.
fn live() -> isize {
    let s = GLOBAL.stats();
    (s.bytes_allocated as isize + s.bytes_reallocated) - s.bytes_deallocated as isize
}

/// A UserDeployment as the API sends it once Ready (what the benchmark and the UI create).
fn user_deployment(i: usize) -> UserDeployment {
    serde_json::from_value(json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "UserDeployment",
        "metadata": {
            "name": format!("app-{i}"), "namespace": format!("sandbox-team-{}", i % 10),
            "uid": format!("6f1c2d3e-4b5a-4c7d-8e9f-{i:012}"), "resourceVersion": format!("{}", 100000 + i),
            "generation": 1, "creationTimestamp": "2026-11-25T10:00:00Z",
            "finalizers": ["k8s-scheduler.io/cleanup"],
            "managedFields": [
                { "manager": "k8s-scheduler-server", "operation": "Update", "apiVersion": "k8s-scheduler.io/v1alpha1", "time": "2026-11-25T10:00:00Z", "fieldsType": "FieldsV1",
                  "fieldsV1": { "f:spec": { ".": {}, "f:parameters": { ".": {}, "f:GREETING": {} }, "f:templateRef": { ".": {}, "f:name": {} } } } },
                { "manager": "k8s-scheduler-controller", "operation": "Update", "apiVersion": "k8s-scheduler.io/v1alpha1", "time": "2026-11-25T10:00:00Z", "fieldsType": "FieldsV1",
                  "fieldsV1": { "f:metadata": { "f:finalizers": { ".": {}, "v:\"k8s-scheduler.io/cleanup\"": {} } } } },
                { "manager": "k8s-scheduler-controller", "operation": "Update", "apiVersion": "k8s-scheduler.io/v1alpha1", "time": "2026-11-25T10:00:05Z", "fieldsType": "FieldsV1", "subresource": "status",
                  "fieldsV1": { "f:status": { ".": {}, "f:conditions": {}, "f:phase": {}, "f:url": {} } } },
            ],
        },
        "spec": { "templateRef": { "name": "bench-web" }, "parameters": { "GREETING": format!("app-{i}") } },
        "status": {
            "phase": "Ready", "url": format!("https://u1-app-{i}.apps.example.com"), "observedGeneration": 1,
            "childrenHash": "0123456789abcdef",
            "services": [{ "name": "web", "replicas": 1, "readyReplicas": 1 }],
            "conditions": [
                { "type": "Ready", "status": "True", "reason": "Available", "message": "every service is available", "observedGeneration": 1, "lastTransitionTime": "2026-11-25T10:00:05Z" },
                { "type": "Progressing", "status": "False", "reason": "Available", "message": "", "observedGeneration": 1, "lastTransitionTime": "2026-11-25T10:00:05Z" },
                { "type": "Degraded", "status": "False", "reason": "AsExpected", "message": "", "observedGeneration": 1, "lastTransitionTime": "2026-11-25T10:00:01Z" },
            ],
        },
    }))
    .expect("fixture")
}

fn child<K: serde::de::DeserializeOwned>(kind: &str, api_version: &str, i: usize, suffix: &str) -> K {
    serde_json::from_value(json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": { "name": format!("app-{i}{suffix}"), "namespace": format!("sandbox-team-{}", i % 10),
            "resourceVersion": format!("{}", 200000 + i), "generation": 1,
            "labels": { "k8s-scheduler.io/deployment": format!("app-{i}") } },
    }))
    .expect("child fixture")
}

#[test]
fn caches_stay_within_the_memory_budget_per_user_deployment() {
    const N: usize = 2_000;
    // Budgets per UserDeployment: 60 MiB for 10,000 leaves ~6 KiB each including the runtime,
    // the watch buffers and the allocator's own overhead; the caches get less than half.
    const UD_CACHE_BUDGET: isize = 1_800;
    const CHILD_CACHE_BUDGET: isize = 512;

    let before = live();
    let (store, mut writer) = reflector::store::<UserDeployment>();
    writer.apply_watcher_event(&Event::Init);
    for i in 0..N {
        let mut ud = user_deployment(i);
        controller::trim_user_deployment(&mut ud);
        writer.apply_watcher_event(&Event::InitApply(ud));
    }
    writer.apply_watcher_event(&Event::InitDone);
    let ud_bytes = (live() - before) / N as isize;
    assert_eq!(store.len(), N);

    // The children of a one-service public app: Deployment, Service, NetworkPolicy, Ingress.
    let children: Vec<(Deployment, Service, NetworkPolicy, Ingress)> = (0..N)
        .map(|i| {
            (
                child("Deployment", "apps/v1", i, "-web"),
                child("Service", "v1", i, "-web"),
                child("NetworkPolicy", "networking.k8s.io/v1", i, ""),
                child("Ingress", "networking.k8s.io/v1", i, ""),
            )
        })
        .collect();
    let before = live();
    let cache = ChildCache::default();
    for (d, s, np, ing) in &children {
        cache.applied(d, 1, Some(RolloutState::of(d)));
        cache.applied(s, 2, None);
        cache.applied(np, 3, None);
        cache.applied(ing, 4, None);
        cache.observe(&Event::Apply(d.clone()), |d| Some(RolloutState::of(d)));
    }
    let child_bytes = (live() - before) / N as isize;
    assert_eq!(cache.len(), 4 * N);

    println!("UserDeployment cache: {ud_bytes} bytes per object (budget {UD_CACHE_BUDGET})");
    println!("child cache: {child_bytes} bytes per UserDeployment with 4 children (budget {CHILD_CACHE_BUDGET})");
    assert!(
        ud_bytes <= UD_CACHE_BUDGET,
        "the UserDeployment cache holds {ud_bytes} bytes per object, over the budget of {UD_CACHE_BUDGET}"
    );
    assert!(
        child_bytes <= CHILD_CACHE_BUDGET,
        "the child cache holds {child_bytes} bytes per UserDeployment, over the budget of {CHILD_CACHE_BUDGET}"
    );
}
