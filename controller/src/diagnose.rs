//! Why an app's pods do not become ready, in one sentence and a hint, from what Kubernetes
//! already reports: the Deployment's `ReplicaFailure` condition (a pod refused at creation: the
//! sandbox's quota or limits, Pod Security), its `ProgressDeadlineExceeded`, the pods' container
//! states (an image that cannot be pulled, a crash with its exit code and last log lines, a kill
//! for memory, a `runAsNonRoot` refusal), their scheduling, and the Warning events of failing
//! readiness probes. Pure: the reconciler gathers the objects and calls [`diagnose`]; the result
//! becomes the service's status and the reason of `Ready=False` and `Degraded=True`, so a user
//! sees "image not found" instead of "waiting for pods" forever.

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};

/// Reasons of a diagnosis (condition reasons: CamelCase, stable, documented in the README).
pub mod reasons {
    /// A pod was refused when the ReplicaSet created it, other than by the quota (Pod Security).
    pub const POD_REJECTED: &str = "PodRejected";
    /// The sandbox's ResourceQuota or LimitRange refuses the pods.
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
    /// An image cannot be pulled or is not present (`ErrImagePull`, `ImagePullBackOff`, ...).
    pub const IMAGE_PULL_FAILED: &str = "ImagePullFailed";
    /// The kubelet refused to create or start a container (`CreateContainerConfigError`, e.g. an
    /// image that runs as root under `runAsNonRoot`; `CreateContainerError`; `RunContainerError`).
    pub const CONTAINER_REFUSED: &str = "ContainerRefused";
    /// A container keeps exiting (`CrashLoopBackOff`, or it exited and was restarted).
    pub const CRASH_LOOPING: &str = "CrashLooping";
    /// A container was killed for using more memory than its limit.
    pub const OOM_KILLED: &str = "OOMKilled";
    /// No node can take a pod (`Unschedulable`: resources, taints).
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// The containers run but their readiness probe fails.
    pub const PROBE_FAILING: &str = "ProbeFailing";
    /// Kubernetes gave up waiting for the rollout (`ProgressDeadlineExceeded`) and nothing above
    /// explains it.
    pub const ROLLOUT_STALLED: &str = "RolloutStalled";
}

/// What is wrong with one service of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// One of [`reasons`].
    pub reason: &'static str,
    /// One sentence: what went wrong, with what Kubernetes reported (shortened).
    pub message: String,
    /// What to do about it.
    pub hint: &'static str,
}

/// What was observed of one service whose pods are not all ready.
#[derive(Default)]
pub struct Observed<'a> {
    /// The message of the Deployment's `ReplicaFailure` condition, when it is True.
    pub replica_failure: Option<&'a str>,
    /// The Deployment's `Progressing` condition is False with `ProgressDeadlineExceeded`.
    pub deadline_exceeded: bool,
    /// The service's pods.
    pub pods: &'a [Pod],
    /// Warning events of those pods (any order).
    pub events: &'a [Event],
}

/// Longest message kept from Kubernetes (events and statuses can carry whole stack traces).
const MAX_MESSAGE: usize = 300;
/// Log lines of a crashed container kept in its message (its last ones).
const LOG_LINES: usize = 5;

fn short(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The end of a log (the last [`LOG_LINES`] lines, at most [`MAX_MESSAGE`] bytes): what a
/// program prints last before it exits is what explains the exit.
fn log_tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    ending(&lines[lines.len().saturating_sub(LOG_LINES)..].join(" | "), MAX_MESSAGE)
}

