//! Each failure kind from Pod, Deployment and Event JSON as the API returns it (`recorded/`),
//! to its reason, sentence and hint. image-pull, crash, oom, quota and probe were recorded on the
//! real node (`hack/cluster up --real`, the apps of e2e/tests/real_node/apps.rs's cannot-run test and
//! hello-web with `healthCheckPath: /nope`; managed fields removed); pod-security and
//! unschedulable are written after Kubernetes' messages (the builder's pods always meet
//! `restricted`, and the real node has room for any pod the quota admits).

use super::*;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

fn recorded<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/src/diagnose/recorded/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn of_pods(pods: &[Pod]) -> Option<Diagnosis> {
    diagnose(&Observed {
        pods,
        ..Default::default()
    })
}

/// The ReplicaFailure message and whether the deadline passed, as the reconciler reads them.
fn of_deployment(d: &Deployment) -> Option<Diagnosis> {
    let conditions = d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let failure = conditions
        .iter()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .and_then(|c| c.message.clone());
    let deadline = conditions
        .iter()
        .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
    diagnose(&Observed {
        replica_failure: failure.as_deref(),
        deadline_exceeded: deadline,
        ..Default::default()
    })
}

fn says(d: &Diagnosis, parts: &[&str]) {
    for p in parts {
        assert!(d.message.contains(p), "{:?} does not say {p:?}", d.message);
    }
    assert!(!d.hint.is_empty(), "no hint for {}", d.reason);
}

#[test]
fn an_image_that_cannot_be_pulled_names_the_image_and_the_registrys_answer() {
    let d = of_pods(&[recorded("image-pull.json")]).unwrap();
    assert_eq!(d.reason, reasons::IMAGE_PULL_FAILED);
    // The end of the kubelet's long message is the registry's answer: it is kept.
    says(
        &d,
        &[
            "ghcr.io/k8s-scheduler/does-not-exist:0.1.0",
            "ImagePullBackOff",
            "connection refused",
        ],
    );
    assert!(d.message.len() <= MAX_MESSAGE + 4, "{}", d.message.len());
    assert_eq!(d.hint, hints::IMAGE);
}

#[test]
fn a_crash_gives_the_exit_code_and_the_last_log_lines() {
    let d = of_pods(&[recorded("crash.json")]).unwrap();
    assert_eq!(d.reason, reasons::CRASH_LOOPING);
    says(
        &d,
        &[
            "exited with code 3",
            "SETTING is not set",
            "misbehave: exiting with code 3",
        ],
    );
    assert_eq!(d.hint, hints::CRASH);
    // Only the last lines of a longer log.
    let long: String = (1..=9).map(|i| format!("line {i}\n")).collect();
    let tail = log_tail(&long);
    assert_eq!(tail, "line 5 | line 6 | line 7 | line 8 | line 9");
}

#[test]
fn a_kill_for_memory_names_the_limit() {
    let d = of_pods(&[recorded("oom.json")]).unwrap();
    assert_eq!(d.reason, reasons::OOM_KILLED);
    says(&d, &["memory", "64Mi"]);
    assert_eq!(d.hint, hints::OOM);
}

#[test]
fn the_quota_names_the_resource_it_refuses() {
    let d = of_deployment(&recorded("quota.json")).unwrap();
    assert_eq!(d.reason, reasons::QUOTA_EXCEEDED);
    says(&d, &["quota", "requests.cpu asks 1k with", "limits.cpu asks 1k"]);
    assert_eq!(d.hint, hints::QUOTA);
    let quota = quota_sentence("q, requested: requests.cpu=1k, used: requests.cpu=0, limited: requests.cpu=2");
    assert_eq!(
        quota,
        "the sandbox's quota refuses a pod: requests.cpu asks 1k with 0 of 2 in use"
    );
}

