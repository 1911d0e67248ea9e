//! Why an app's pods do not become ready, from what Kubernetes already reports: the Deployment's
//! `ReplicaFailure` condition (a pod refused at admission: Pod Security, quota) and the pods'
//! container states (an image that cannot be found, a container that exits at once, a
//! `runAsNonRoot` refusal by the kubelet). Pure: the reconciler lists the pods and calls
//! [`diagnose`]; the result becomes the reason of `Ready=False` and `Degraded=True`, so a user
//! sees "image not found" instead of "waiting for pods" forever.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Reasons of a diagnosis (condition reasons: CamelCase, stable, documented in the CRD docs).
pub mod reasons {
    /// A pod was refused when the ReplicaSet created it (Pod Security admission, quota, limits).
    pub const POD_REJECTED: &str = "PodRejected";
    /// An image cannot be pulled or is not present (`ErrImagePull`, `ImagePullBackOff`, ...).
    pub const IMAGE_PULL_FAILED: &str = "ImagePullFailed";
    /// The kubelet refused to create or start a container (`CreateContainerConfigError`, e.g. an
    /// image that runs as root under `runAsNonRoot`; `CreateContainerError`; `RunContainerError`).
    pub const CONTAINER_REFUSED: &str = "ContainerRefused";
    /// A container keeps exiting (`CrashLoopBackOff`, or it exited and was restarted).
    pub const CRASH_LOOPING: &str = "CrashLooping";
    /// No node can take a pod (`Unschedulable`: resources, taints).
    pub const UNSCHEDULABLE: &str = "Unschedulable";
}

/// What is wrong with one service of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// One of [`reasons`].
    pub reason: &'static str,
    /// What Kubernetes said, prefixed with the container (and shortened).
    pub message: String,
}

/// Longest message kept from Kubernetes (events and statuses can carry whole stack traces).
const MAX_MESSAGE: usize = 300;

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

/// The first problem found for one service: a refused pod first (no pod exists then), then the
/// containers of its pods, then scheduling. `None` when nothing is wrong yet (pods starting).
/// `replica_failure`: the message to report when the Deployment's `ReplicaFailure` condition is
/// True (the watch cache keeps only that it is, not Kubernetes' text).
pub fn diagnose(replica_failure: Option<&str>, pods: &[Pod]) -> Option<Diagnosis> {
    if let Some(message) = replica_failure {
        return Some(Diagnosis {
            reason: reasons::POD_REJECTED,
            message: short(message),
        });
    }
    let mut found: Option<Diagnosis> = None;
    for pod in pods {
        let Some(status) = pod.status.as_ref() else { continue };
        let containers = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for cs in containers {
            if let Some(d) = container(cs) {
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
                message: short(c.message.as_deref().unwrap_or("no node can run the pod")),
            });
        }
    }
    found
}

fn rank(reason: &str) -> u8 {
    match reason {
        reasons::CONTAINER_REFUSED => 0,
        reasons::IMAGE_PULL_FAILED => 1,
        reasons::CRASH_LOOPING => 2,
        _ => 3,
    }
}

fn container(cs: &ContainerStatus) -> Option<Diagnosis> {
    let state = cs.state.as_ref()?;
    let name = &cs.name;
    if let Some(w) = &state.waiting {
        let why = w.reason.as_deref().unwrap_or_default();
        let msg = w.message.as_deref().unwrap_or_default();
        let reason = match why {
            "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName" | "RegistryUnavailable" => {
                reasons::IMAGE_PULL_FAILED
            }
            "CreateContainerConfigError"
            | "CreateContainerError"
            | "RunContainerError"
            | "PreCreateHookError"
            | "PreStartHookError"
            | "PostStartHookError" => reasons::CONTAINER_REFUSED,
            "CrashLoopBackOff" => {
                return Some(Diagnosis {
                    reason: reasons::CRASH_LOOPING,
                    message: short(&format!("container {name} {}", exit_summary(cs))),
                });
            }
            _ => return None,
        };
        let text = if msg.is_empty() {
            why.to_string()
        } else {
            format!("{why}: {msg}")
        };
        return Some(Diagnosis {
            reason,
            message: short(&format!("container {name}: {text} (image {})", cs.image)),
        });
    }
    // Exited and restarted, not yet in back-off: already a crash.
    if cs.restart_count > 0 && !cs.ready && cs.last_state.as_ref().is_some_and(|s| s.terminated.is_some()) {
        return Some(Diagnosis {
            reason: reasons::CRASH_LOOPING,
            message: short(&format!("container {name} {}", exit_summary(cs))),
        });
    }
    None
}

