//! The platform's rules in one place, used by the controller and the HTTP server alike, so the
//! API refuses what the controller would refuse, with the same words:
//!
//! - [`settings`]: the values both binaries read, each with one parser;
//! - [`names`]: hosts, namespaces, child and Secret names;
//! - [`templates`]: which Template a reference means and who may use it;
//! - [`validate`]: checks of tenant input, the only way to the build's inputs;
//! - [`build`]: the desired child objects, typed;
//! - [`route`]: the Gateway API `HTTPRoute` type;
//! - [`suspend`]: which apps of a sandbox over its deployment limit are suspended.
//!
//! Pure: no client, no clock, no I/O.
#![forbid(unsafe_code)]

pub mod build;
pub mod names;
pub mod route;
pub mod settings;
pub mod suspend;
pub mod templates;
pub mod validate;

pub use settings::{BuildSettings, Settings};
