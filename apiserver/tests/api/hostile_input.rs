//! Hostile input against the API with KUBERNETES_ENABLED=true, over a recording fake Kubernetes
//! API (no cluster): every path parameter that is not a valid name is answered 400 naming the
//! parameter, and no request for it reaches Kubernetes.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{ORIGIN, call, offline_config};
use anyhow::Result;
use apiserver::platform::Platform;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;

/// Requests the fake Kubernetes API received: method and path with query.
#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<(Method, String)>>>);

impl Recorded {
    /// Everything recorded so far.
    pub fn all(&self) -> Vec<(Method, String)> {
        self.0.lock().unwrap().clone()
    }
}

fn json_response(status: u16, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A fake Kubernetes API: lists are empty, watches stay open and quiet, a GET of one object is
/// 404, a POST creates what it was sent (echoed back), anything else is 404.
pub fn fake_kube() -> (kube::Client, Recorded) {
    let recorded = Recorded::default();
    let rec = recorded.clone();
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        let rec = rec.clone();
        async move {
            let method = req.method().clone();
            let uri = req.uri().clone();
            let target = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            rec.0.lock().unwrap().push((method.clone(), target.clone()));
            let query = uri.query().unwrap_or("");
            let last = uri.path().rsplit('/').next().unwrap_or("");
            let plural = ["usersandboxes", "templates", "userdeployments", "events", "secrets"];
            let resp = if method == Method::GET && query.contains("watch=true") {
                Response::new(Body::from_stream(
                    futures::stream::pending::<Result<Bytes, Infallible>>(),
                ))
            } else if method == Method::GET && plural.contains(&last) {
                json_response(
                    200,
                    json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": "1" }, "items": [] }),
                )
            } else if method == Method::GET && uri.path() == "/version" {
                json_response(200, json!({ "major": "1", "minor": "36", "gitVersion": "v1.36.0" }))
            } else if method == Method::POST {
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let mut obj: serde_json::Value = serde_json::from_slice(&body).unwrap_or(json!({}));
                obj["metadata"]["resourceVersion"] = json!("2");
                obj["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000001");
                json_response(201, obj)
            } else {
                json_response(
                    404,
                    json!({ "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found" }),
                )
            };
            Ok::<_, Infallible>(resp)
        }
    });
    (kube::Client::new(service, "default"), recorded)
}

/// A DEV_MODE app on the Kubernetes platform over [`fake_kube`].
pub async fn app_on_fake_kube() -> Result<(apiserver::App, Recorded)> {
    let mut config = offline_config();
    config.kubernetes_enabled = true;
    let config = Arc::new(config);
    let (client, recorded) = fake_kube();
    let metrics = apiserver::metrics::Metrics::new();
    let platform: Arc<dyn Platform> =
        apiserver::platform::kube::KubePlatform::start(client, config.clone(), metrics.clone()).await?;
    let db = apiserver::db::Db::connect(None, &config.sqlite_path).await?;
    let app = apiserver::app_with(config, db, platform, metrics).await?;
    Ok((app, recorded))
}

fn request(method: &str, path: &str) -> Request<Body> {
    let body = match method {
        "PUT" => json!({ "value": "v" }).to_string(),
        "PATCH" => json!({ "replicas": 1 }).to_string(),
        "POST" if path.ends_with("/image") => json!({ "service": "web", "image": "x:1" }).to_string(),
        "POST" => "{}".to_string(),
        _ => String::new(),
    };
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// Values no route may pass on: percent-encoded as they travel in a URL.
fn hostile() -> Vec<String> {
    let mut v: Vec<String> = [
        "..",
        "%2E%2E",
        "a%2Fb",
        "%2F",
        "..%2F..%2Fkube-system%2Fsecrets%2Fx",
        "x%3Fwatch%3Dtrue",
        "x%23frag",
        "a%20b",
        "a%00b",
        "%C3%A9",
        "-a",
        "a_b%2Fstatus",
    ]
    .map(String::from)
    .to_vec();
    v.push("a".repeat(300));
    v
}

#[tokio::test]
async fn hostile_path_parameters_are_refused_before_kubernetes() -> Result<()> {
    let (app, recorded) = tokio::time::timeout(Duration::from_secs(60), app_on_fake_kube()).await??;
    // The sandbox exists (created through the fake API on the first request).
    let (s, me) = call(&app, request("GET", "/api/me")).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    let before = recorded.all().len();

    let mut routes: Vec<(&str, String, &str)> = vec![];
    for bad in hostile() {
        for (method, path, param) in [
            ("GET", format!("/api/deployments/{bad}"), "name"),
            ("PATCH", format!("/api/deployments/{bad}"), "name"),
            ("DELETE", format!("/api/deployments/{bad}"), "name"),
            ("GET", format!("/api/deployments/{bad}/manifest"), "name"),
            ("POST", format!("/api/deployments/{bad}/restart"), "name"),
            ("POST", format!("/api/deployments/{bad}/image"), "name"),
            ("GET", format!("/api/templates/{bad}"), "name"),
            ("DELETE", format!("/api/tokens/{bad}"), "id"),
            ("PUT", format!("/api/secrets/templates/{bad}/KEY"), "template"),
            ("DELETE", format!("/api/secrets/templates/{bad}/KEY"), "template"),
            ("PUT", format!("/api/secrets/deployments/{bad}/KEY"), "deployment"),
            ("DELETE", format!("/api/secrets/deployments/{bad}/KEY"), "deployment"),
            (
                "PUT",
                format!("/api/secrets/deployments/{bad}/services/web/KEY"),
                "deployment",
            ),
            (
                "PUT",
                format!("/api/secrets/deployments/web/services/{bad}/KEY"),
                "service",
            ),
            (
                "DELETE",
                format!("/api/secrets/deployments/web/services/{bad}/KEY"),
                "service",
            ),
            ("PUT", format!("/api/secrets/user/{bad}"), "key"),
            ("DELETE", format!("/api/secrets/user/{bad}"), "key"),
            ("PUT", format!("/api/secrets/deployments/web/{bad}"), "key"),
        ] {
            // A token id is URL-safe base64: `-a` is a valid (absent) one.
            if param == "id" && bad == "-a" {
                continue;
            }
            routes.push((method, path, param));
        }
    }
    let mut wrong = vec![];
    for (method, path, param) in &routes {
        let (s, e) = call(&app, request(method, path)).await;
        let message = e["error"].as_str().unwrap_or("");
        // `a%00b` and friends may be refused by the router itself; everything else must be a
        // 400 that names the parameter.
        if s != StatusCode::BAD_REQUEST || !message.contains(&format!("path parameter {param}")) {
            wrong.push(format!("{method} {path}: {s} {e}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused with a 400 naming the parameter:\n{}",
        wrong.join("\n")
    );
    let after = recorded.all();
    let reached: Vec<_> = after[before..]
        .iter()
        .filter(|(_, p)| !p.contains("watch=true"))
        .collect();
    assert!(reached.is_empty(), "hostile requests reached Kubernetes: {reached:?}");

    // A valid but absent name is still a plain 404 (and may be looked up).
    let (s, e) = call(&app, request("GET", "/api/deployments/absent")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, e) = call(&app, request("GET", "/api/templates/absent")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    Ok(())
}