#[test]
fn the_limit_range_is_a_quota_refusal_too() {
    let d = diagnose(&Observed {
        replica_failure: Some(
            "pods \"a-web-1\" is forbidden: [maximum cpu usage per Container is 2, but limit is 1k, \
             maximum cpu usage per Pod is 4, but limit is 1k]",
        ),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(d.reason, reasons::QUOTA_EXCEEDED);
    says(&d, &["maximum cpu usage per Container is 2, but limit is 1k"]);
    assert!(!d.message.contains('['), "{}", d.message);
}

#[test]
fn pod_security_names_the_field() {
    let d = of_deployment(&recorded("pod-security.json")).unwrap();
    assert_eq!(d.reason, reasons::POD_REJECTED);
    says(&d, &["Pod Security", "allowPrivilegeEscalation"]);
    assert_eq!(d.hint, hints::POD_SECURITY);
}

#[test]
fn an_unschedulable_pod_says_what_is_missing() {
    let d = of_pods(&[recorded("unschedulable.json")]).unwrap();
    assert_eq!(d.reason, reasons::UNSCHEDULABLE);
    says(&d, &["Insufficient memory"]);
}

#[test]
fn failing_probes_are_read_from_the_pods_events() {
    let v: serde_json::Value = recorded("probe.json");
    let pod: Pod = serde_json::from_value(v["pod"].clone()).unwrap();
    let events: Vec<Event> = serde_json::from_value(v["events"].clone()).unwrap();
    let d = diagnose(&Observed {
        pods: std::slice::from_ref(&pod),
        events: &events,
        ..Default::default()
    })
    .unwrap();
    // Restarted by the kubelet for its liveness probe (exit 0): the probe, not a "crash".
    assert_eq!(d.reason, reasons::PROBE_FAILING);
    says(&d, &["liveness probe fails", "statuscode: 404", "restarted"]);
    // Without the events it looks like a crash: the events are what tells them apart.
    assert_eq!(
        of_pods(std::slice::from_ref(&pod)).unwrap().reason,
        reasons::CRASH_LOOPING
    );
    // A container that runs and is not ready: its readiness probe's answer; another pod's
    // event is not this one's.
    let mut running: Pod = pod.clone();
    let cs = &mut running.status.as_mut().unwrap().container_statuses.as_mut().unwrap()[0];
    cs.restart_count = 0;
    cs.last_state = None;
    let mut other = events[0].clone();
    other.involved_object.name = Some("another-pod".into());
    other.message = Some("Readiness probe failed: connection refused".into());
    let with_other = [other, events[0].clone()];
    let d = diagnose(&Observed {
        pods: std::slice::from_ref(&running),
        events: &with_other,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(d.reason, reasons::PROBE_FAILING);
    says(&d, &["readiness probe fails", "statuscode: 404"]);
    assert!(!d.message.contains("connection refused"), "{}", d.message);
    // Without an event: nothing to say yet (the probe may not have run).
    assert_eq!(of_pods(&[running]), None);
}

#[test]
fn a_stalled_rollout_with_no_other_reason_says_so() {
    let d = diagnose(&Observed {
        deadline_exceeded: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(d.reason, reasons::ROLLOUT_STALLED);
    says(&d, &["ProgressDeadlineExceeded"]);
}

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
fn a_root_image_under_run_as_non_root_is_a_refusal() {
    let d = of_pods(&[pod(waiting(
        "CreateContainerConfigError",
        "container has runAsNonRoot and image will run as root",
    ))])
    .unwrap();
    assert_eq!(d.reason, reasons::CONTAINER_REFUSED);
    says(&d, &["runAsNonRoot"]);
    assert_eq!(d.hint, hints::RUN_AS_ROOT);
}

#[test]
fn a_restarted_container_is_already_a_crash() {
    let statuses = json!([{ "name": "web", "image": "i", "imageID": "", "ready": false, "restartCount": 1,
        "state": { "running": {} }, "lastState": { "terminated": { "exitCode": 1 } } }]);
    assert_eq!(of_pods(&[pod(statuses)]).unwrap().reason, reasons::CRASH_LOOPING);
}

#[test]
fn a_missing_image_outranks_a_crash_in_another_pod() {
    let crash: Pod = recorded("crash.json");
    let pull: Pod = recorded("image-pull.json");
    assert_eq!(of_pods(&[crash, pull]).unwrap().reason, reasons::IMAGE_PULL_FAILED);
}

#[test]
fn starting_pods_are_not_a_problem() {
    assert_eq!(of_pods(&[pod(waiting("ContainerCreating", ""))]), None);
    assert_eq!(of_pods(&[]), None);
    let statuses = json!([{ "name": "web", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": { "running": {} } }]);
    assert_eq!(of_pods(&[pod(statuses)]), None);
}

#[test]
fn long_messages_are_cut_on_a_character_boundary() {
    let long = "é".repeat(400);
    // A refusal keeps its beginning; a pull failure the end (the registry's answer).
    let d = of_pods(&[pod(waiting("CreateContainerError", &long))]).unwrap();
    assert!(d.message.len() <= MAX_MESSAGE + 4, "{}", d.message.len());
    assert!(d.message.ends_with('…'));
    let d = of_pods(&[pod(waiting("ErrImagePull", &long))]).unwrap();
    assert!(d.message.len() <= MAX_MESSAGE + 4, "{}", d.message.len());
    assert!(d.message.contains("cannot be pulled (ErrImagePull): …é") && d.message.ends_with('é'));
    let tail = log_tail(&format!("first\n{}", "ü".repeat(400)));
    assert!(tail.starts_with('…') && tail.len() <= MAX_MESSAGE + 4, "{tail}");
}
