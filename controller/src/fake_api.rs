//! A recording fake of the Kubernetes API for reconcile tests: an in-memory object store behind a
//! `kube::Client`, which records every request so that a test can assert exactly what a reconcile
//! wrote. It speaks the subset the UserDeployment reconciler uses: server-side apply (with the
//! real no-op rule: applying the same content changes nothing), merge patches of `status`, gets,
//! label-selected lists (also as `PartialObjectMetadataList`), deletes and creates (events).
//! Deployments roll out at once (their status says every replica is available), as on kwok.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// Resource plural (`deployments`), with `/status` for the subresource.
    pub resource: String,
    /// Object name; empty for collections.
    pub name: String,
    /// Whether the stored state changed (a write that changed nothing is `false`).
    pub changed: bool,
}

impl Call {
    /// Whether the request asked for a write (whatever its effect).
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

#[derive(Default)]
struct State {
    /// (resource, namespace, name) → stored object.
    objects: BTreeMap<(String, String, String), Value>,
    /// What the one field manager last applied to each object, to tell a no-op apply.
    applied: BTreeMap<(String, String, String), Value>,
    calls: Vec<Call>,
    /// (type, reason) of every Event created.
    events: Vec<(String, String)>,
    version: u64,
}

/// The fake API server; clones share the store.
#[derive(Clone, Default)]
pub struct FakeApi(Arc<Mutex<State>>);

impl FakeApi {
    /// A client talking to this fake.
    pub fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
        });
        kube::Client::new(service, "default")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `obj` (a typed object) into the store as if it had been created.
    pub fn insert<K: serde::Serialize + kube::Resource<DynamicType = ()>>(&self, obj: &K) {
        let mut value = serde_json::to_value(obj).expect("object");
        let resource = K::plural(&()).into_owned();
        let ns = value["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = value["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let mut state = self.lock();
        state.version += 1;
        value["metadata"]["resourceVersion"] = json!(state.version.to_string());
        state.objects.insert((resource, ns, name), value);
    }

    /// The stored object `name` of `K` in `namespace`.
    pub fn get<K: serde::de::DeserializeOwned + kube::Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<K> {
        let key = (K::plural(&()).into_owned(), namespace.to_string(), name.to_string());
        let value = self.lock().objects.get(&key).cloned()?;
        Some(serde_json::from_value(value).expect("stored object"))
    }

    /// The requests so far, and forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().calls)
    }

    /// `(type, reason)` of the Events created so far (`Warning`, `Suspended`), and forgets them.
    pub fn take_events(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.lock().events)
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let query: BTreeMap<String, String> = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned(),
                )
            })
            .collect();
        let metadata_only = parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("as=PartialObjectMetadataList"));
        // /api/v1/namespaces/<ns>/<resource>[/<name>[/status]] or /apis/<group>/<version>/...
        let segments: Vec<&str> = parts.uri.path().split('/').filter(|s| !s.is_empty()).collect();
        let Some(at) = segments.iter().position(|s| *s == "namespaces") else {
            return status(StatusCode::NOT_FOUND, "the fake serves namespaced resources only");
        };
        let (ns, resource) = match (segments.get(at + 1), segments.get(at + 2)) {
            (Some(ns), Some(resource)) => (ns.to_string(), resource.to_string()),
            _ => return status(StatusCode::NOT_FOUND, "no such path"),
        };
        let name = segments.get(at + 3).map(|s| s.to_string()).unwrap_or_default();
        let subresource = segments.get(at + 4).map(|s| s.to_string());
        let api_version = if segments[0] == "api" {
            segments[1].to_string()
        } else {
            format!("{}/{}", segments[1], segments[2])
        };
        let key = (resource.clone(), ns.clone(), name.clone());
        let mut state = self.lock();
        let recorded = match &subresource {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.clone(),
        };
        let record = |state: &mut State, changed: bool| {
            state.calls.push(Call {
                method: parts.method.to_string(),
                resource: recorded.clone(),
                name: name.clone(),
                changed,
            })
        };
        match (parts.method.clone(), name.is_empty()) {
            (Method::GET, true) => {
                record(&mut state, false);
                let selector = query.get("labelSelector").cloned().unwrap_or_default();
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|((r, n, _), o)| *r == resource && *n == ns && matches(o, &selector))
                    .map(|(_, o)| {
                        if metadata_only {
                            json!({ "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": o["metadata"] })
                        } else {
                            o.clone()
                        }
                    })
                    .collect();
                let (list_version, list_kind) = if metadata_only {
                    ("meta.k8s.io/v1".to_string(), "PartialObjectMetadataList".to_string())
                } else {
                    (api_version, "List".to_string())
                };
                let version = state.version.to_string();
                ok(json!({ "apiVersion": list_version, "kind": list_kind,
                           "metadata": { "resourceVersion": version }, "items": items }))
            }
            (Method::GET, false) => {
                record(&mut state, false);
                match state.objects.get(&key) {
                    Some(o) => ok(o.clone()),
                    None => status(StatusCode::NOT_FOUND, &format!("{resource} {name:?} not found")),
                }
            }
            (Method::DELETE, false) => {
                let existed = state.objects.remove(&key).is_some();
                state.applied.remove(&key);
                record(&mut state, existed);
                if existed {
                    ok(json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" }))
                } else {
                    status(StatusCode::NOT_FOUND, "not found")
                }
            }
            (Method::POST, true) => {
                record(&mut state, true);
                let mut obj: Value = serde_json::from_slice(&body).unwrap_or_default();
                if resource == "events" {
                    let field = |k: &str| obj[k].as_str().unwrap_or_default().to_string();
                    let event = (field("type"), field("reason"));
                    state.events.push(event);
                }
                state.version += 1;
                obj["metadata"]["resourceVersion"] = json!(state.version.to_string());
                ok(obj)
            }
            (Method::PATCH, false) if subresource.as_deref() == Some("status") => {
                let Some(current) = state.objects.get(&key).cloned() else {
                    record(&mut state, false);
                    return status(StatusCode::NOT_FOUND, "not found");
                };
                let patch: Value = serde_json::from_slice(&body).unwrap_or_default();
                let mut next = current.clone();
                merge(&mut next, &patch);
                let changed = next["status"] != current["status"];
                if changed {
                    state.version += 1;
                    next["metadata"]["resourceVersion"] = json!(state.version.to_string());
                    state.objects.insert(key, next.clone());
                }
                record(&mut state, changed);
                ok(next)
            }
            (Method::PATCH, false) => {
                let content_type = parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let patch: Value = serde_json::from_slice(&body).unwrap_or_default();
                if !content_type.contains("apply-patch") {
                    // A merge patch of the object (e.g. its finalizers).
                    let Some(mut obj) = state.objects.get(&key).cloned() else {
                        record(&mut state, false);
                        return status(StatusCode::NOT_FOUND, "not found");
                    };
                    let before = obj.clone();
                    merge(&mut obj, &patch);
                    let changed = obj != before;
                    if changed {
                        state.version += 1;
                        obj["metadata"]["resourceVersion"] = json!(state.version.to_string());
                        state.objects.insert(key, obj.clone());
                    }
                    record(&mut state, changed);
                    return ok(obj);
                }
                // Server-side apply by the one field manager: the same content changes nothing.
                let changed = state.applied.get(&key) != Some(&patch);
                let previous = state.objects.get(&key).cloned();
                let obj = match (&previous, changed) {
                    (Some(p), false) => p.clone(),
                    _ => {
                        let mut obj = patch.clone();
                        let generation = previous
                            .as_ref()
                            .and_then(|p| p["metadata"]["generation"].as_i64())
                            .map_or(1, |g| {
                                if p_spec_changed(previous.as_ref(), &patch) {
                                    g + 1
                                } else {
                                    g
                                }
                            });
                        state.version += 1;
                        obj["metadata"]["resourceVersion"] = json!(state.version.to_string());
                        obj["metadata"]["generation"] = json!(generation);
                        obj["metadata"]["uid"] = json!(format!("uid-{resource}-{name}"));
                        if resource == "deployments" {
                            let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                            obj["status"] = json!({
                                "observedGeneration": generation, "replicas": replicas,
                                "updatedReplicas": replicas, "readyReplicas": replicas,
                                "availableReplicas": replicas,
                            });
                        }
                        state.applied.insert(key.clone(), patch);
                        state.objects.insert(key, obj.clone());
                        obj
                    }
                };
                record(&mut state, changed);
                ok(obj)
            }
            (method, _) => {
                record(&mut state, false);
                status(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("the fake does not serve {method}"),
                )
            }
        }
    }
}

fn p_spec_changed(previous: Option<&Value>, applied: &Value) -> bool {
    previous.is_none_or(|p| p["spec"] != applied["spec"])
}

/// Whether `obj`'s labels satisfy a selector of `k=v` and `k` (exists) terms.
fn matches(obj: &Value, selector: &str) -> bool {
    let labels = &obj["metadata"]["labels"];
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k].as_str() == Some(v),
            None => labels.get(term).is_some(),
        })
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn ok(body: Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
        .expect("response")
}

fn status(code: StatusCode, message: &str) -> Response<Body> {
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        _ => "MethodNotAllowed",
    };
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_vec(&json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16() }))
            .unwrap_or_default(),
        ))
        .expect("response")
}
