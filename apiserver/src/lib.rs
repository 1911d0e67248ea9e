//! k8s-scheduler apiserver.
#![forbid(unsafe_code)]
