//! A Stripe front for tests: an HTTP server on loopback that forwards every request to
//! stripe-mock (`E2E_STRIPE_MOCK_URL`, started by `hack/test`) and
//!
//! - records each request (method, path, query, form body, `Idempotency-Key`), so a test can check
//!   what the server sent ([`StripeFront::requests`]);
//! - lets a test set the state of a subscription: stripe-mock is stateless (every
//!   `GET /v1/subscriptions/{id}` answers the same fixture with the id echoed), so
//!   [`StripeFront::set_subscription`] and [`StripeFront::delete_subscription`] are how a test
//!   makes "the subscription's real state" change. Everything else is stripe-mock's own answer.
//!
//! Point the code under test at [`StripeFront::url`] instead of `https://api.stripe.com`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The variable `hack/test` sets to stripe-mock's HTTP origin.
pub const STRIPE_MOCK_ENV: &str = "E2E_STRIPE_MOCK_URL";

/// One request the front received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `DELETE`.
    pub method: String,
    /// E.g. `/v1/checkout/sessions`.
    pub path: String,
    /// Decoded query pairs, in order (Stripe's nested keys as sent: `expand[0]`).
    pub query: Vec<(String, String)>,
    /// Decoded `application/x-www-form-urlencoded` body pairs, in order (`line_items[0][price]`).
    pub form: Vec<(String, String)>,
    /// The `Idempotency-Key` header, if sent.
    pub idempotency_key: Option<String>,
}

