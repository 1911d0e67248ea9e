//! The server's integration tests: one binary (one link on 2 cores, not one per file), a module
//! per topic, and `common`, the shared harness (servers, sign-in through the test OpenID
//! provider, requests through the router).

mod common;

mod accounts;
mod billing;
mod billing_flow;
mod config;
mod email;
mod event_streams;
mod handlers;
mod hostile_input;
mod kube_api;
mod logs_api;
mod openapi_statuses;
mod secret_stores;
mod secrets_api;
mod session_config;
mod session_stores;
mod signin;
mod store;
mod stripe;
mod teams;
mod templates_api;