/// "exited with code 1 (Error), restarted 3 times: <message>".
fn exit_summary(cs: &ContainerStatus) -> String {
    let t = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let mut out = match t {
        Some(t) => format!(
            "exited with code {}{}",
            t.exit_code,
            t.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        None => "keeps exiting".to_string(),
    };
    out.push_str(&format!(", restarted {} times", cs.restart_count));
    if let Some(m) = t.and_then(|t| t.message.as_deref()).filter(|m| !m.trim().is_empty()) {
        out.push_str(": ");
        out.push_str(m.trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(statuses: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "p" },
            "status": { "containerStatuses": statuses },
        }))
        .unwrap()
    }

    fn waiting(reason: &str, message: &str) -> serde_json::Value {
        json!([{ "name": "web", "image": "ghcr.io/x/web:1", "imageID": "", "ready": false, "restartCount": 0,
                 "state": { "waiting": { "reason": reason, "message": message } } }])
    }

    #[test]
    fn a_missing_image_is_reported_with_the_image() {
        let d = diagnose(
            None,
            &[pod(waiting(
                "ErrImageNeverPull",
                "image not present with pull policy Never",
            ))],
        )
        .unwrap();
        assert_eq!(d.reason, reasons::IMAGE_PULL_FAILED);
        assert!(
            d.message.contains("ghcr.io/x/web:1") && d.message.contains("not present"),
            "{}",
            d.message
        );
        let d = diagnose(None, &[pod(waiting("ImagePullBackOff", "Back-off pulling image"))]).unwrap();
        assert_eq!(d.reason, reasons::IMAGE_PULL_FAILED);
    }

    #[test]
    fn a_root_image_under_run_as_non_root_is_a_refusal() {
        let d = diagnose(
            None,
            &[pod(waiting(
                "CreateContainerConfigError",
                "container has runAsNonRoot and image will run as root",
            ))],
        )
        .unwrap();
        assert_eq!(d.reason, reasons::CONTAINER_REFUSED);
        assert!(d.message.contains("runAsNonRoot"), "{}", d.message);
    }

    #[test]
    fn a_container_that_exits_at_once_is_crash_looping() {
        let statuses = json!([{ "name": "web", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
            "state": { "waiting": { "reason": "CrashLoopBackOff", "message": "back-off 40s" } },
            "lastState": { "terminated": { "exitCode": 2, "reason": "Error", "message": "missing GREETING" } } }]);
        let d = diagnose(None, &[pod(statuses)]).unwrap();
        assert_eq!(d.reason, reasons::CRASH_LOOPING);
        assert!(
            d.message.contains("code 2") && d.message.contains("3 times") && d.message.contains("missing GREETING"),
            "{}",
            d.message
        );
        // Restarted once, running again but not ready: already reported.
        let statuses = json!([{ "name": "web", "image": "i", "imageID": "", "ready": false, "restartCount": 1,
            "state": { "running": {} }, "lastState": { "terminated": { "exitCode": 1 } } }]);
        assert_eq!(diagnose(None, &[pod(statuses)]).unwrap().reason, reasons::CRASH_LOOPING);
    }

    #[test]
    fn a_refused_pod_outranks_the_pods() {
        let d = diagnose(Some("refused at admission"), &[pod(waiting("ErrImagePull", "x"))]).unwrap();
        assert_eq!(d.reason, reasons::POD_REJECTED);
        assert_eq!(d.message, "refused at admission");
    }

    #[test]
    fn starting_pods_are_not_a_problem() {
        assert_eq!(diagnose(None, &[pod(waiting("ContainerCreating", ""))]), None);
        assert_eq!(diagnose(None, &[]), None);
        let statuses = json!([{ "name": "web", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": { "running": {} } }]);
        assert_eq!(diagnose(None, &[pod(statuses)]), None);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(400);
        let d = diagnose(None, &[pod(waiting("ErrImagePull", &long))]).unwrap();
        assert!(d.message.len() <= MAX_MESSAGE + 4, "{}", d.message.len());
        assert!(d.message.ends_with('…'));
    }
}
