//! The OpenAPI document against what the routes answer: unique operationIds, and every route
//! documents the error statuses it can return (401 when it needs a caller, 400 and 404 for path
//! parameters, 403 and 415 for browser writes, 400/413/415 for bodies, 500 everywhere). And a
//! `DELETE` without a body needs no Content-Type when it is same-origin.

use crate::common;

use std::collections::BTreeMap;

use crate::common::{ORIGIN, call, json, offline_config};
use anyhow::Result;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

/// Routes anyone may call (no session or token).
const PUBLIC: &[&str] = &[
    "/health",
    "/readyz",
    "/api/config",
    "/login",
    "/oauth2/callback",
    "/dev/login",
    "/logout",
];

#[test]
fn operation_ids_are_unique_and_error_statuses_documented() {
    let doc: Value = serde_json::from_str(&apiserver::openapi::document()).unwrap();
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut missing = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let route = format!("{} {path}", method.to_uppercase());
            match op["operationId"].as_str() {
                Some(id) => ids.entry(id.to_string()).or_default().push(route.clone()),
                None => missing.push(format!("{route}: no operationId")),
            }
            let responses = op["responses"].as_object().unwrap();
            let mut need = vec!["500"];
            if !PUBLIC.contains(&path.as_str()) {
                need.extend(["401", "403"]);
            }
            if path.contains('{') {
                need.extend(["400", "404"]);
            }
            if method != "get" {
                need.extend(["403", "415"]);
            }
            if op.get("requestBody").is_some() {
                need.extend(["400", "413", "415"]);
            }
            let has_query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            if has_query {
                need.push("400");
            }
            if path == "/api/events" {
                need.push("429");
            }
            for status in need {
                if !responses.contains_key(status) {
                    missing.push(format!("{route}: {status} not documented"));
                }
            }
            for (status, r) in responses {
                if (status.starts_with('4') || status.starts_with('5'))
                    && r["description"].as_str().unwrap_or("").is_empty()
                {
                    missing.push(format!("{route}: {status} has no description"));
                }
            }
        }
    }
    let duplicated: Vec<String> = ids
        .iter()
        .filter(|(_, routes)| routes.len() > 1)
        .map(|(id, routes)| format!("operationId {id} on {}", routes.join(", ")))
        .collect();
    assert!(
        duplicated.is_empty(),
        "duplicated operationIds:\n{}",
        duplicated.join("\n")
    );
    assert!(missing.is_empty(), "undocumented:\n{}", missing.join("\n"));
}

#[tokio::test]
async fn statuses_the_document_lists_are_the_ones_answered() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    // A bad path parameter: 400, as documented; an oversize body: 413, as documented.
    let (s, _) = call(&app, common::get("/api/deployments/Bad_Name", None)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let huge = json!({ "template": "x".repeat(3 * 1024 * 1024) });
    let (s, e) = call(&app, json("POST", "/api/deployments", huge)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert!(e["error"].is_string(), "a JSON error body: {e}");
    Ok(())
}

#[tokio::test]
async fn delete_without_a_body_needs_no_content_type_from_the_same_origin() -> Result<()> {
    let app = apiserver::app(offline_config()).await?;
    for name in ["one", "two"] {
        let (s, d) = call(
            &app,
            json(
                "POST",
                "/api/tokens",
                json!({ "name": name, "scopes": ["deployments:read"] }),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
    }
    let (_, list) = call(&app, common::get("/api/tokens", None)).await;
    let ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();

    // Cross-origin, or without any origin: still refused, and nothing is revoked.
    for origin in [Some("http://evil.example"), None] {
        let mut b = Request::delete(format!("/api/tokens/{}", ids[0]));
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        let (s, e) = call(&app, b.body(Body::empty())?).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{origin:?}: {e}");
    }
    // A DELETE with a body still has to be JSON.
    let with_body = Request::delete(format!("/api/tokens/{}", ids[0]))
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("x"))?;
    assert_eq!(call(&app, with_body).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (_, list) = call(&app, common::get("/api/tokens", None)).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "nothing was revoked");

    // Same origin, no body, no Content-Type: accepted.
    for id in &ids {
        let del = Request::delete(format!("/api/tokens/{id}"))
            .header(header::ORIGIN, ORIGIN)
            .body(Body::empty())?;
        let (s, e) = call(&app, del).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    }
    let (_, list) = call(&app, common::get("/api/tokens", None)).await;
    assert_eq!(list, json!([]));
    Ok(())
}