/// The last `max` bytes of `s` (on a character boundary), with "…" when cut.
fn ending(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

mod hints {
    pub const QUOTA: &str = "Lower the service's resources or replicas, remove apps you no longer need, \
                             or move the sandbox to a plan with a larger quota.";
    pub const POD_SECURITY: &str = "Pods run under Pod Security \"restricted\": use an image that runs as a \
                                    non-root user and needs no extra privileges.";
    pub const IMAGE: &str = "Check the image name and tag (they must exist in the registry) and that the \
                             cluster can pull from that registry; then set the corrected image.";
    pub const RUN_AS_ROOT: &str = "Use an image whose user is not root (e.g. `USER 65532` in its Dockerfile): \
                                   the platform never runs containers as root.";
    pub const CONTAINER: &str = "Check the service's command, arguments and configuration against the image.";
    pub const CRASH: &str = "Read the previous container's logs for the error, fix the configuration or the \
                             image, and deploy again.";
    pub const OOM: &str = "Raise the service's memory limit (resources.limits.memory) or make the app use \
                           less memory.";
    pub const UNSCHEDULABLE: &str = "Ask for less CPU or memory per pod: no node has room for it now.";
    pub const PROBE: &str = "Make the health check path answer 2xx on the service's port (or correct \
                             healthCheckPath), and read the logs for why it does not.";
    pub const STALLED: &str = "Look at the app's events and logs: Kubernetes gave up waiting for its pods.";
}

/// The first problem found for one service, most telling first: a refused pod (no pod exists
/// then), the containers of its pods, scheduling, a failing readiness probe, then a rollout
/// Kubernetes gave up on. `None` when nothing is wrong yet (pods starting).
pub fn diagnose(o: &Observed<'_>) -> Option<Diagnosis> {
    if let Some(message) = o.replica_failure {
        return Some(refusal(message));
    }
    let mut found: Option<Diagnosis> = None;
    for pod in o.pods {
        let Some(status) = pod.status.as_ref() else { continue };
        let containers = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for cs in containers {
            if let Some(d) = container(pod, cs) {
                // A refusal or a missing image outranks a crash (it explains more).
                if found.as_ref().is_none_or(|f| rank(d.reason) < rank(f.reason)) {
                    found = Some(d);
                }
            }
        }
        if found.is_none()
            && let Some(c) = status.conditions.iter().flatten().find(|c| {
                c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
            })
        {
            found = Some(Diagnosis {
                reason: reasons::UNSCHEDULABLE,
                message: short(&format!(
                    "no node can run the pod: {}",
                    c.message.as_deref().unwrap_or("no reason given")
                )),
                hint: hints::UNSCHEDULABLE,
            });
        }
    }
    // A container the kubelet restarted for a failing liveness probe exits like a clean stop
    // (0, or 137/143 when killed): the probe explains it, not the exit.
    if found.as_ref().is_some_and(|f| f.reason == reasons::CRASH_LOOPING)
        && killed_by_kubelet(o.pods)
        && let Some(p) = probe_failure(o, "Liveness")
    {
        return Some(p);
    }
    found.or_else(|| probe_failure(o, "Readiness")).or_else(|| {
        o.deadline_exceeded.then(|| Diagnosis {
            reason: reasons::ROLLOUT_STALLED,
            message: "the rollout made no progress within its deadline (ProgressDeadlineExceeded)".into(),
            hint: hints::STALLED,
        })
    })
}

fn rank(reason: &str) -> u8 {
    match reason {
        reasons::CONTAINER_REFUSED => 0,
        reasons::IMAGE_PULL_FAILED => 1,
        reasons::OOM_KILLED => 2,
        reasons::CRASH_LOOPING => 3,
        _ => 4,
    }
}

/// A pod refused at creation: `pods "x" is forbidden: <why>`.
fn refusal(message: &str) -> Diagnosis {
    let why = message.split_once("is forbidden: ").map_or(message, |(_, w)| w).trim();
    if let Some(rest) = why.strip_prefix("exceeded quota: ") {
        return Diagnosis {
            reason: reasons::QUOTA_EXCEEDED,
            message: short(&quota_sentence(rest)),
            hint: hints::QUOTA,
        };
    }
    if why.contains("maximum") && why.contains("per ") {
        // LimitRange: "[maximum cpu usage per Container is 2, but limit is 1k, ...]".
        return Diagnosis {
            reason: reasons::QUOTA_EXCEEDED,
            message: short(&format!(
                "the sandbox's limits refuse a pod: {}",
                why.trim_start_matches('[').trim_end_matches(']')
            )),
            hint: hints::QUOTA,
        };
    }
    if let Some(rest) = why.strip_prefix("failed quota: ") {
        return Diagnosis {
            reason: reasons::QUOTA_EXCEEDED,
            message: short(&format!("the sandbox's quota refuses a pod: {rest}")),
            hint: hints::QUOTA,
        };
    }
    if let Some(rest) = why.strip_prefix("violates PodSecurity ") {
        return Diagnosis {
            reason: reasons::POD_REJECTED,
            message: short(&format!("Pod Security refuses the pod: {rest}")),
            hint: hints::POD_SECURITY,
        };
    }
    Diagnosis {
        reason: reasons::POD_REJECTED,
        message: short(&format!("a pod could not be created: {why}")),
        hint: hints::CONTAINER,
    }
}

/// "<name>, requested: a=1,b=2, used: a=0,b=1, limited: a=1,b=2" → one clause per requested
/// resource that does not fit: "requests.cpu: asks 1k, 100m of 2 in use".
fn quota_sentence(rest: &str) -> String {
    let field = |label: &str| -> Vec<(String, String)> {
        let Some(start) = rest.find(label) else {
            return Vec::new();
        };
        let tail = &rest[start + label.len()..];
        let end = [", used: ", ", limited: "]
            .iter()
            .filter_map(|l| tail.find(l))
            .min()
            .unwrap_or(tail.len());
        tail[..end]
            .split(',')
            .filter_map(|kv| kv.trim().split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (requested, used, limited) = (field("requested: "), field("used: "), field("limited: "));
    let lookup = |list: &[(String, String)], k: &str| list.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let clauses: Vec<String> = requested
        .iter()
        .map(|(k, v)| match (lookup(&used, k), lookup(&limited, k)) {
            (Some(u), Some(l)) => format!("{k} asks {v} with {u} of {l} in use"),
            (None, Some(l)) => format!("{k} asks {v}, the limit is {l}"),
            _ => format!("{k} asks {v}"),
        })
        .collect();
    if clauses.is_empty() {
        return format!("the sandbox's quota refuses a pod: {rest}");
    }
    format!("the sandbox's quota refuses a pod: {}", clauses.join("; "))
}

fn container(pod: &Pod, cs: &ContainerStatus) -> Option<Diagnosis> {
    let state = cs.state.as_ref()?;
    let name = &cs.name;
    let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let oom = |t: Option<&k8s_openapi::api::core::v1::ContainerStateTerminated>| {
        t.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
    };
    if oom(last) || oom(state.terminated.as_ref()) {
        let limit = memory_limit(pod, name).map(|l| format!(" ({l})")).unwrap_or_default();
        return Some(Diagnosis {
            reason: reasons::OOM_KILLED,
            message: format!(
                "container {name} was killed for using more memory than its limit{limit}, restarted {} times",
                cs.restart_count
            ),
            hint: hints::OOM,
        });
    }
    if let Some(w) = &state.waiting {
        let why = w.reason.as_deref().unwrap_or_default();
        let msg = w.message.as_deref().unwrap_or_default();
        let (reason, hint) = match why {
            "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName" | "RegistryUnavailable" => {
                (reasons::IMAGE_PULL_FAILED, hints::IMAGE)
            }
            "CreateContainerConfigError" if msg.contains("runAsNonRoot") => {
                (reasons::CONTAINER_REFUSED, hints::RUN_AS_ROOT)
            }
            "CreateContainerConfigError"
            | "CreateContainerError"
            | "RunContainerError"
            | "PreCreateHookError"
            | "PreStartHookError"
            | "PostStartHookError" => (reasons::CONTAINER_REFUSED, hints::CONTAINER),
            "CrashLoopBackOff" => return Some(crash(cs)),
            _ => return None,
        };
        let message = if reason == reasons::IMAGE_PULL_FAILED {
            // The registry's answer ends the kubelet's message, after the image's name (twice):
            // keep that end.
            let head = short(&format!(
                "image {} of container {name} cannot be pulled ({why})",
                cs.image
            ));
            if !msg.is_empty() {
                let room = MAX_MESSAGE.saturating_sub(head.len() + 2).max(80);
                return Some(Diagnosis {
                    reason,
                    message: format!("{head}: {}", ending(msg, room)),
                    hint,
                });
            }
            head
        } else {
            let detail = if msg.is_empty() {
                why.to_string()
            } else {
                format!("{why}: {msg}")
            };
            format!("container {name} cannot start: {detail} (image {})", cs.image)
        };
        return Some(Diagnosis {
            reason,
            message: short(&message),
            hint,
        });
    }
    // Exited and restarted, not yet in back-off: already a crash.
    if cs.restart_count > 0 && !cs.ready && last.is_some() {
        return Some(crash(cs));
    }
    None
}

fn crash(cs: &ContainerStatus) -> Diagnosis {
    let t = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let mut message = match t {
        Some(t) => format!(
            "container {} exited with code {}{}",
            cs.name,
            t.exit_code,
            t.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        None => format!("container {} keeps exiting", cs.name),
    };
    message.push_str(&format!(", restarted {} times", cs.restart_count));
    // The termination message: with `terminationMessagePolicy: FallbackToLogsOnError` (set by
    // the builder) the kubelet puts the end of the container's log there.
    if let Some(m) = t.and_then(|t| t.message.as_deref()).filter(|m| !m.trim().is_empty()) {
        message.push_str("; its last lines: ");
        message.push_str(&log_tail(m));
    }
    Diagnosis {
        reason: reasons::CRASH_LOOPING,
        message,
        hint: hints::CRASH,
    }
}

fn memory_limit(pod: &Pod, container: &str) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)?
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .map(|q| q.0.clone())
}

/// Whether a container of these pods last ended the way a kubelet's kill ends it (exit 0, 137
/// or 143), not with an error of its own.
fn killed_by_kubelet(pods: &[Pod]) -> bool {
    pods.iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|cs| cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
        .any(|t| matches!(t.exit_code, 0 | 137 | 143) && t.reason.as_deref() != Some("OOMKilled"))
}

/// A container that is not ready with a `kind` ("Readiness" or "Liveness") probe failure among
/// its pod's Warning events.
fn probe_failure(o: &Observed<'_>, kind: &str) -> Option<Diagnosis> {
    let prefix = format!("{kind} probe failed");
    for pod in o.pods {
        let Some(status) = pod.status.as_ref() else { continue };
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        for cs in status.container_statuses.iter().flatten().filter(|cs| !cs.ready) {
            let event = o
                .events
                .iter()
                .filter(|e| {
                    e.involved_object.name.as_deref() == Some(pod_name)
                        && e.reason.as_deref() == Some("Unhealthy")
                        && e.message.as_deref().is_some_and(|m| m.starts_with(&prefix))
                })
                .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
            let Some(e) = event else { continue };
            let said = e.message.as_deref().unwrap_or_default();
            let said = said.strip_prefix(&format!("{prefix}: ")).unwrap_or(said);
            let message = if kind == "Liveness" {
                format!(
                    "container {} is restarted because its liveness probe fails: {said} (restarted {} times)",
                    cs.name, cs.restart_count
                )
            } else {
                format!("container {} runs but its readiness probe fails: {said}", cs.name)
            };
            return Some(Diagnosis {
                reason: reasons::PROBE_FAILING,
                message: short(&message),
                hint: hints::PROBE,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests;
