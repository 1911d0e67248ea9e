//! End-to-end tests on the local control plane (`hack/cluster up`: kube-apiserver, kwok node), in
//! one binary with the e2e crate as its harness. Each module is a suite; suites take turns on the
//! shared cluster and the tests of one suite run side by side ([`e2e::suite`]). One suite:
//! `hack/test -p e2e --test kwok operator::` (a filter on the test names).

mod billing;
mod chart;
mod examples;
mod gitops;
mod members;
mod oidc_provider;
mod operator;
mod secret_services;
mod smoke;
mod suspend;
mod ui;
