//! The curated catalog (charts/k8s-scheduler/catalog/*.yaml, installed by the chart when
//! `catalog.enabled`): every template passes the controller's own rules and the catalog's rules
//! (image pinned by tag and digest, a numeric non-root user declared per service, credentials only
//! as secret parameters, resources, a description, storage needs stated), and each one validates
//! and builds as a UserDeployment named after it. docs/catalog.md lists the templates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crds::{Template, UserDeployment};
use policy::build;
use policy::settings::{BuildSettings, Settings, image_registry, parse_registries};
use policy::validate::{validate_deployment, validate_template};
use regex::Regex;

/// The fewest templates the catalog ships (issue 18: "at least 20").
const MIN_TEMPLATES: usize = 20;

/// Registries the catalog pulls from, so an `ALLOWED_REGISTRIES` of these three admits all of it.
const REGISTRIES: &str = "docker.io,quay.io,codeberg.org";

/// Annotation saying whether the app keeps data it loses on restart until volumes exist.
const NEEDS_STORAGE: &str = "k8s-scheduler.io/needs-storage";

/// Annotation prefix declaring, per service, the numeric user the image runs as.
const RUN_AS_USER: &str = "k8s-scheduler.io/run-as-user.";

fn catalog_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/k8s-scheduler/catalog")
}

/// Every catalog file with its Template, sorted by file name.
fn catalog() -> Vec<(String, Template)> {
    let dir = catalog_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("catalog directory entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                file.ends_with(".yaml"),
                "{file}: the chart renders catalog/*.yaml only; rename it or move it out"
            );
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
            let template: Template =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file} is not a Template: {e}"));
            (file, template)
        })
        .collect()
}

#[test]
fn the_catalog_has_enough_templates_with_unique_names_matching_their_files() {
    let all = catalog();
    assert!(
        all.len() >= MIN_TEMPLATES,
        "the catalog has {} templates, fewer than {MIN_TEMPLATES}",
        all.len()
    );
    let mut names = BTreeSet::new();
    for (file, t) in &all {
        let name = t.metadata.name.clone().unwrap_or_default();
        assert_eq!(
            *file,
            format!("{name}.yaml"),
            "{file}: file name and metadata.name differ"
        );
        assert!(names.insert(name.clone()), "{file}: duplicate template name {name}");
        assert!(
            t.metadata.namespace.is_none(),
            "{file}: metadata.namespace is set; the chart puts the catalog in the release namespace"
        );
    }
}

#[test]
fn every_template_passes_the_controllers_rules_with_default_and_restricted_registries() {
    let default = Settings::with_domain("example.com");
    let mut restricted = Settings::with_domain("example.com");
    restricted.allowed_registries = parse_registries(REGISTRIES).expect("registry list");
    for (file, t) in catalog() {
        for settings in [&default, &restricted] {
            let problems = validate_template(&t.spec, settings);
            assert!(
                problems.is_empty(),
                "{file} (allowed registries {:?}): {problems:?}",
                settings.allowed_registries.0
            );
        }
    }
}

#[test]
fn every_template_is_public_described_categorised_and_says_whether_it_needs_storage() {
    for (file, t) in catalog() {
        let spec = &t.spec;
        assert_eq!(spec.visibility, crds::TemplateVisibility::Public, "{file}: visibility");
        assert!(
            spec.description.len() >= 40,
            "{file}: the description is missing or too short"
        );
        assert!(!spec.category.is_empty(), "{file}: no category");
        let annotations = t.metadata.annotations.clone().unwrap_or_default();
        match annotations.get(NEEDS_STORAGE).map(String::as_str) {
            Some("true") => assert!(
                spec.description.contains("persistent storage") && spec.description.contains("lost"),
                "{file}: needs storage, so its description must say what is lost without it"
            ),
            Some("false") => {}
            other => panic!("{file}: annotation {NEEDS_STORAGE} must be \"true\" or \"false\", not {other:?}"),
        }
    }
}

#[test]
fn every_image_is_pinned_by_tag_and_digest() {
    // registry/path:tag@sha256:<64 hex>, with the registry written out (no Docker Hub shorthand).
    let pinned =
        Regex::new(r"^[a-z0-9.-]+\.[a-z]+(?::[0-9]+)?/[a-z0-9._/-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$").unwrap();
    let allowed: Vec<&str> = REGISTRIES.split(',').collect();
    for (file, t) in catalog() {
        for s in &t.spec.services {
            assert!(
                pinned.is_match(&s.image),
                "{file}: service {} image {:?} is not registry/name:tag@sha256:<digest>",
                s.name,
                s.image
            );
            assert!(
                allowed.contains(&image_registry(&s.image)),
                "{file}: service {} pulls from {}, outside {REGISTRIES} (update docs/catalog.md and REGISTRIES)",
                s.name,
                image_registry(&s.image)
            );
        }
    }
}

#[test]
fn every_service_declares_the_numeric_non_root_user_its_image_runs_as() {
    for (file, t) in catalog() {
        let annotations = t.metadata.annotations.clone().unwrap_or_default();
        let services: BTreeSet<&str> = t.spec.services.iter().map(|s| s.name.as_str()).collect();
        for s in &services {
            let key = format!("{RUN_AS_USER}{s}");
            let uid = annotations
                .get(&key)
                .unwrap_or_else(|| panic!("{file}: no annotation {key} (the user service {s}'s image runs as)"));
            let uid: u32 = uid
                .parse()
                .unwrap_or_else(|_| panic!("{file}: {key} is {uid:?}, not a numeric user id"));
            assert!(
                uid > 0,
                "{file}: {key} is 0 (root); the platform runs pods with runAsNonRoot"
            );
        }
        for key in annotations.keys().filter_map(|k| k.strip_prefix(RUN_AS_USER)) {
            assert!(services.contains(key), "{file}: {RUN_AS_USER}{key} names no service");
        }
    }
}

