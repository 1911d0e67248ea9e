//! Test support for k8s-scheduler's integration and end-to-end tests.
//!
//! - [`client`] gives a kube client for the cluster under test: the one named by `E2E_KUBECONFIG`
//!   (kind, k3d, a real cluster) or, by default, the local control plane of `hack/cluster up`.
//! - [`with_namespace`] runs a test body in a fresh temporary namespace and deletes it afterwards,
//!   also when the body panics.
//! - [`wait`] waits on a condition of an object with a timeout (never a bare sleep).
//! - [`operator`] installs the CRDs, starts controller processes and creates sandboxes.
//! - [`services`] gives each test its own fresh PostgreSQL database and a Redis key space.
//! - [`oidc`] runs a real OpenID Connect provider on loopback (`hack/oidc`) and signs in at it
//!   like a browser.
//!
//! A test that needs a service it cannot reach fails with a message saying how to start it; it
//! never skips silently.
#![forbid(unsafe_code)]

pub mod apiserver;
pub mod browser;
pub mod cluster;
pub mod net;
pub mod oidc;
pub mod operator;
pub mod real_node;
pub mod services;
pub mod stripe;
pub mod suite;
pub mod wait;

pub use cluster::{client, unique_name, with_namespace};

/// `rel` inside the repository this test runs from. Cargo sets CARGO_MANIFEST_DIR when it runs a
/// test; the value compiled in names whichever checkout built the binary first when several
/// checkouts share a target dir (CI clones do), so it is only the fallback.
pub fn repo_path(rel: &str) -> std::path::PathBuf {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let crate_dir = std::path::PathBuf::from(crate_dir);
    crate_dir.parent().unwrap_or(&crate_dir).join(rel)
}
pub use wait::{wait_for, wait_until_gone};
