//! `/api/events`: Server-Sent Events of changes to the caller's deployments. Every subscriber
//! reads the one broadcast fed by the platform's single deployments watch; a first `snapshot`
//! event carries the current list so that a client never misses what happened before it came.

use std::convert::Infallible;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt, stream};
use kube::ResourceExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::AppState;
use crate::auth::{Principal, Scope};
use crate::error::ApiResult;
use crate::platform::Change;
use crate::views::DeploymentView;

/// Routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/events", get(events))
}

fn json_event(name: &str, data: serde_json::Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

/// Stream of deployment changes: events `snapshot` (`{"deployments": [...]}`), `deployment`
/// (`{"type": "applied", "deployment": {...}}` or `{"type": "deleted", "name": "..."}`) and
/// `resync` (the client fell behind and should reload).
#[utoipa::path(get, path = "/api/events", tag = "deployments",
    responses((status = 200, description = "text/event-stream of deployment changes", content_type = "text/event-stream")))]
pub async fn events(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    p.require(Scope::DeploymentsRead)?;
    let ns = state.platform.sandbox(&p.user).namespace;
    // Subscribe before the snapshot so that nothing falls between them.
    let rx = state.platform.subscribe();
    let snapshot: Vec<DeploymentView> = state
        .platform
        .deployments(&ns)
        .await?
        .iter()
        .map(|d| DeploymentView::of(d))
        .collect();
    let guard = state.metrics.sse_client();
    let first = stream::once(async move { json_event("snapshot", serde_json::json!({ "deployments": snapshot })) });
    let changes = BroadcastStream::new(rx).filter_map(move |item| {
        let _held = &guard;
        let out = match item {
            Ok(change) if change.namespace() == ns => Some(match change {
                Change::Applied(ud) => json_event(
                    "deployment",
                    serde_json::json!({ "type": "applied", "deployment": DeploymentView::of(&ud), "name": ud.name_any() }),
                ),
                Change::Deleted { name, .. } => {
                    json_event("deployment", serde_json::json!({ "type": "deleted", "name": name }))
                }
            }),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(json_event("resync", serde_json::json!({ "missed": n }))),
        };
        async move { out }
    });
    Ok(Sse::new(first.chain(changes)).keep_alive(KeepAlive::default()))
}