impl RecordedRequest {
    /// The first form value under `key`.
    pub fn form_value(&self, key: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The first query value under `key`.
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Changes a test applies to stripe-mock's subscription fixture.
type Patch = Arc<dyn Fn(&mut Value) + Send + Sync>;

enum SubscriptionOverride {
    Patched(Patch),
    Deleted,
}

#[derive(Default)]
struct Shared {
    requests: Vec<RecordedRequest>,
    subscriptions: HashMap<String, SubscriptionOverride>,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Mutex<Shared>>,
    upstream: String,
    http: reqwest::Client,
}

impl AppState {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A test that panicked while holding it leaves plain data behind: keep using it.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running front; stops when dropped.
pub struct StripeFront {
    url: String,
    state: AppState,
    task: JoinHandle<()>,
}

impl Drop for StripeFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for StripeFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeFront")
            .field("url", &self.url)
            .field("upstream", &self.state.upstream)
            .finish_non_exhaustive()
    }
}

impl StripeFront {
    /// A front for the stripe-mock of `E2E_STRIPE_MOCK_URL`; fails saying to run `hack/test` when
    /// it is not set.
    pub async fn from_env() -> Result<StripeFront> {
        let url = std::env::var(STRIPE_MOCK_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .with_context(|| {
                format!(
                    "{STRIPE_MOCK_ENV} is not set: run the tests with `hack/test`, which builds stripe-mock \
                 (hack/services) and starts it on loopback"
                )
            })?;
        StripeFront::start(&url).await
    }

    /// Starts a front on 127.0.0.1 (a free port) for the stripe-mock at `stripe_mock_url`, after
    /// checking that stripe-mock answers there.
    pub async fn start(stripe_mock_url: &str) -> Result<StripeFront> {
        let upstream = stripe_mock_url.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .context("building the Stripe front's HTTP client")?;
        // Any test-mode key will do for stripe-mock.
        let probe = http
            .get(format!("{upstream}/v1/balance"))
            .bearer_auth("sk_test_front")
            .send()
            .await
            .with_context(|| {
                format!("stripe-mock does not answer at {upstream} ({STRIPE_MOCK_ENV}); `hack/test` starts it")
            })?;
        if !probe.status().is_success() {
            bail!(
                "{upstream} is not stripe-mock: GET /v1/balance answered {}",
                probe.status()
            );
        }
        let state = AppState {
            shared: Arc::default(),
            upstream,
            http,
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the Stripe front on loopback")?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new().fallback(forward).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(StripeFront { url, state, task })
    }

    /// The front's origin (`http://127.0.0.1:<port>`), to use as the Stripe API base.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request received since the start or the last [`clear`](Self::clear), in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().requests.clone()
    }

    /// The requests received for `method` and `path`, in order.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// Forgets the recorded requests (subscription states stay).
    pub fn clear(&self) {
        self.state.lock().requests.clear();
    }

    /// From now on `GET /v1/subscriptions/{id}` answers stripe-mock's fixture with `id`, `status`,
    /// the first item's price id and the first item's `current_period_end` (where the period
    /// lives since API version 2025-03-31) replaced.
    pub fn set_subscription(&self, id: &str, status: &str, price_id: &str, current_period_end: i64) {
        let (status, price_id) = (status.to_string(), price_id.to_string());
        self.patch_subscription(id, move |sub| {
            sub["status"] = json!(status);
            let item = &mut sub["items"]["data"][0];
            item["price"]["id"] = json!(price_id);
            item["current_period_end"] = json!(current_period_end);
        });
    }

    /// Like [`set_subscription`](Self::set_subscription) with any change to the fixture JSON (its
    /// `id` is set afterwards), e.g. the customer, the metadata or `cancel_at_period_end`. Replaces
    /// an earlier state of `id`.
    pub fn patch_subscription(&self, id: &str, patch: impl Fn(&mut Value) + Send + Sync + 'static) {
        self.state
            .lock()
            .subscriptions
            .insert(id.to_string(), SubscriptionOverride::Patched(Arc::new(patch)));
    }

    /// From now on `GET /v1/subscriptions/{id}` answers 404 `resource_missing`, as Stripe does for
    /// an id it does not know.
    pub fn delete_subscription(&self, id: &str) {
        self.state
            .lock()
            .subscriptions
            .insert(id.to_string(), SubscriptionOverride::Deleted);
    }
}

fn pairs(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes()).into_owned().collect()
}

async fn forward(State(state): State<AppState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        pairs(&String::from_utf8_lossy(&body))
    } else {
        Vec::new()
    };
    let override_patch = {
        let mut shared = state.lock();
        shared.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query: pairs(uri.query().unwrap_or("")),
            form,
            idempotency_key,
        });
        let sub_id = path
            .strip_prefix("/v1/subscriptions/")
            .filter(|id| !id.is_empty() && !id.contains('/'));
        match sub_id.and_then(|id| shared.subscriptions.get(id).map(|o| (id, o))) {
            Some((id, SubscriptionOverride::Deleted)) if method == Method::GET => {
                let error = json!({"error": {
                    "code": "resource_missing",
                    "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
                    "message": format!("No such subscription: '{id}'"),
                    "param": "id",
                    "type": "invalid_request_error",
                }});
                return (StatusCode::NOT_FOUND, axum::Json(error)).into_response();
            }
            Some((id, SubscriptionOverride::Patched(patch))) if method == Method::GET => {
                Some((id.to_string(), patch.clone()))
            }
            _ => None,
        }
    };

    let mut target = format!("{}{path}", state.upstream);
    if let Some(query) = uri.query() {
        target = format!("{target}?{query}");
    }
    let mut request = state.http.request(method, &target).body(body);
    for (name, value) in &headers {
        // reqwest sets these itself for the upstream connection.
        if name != header::HOST && name != header::CONTENT_LENGTH && name != header::CONNECTION {
            request = request.header(name, value);
        }
    }
    let upstream = match request.send().await {
        Ok(upstream) => upstream,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("the Stripe front cannot reach stripe-mock at {target}: {e}"),
            )
                .into_response();
        }
    };
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = match upstream.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("reading stripe-mock's answer: {e}")).into_response(),
    };

    let bytes = match override_patch {
        Some((id, patch)) if status.is_success() => {
            let mut sub: Value = match serde_json::from_slice(&bytes) {
                Ok(sub) => sub,
                Err(e) => {
                    return (
                        StatusCode::BAD_GATEWAY,
                        format!("stripe-mock's subscription is not JSON: {e}"),
                    )
                        .into_response();
                }
            };
            patch(&mut sub);
            sub["id"] = json!(id);
            Bytes::from(sub.to_string())
        }
        _ => bytes,
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    response
}