#[test]
fn credentials_are_secret_parameters_without_defaults() {
    let credential = Regex::new(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$").unwrap();
    for (file, t) in catalog() {
        for p in &t.spec.parameters {
            if credential.is_match(&p.name) {
                assert!(
                    p.secret,
                    "{file}: parameter {} holds a credential but is not secret",
                    p.name
                );
            }
            if p.secret {
                assert!(p.default.is_none(), "{file}: secret parameter {} has a default", p.name);
            }
        }
        // Nothing that looks like a credential is baked into a service's fixed environment.
        for s in &t.spec.services {
            for (k, v) in &s.env {
                assert!(
                    !credential.is_match(k) || v.starts_with("$("),
                    "{file}: service {} sets {k} to a fixed value; make it a secret parameter",
                    s.name
                );
            }
        }
    }
}

#[test]
fn every_service_has_cpu_and_memory_requests_and_limits() {
    for (file, t) in catalog() {
        for s in &t.spec.services {
            let r = s
                .resources
                .as_ref()
                .unwrap_or_else(|| panic!("{file}: service {} has no resources", s.name));
            for (what, list) in [("requests", &r.requests), ("limits", &r.limits)] {
                let list = list
                    .as_ref()
                    .unwrap_or_else(|| panic!("{file}: service {} has no {what}", s.name));
                assert!(
                    list.cpu.is_some() && list.memory.is_some(),
                    "{file}: service {} {what} need cpu and memory",
                    s.name
                );
            }
        }
    }
}

/// `$(NAME)` references the kubelet expands in env values, command and args.
fn references(text: &str) -> Vec<String> {
    let re = Regex::new(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)").unwrap();
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}

#[test]
fn kubelet_references_name_parameters_or_the_services_own_variables() {
    for (file, t) in catalog() {
        let params: BTreeSet<&str> = t.spec.parameters.iter().map(|p| p.name.as_str()).collect();
        for s in &t.spec.services {
            let texts = s.env.values().chain(&s.command).chain(&s.args);
            for name in texts.flat_map(|v| references(v)) {
                // An unknown name is left as the literal text "$(NAME)": always a mistake here.
                assert!(
                    params.contains(name.as_str()) || s.env.contains_key(&name),
                    "{file}: service {} refers to $({name}), which is neither a parameter nor its variable",
                    s.name
                );
            }
        }
        // Multi-service templates find each other as <APP_NAME>-<service>: deploying the template
        // under its own name must work without changing APP_NAME.
        if t.spec.services.len() > 1 {
            let app = t
                .spec
                .parameters
                .iter()
                .find(|p| p.name == "APP_NAME")
                .unwrap_or_else(|| panic!("{file}: several services but no APP_NAME parameter"));
            assert_eq!(
                app.default.as_deref(),
                t.metadata.name.as_deref(),
                "{file}: APP_NAME's default must be the template's name"
            );
        }
    }
}

/// Values for required parameters that have no default, by name (the catalog has few).
fn sample_value(name: &str) -> &'static str {
    match name {
        "ELASTICSEARCH_HOSTS" => "https://search.example.com:9200",
        other => panic!("no sample value for required parameter {other}: add one to sample_value"),
    }
}

#[test]
fn every_template_deploys_under_its_own_name_and_builds_restricted_pods() {
    let settings = Settings::with_domain("example.com");
    for (file, t) in catalog() {
        let name = t.metadata.name.clone().unwrap_or_default();
        let parameters: BTreeMap<String, String> = t
            .spec
            .parameters
            .iter()
            .filter(|p| p.required && !p.secret && p.default.is_none())
            .map(|p| (p.name.clone(), sample_value(&p.name).to_string()))
            .collect();
        let secret_refs: Vec<String> = t
            .spec
            .parameters
            .iter()
            .filter(|p| p.secret)
            .map(|p| p.name.clone())
            .collect();
        let ud: UserDeployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1",
            "kind": "UserDeployment",
            "metadata": { "name": name, "namespace": "sandbox-alice", "uid": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" },
            "spec": {
                "templateRef": { "name": name },
                "parameters": parameters,
                "secretRefs": secret_refs,
            }
        }))
        .unwrap_or_else(|e| panic!("{file}: UserDeployment: {e}"));
        let vd = validate_deployment(&ud, Some(&t.spec), "alice", &settings)
            .unwrap_or_else(|e| panic!("{file}: {}: {}", e.reason, e.message));
        let children = build::deployment::build(&vd, &settings, &BuildSettings::default());
        assert_eq!(
            children.deployments.len(),
            t.spec.services.len(),
            "{file}: one Deployment per service"
        );
        assert_eq!(
            children.services.len(),
            t.spec.services.len(),
            "{file}: one Service per service"
        );
        for d in &children.deployments {
            let pod = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .expect("pod spec");
            let c = &pod.containers[0];
            let sc = c.security_context.as_ref().expect("security context");
            assert_eq!(sc.run_as_non_root, Some(true), "{file}: {:?}", d.metadata.name);
            assert_eq!(
                sc.allow_privilege_escalation,
                Some(false),
                "{file}: {:?}",
                d.metadata.name
            );
            assert!(
                c.image.as_deref().is_some_and(|i| i.contains("@sha256:")),
                "{file}: {:?} runs an unpinned image",
                d.metadata.name
            );
        }
        assert_eq!(
            vd.ingress.is_some(),
            t.spec.ingress.is_some(),
            "{file}: a public deployment is routed exactly when the template has an ingress"
        );
    }
}
