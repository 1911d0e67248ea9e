//! k8s-scheduler controller.
#![forbid(unsafe_code)]
