//! End-to-end tests on a real node (`hack/cluster up --real`: containerd, kubelet, kube-router,
//! CoreDNS, Traefik) with the images of `hack/image`, in one binary. Built only with
//! `--features real-node`: `hack/test` runs it after the kwok suite
//! (`cargo test -p e2e --features real-node --test real_node`). Suites take turns on the cluster
//! ([`e2e::suite`]).

mod apps;
mod chart;
mod logs;
