//! Validation: the only way to get the inputs of the build step. Everything a tenant sets is
//! checked here again, also what CEL already checks at admission (objects may predate a rule).

use std::collections::{BTreeMap, BTreeSet};

use crds::conditions::reasons;
use crds::{ParameterType, ServiceSpec, TemplateParameter, TemplateSpec, UserDeployment, Visibility};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

use crate::build::owner_ref;
use crate::names;
use crate::settings::{Settings, image_registry};

/// Why a spec cannot be run: a condition reason and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Condition reason (see `crds::conditions::reasons`).
    pub reason: &'static str,
    /// What is wrong and what to change.
    pub message: String,
}

impl Invalid {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Invalid {
            reason,
            message: message.into(),
        }
    }
}

/// A service after overrides, ready to build.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedService {
    /// The service spec with the image override applied.
    pub spec: ServiceSpec,
    /// Pods to run (0 when suspended).
    pub replicas: i32,
}

/// A UserDeployment that passed validation: the only input of `build::deployment`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedDeployment {
    /// Name of the UserDeployment.
    pub name: String,
    /// Its namespace (the sandbox namespace).
    pub namespace: String,
    /// Owner reference every child carries.
    pub owner: OwnerReference,
    /// The sandbox owner's user id.
    pub user_id: String,
    /// Services to run.
    pub services: Vec<ResolvedService>,
    /// Plain environment variables from parameters and defaults, by name.
    pub env: BTreeMap<String, String>,
    /// Kubernetes Secret the containers read secret values from.
    pub secret_name: String,
    /// Keys of that Secret: secret references and secret parameters.
    pub secret_keys: Vec<String>,
    /// Public service and port, when the app is public and has one.
    pub ingress: Option<(String, i32)>,
    /// `<user-id>-<name>.<domain>`.
    pub host: String,
    /// Where the app answers when public: `<APP_URL_SCHEME>://<host>[:<APP_URL_PORT>]`.
    pub public_url: String,
    /// Who may reach the app.
    pub visibility: Visibility,
    /// Restart marker copied onto the pods (`spec.restartedAt`).
    pub restarted_at: Option<String>,
    /// Name of the Template it runs (its secret scope), none for inline services.
    pub template: Option<String>,
}

impl ValidatedDeployment {
    /// The public URL, for public apps with an ingress.
    pub fn url(&self) -> Option<String> {
        self.ingress.as_ref().map(|_| self.public_url.clone())
    }
}

/// Whether `s` is an environment variable name like `DATABASE_URL`.
pub fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks a map's size and the length of its keys and values against the schema's limits (also
/// for objects that predate them); the message names the field, never repeats the value.
fn check_map<'a>(
    at: &str,
    entries: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
    max_entries: usize,
    max_key: usize,
    max_value: usize,
) -> Option<String> {
    if entries.len() > max_entries {
        return Some(format!("{at}: {} entries, more than {max_entries}", entries.len()));
    }
    for (k, v) in entries {
        let (klen, vlen) = (k.chars().count(), v.chars().count());
        if klen > max_key {
            return Some(format!("{at}: a name of {klen} characters, more than {max_key}"));
        }
        if vlen > max_value {
            return Some(format!("{at}.{k}: {vlen} characters, more than {max_value}"));
        }
    }
    None
}

/// Checks a template; returns every reason it is not valid (empty when it is).
pub fn validate_template(spec: &TemplateSpec, settings: &Settings) -> Vec<String> {
    let mut reasons = Vec::new();
    let mut names = BTreeSet::new();
    if spec.services.is_empty() {
        reasons.push("services: a template needs at least one service".to_string());
    }
    for (i, s) in spec.services.iter().enumerate() {
        reasons.extend(check_service(&format!("services[{i}]"), s, settings));
        if !names.insert(s.name.as_str()) {
            reasons.push(format!("services[{i}].name: duplicate service name {:?}", s.name));
        }
    }
    if let Some(ing) = &spec.ingress {
        match spec.services.iter().find(|s| s.name == ing.service) {
            None => reasons.push(format!("ingress.service: {:?} is not one of the services", ing.service)),
            Some(s) if s.port.is_none() => reasons.push(format!(
                "ingress.service: service {:?} has no port, so it cannot be public; give it a port or make \
                 another service public",
                s.name
            )),
            Some(s) if ing.port.is_some_and(|p| Some(p) != s.port) => reasons.push(format!(
                "ingress.port: service {:?} listens on {}, not {}",
                s.name,
                s.port.unwrap_or_default(),
                ing.port.unwrap_or_default()
            )),
            Some(_) => {}
        }
    }
    let mut params = BTreeSet::new();
    for (i, p) in spec.parameters.iter().enumerate() {
        let at = format!("parameters[{i}]");
        if !is_env_name(&p.name) {
            reasons.push(format!(
                "{at}.name: {:?} is not an environment variable name like DATABASE_URL",
                p.name
            ));
        }
        if !params.insert(p.name.as_str()) {
            reasons.push(format!("{at}.name: duplicate parameter {:?}", p.name));
        }
        if p.secret && p.default.is_some() {
            reasons.push(format!(
                "{at}.default: secret parameter {} cannot have a default",
                p.name
            ));
        }
        if p.type_ == ParameterType::Enum && p.enum_values.as_ref().is_none_or(|v| v.is_empty()) {
            reasons.push(format!("{at}.enum: type enum needs a list of values"));
        }
        if let Some(pattern) = &p.pattern
            && let Err(e) = regex::Regex::new(pattern)
        {
            reasons.push(format!("{at}.pattern: not a valid regular expression: {e}"));
        }
        if let Some(d) = &p.default
            && let Err(e) = check_value(p, d)
        {
            reasons.push(format!("{at}.default: {e}"));
        }
    }
    reasons
}

fn check_service(at: &str, s: &ServiceSpec, settings: &Settings) -> Vec<String> {
    let mut reasons = Vec::new();
    if !crds::is_dns_label(&s.name, 20) {
        reasons.push(format!(
            "{at}.name: {:?} is not a DNS label of at most 20 characters",
            s.name
        ));
    }
    if s.image.is_empty() || s.image.contains(char::is_whitespace) {
        reasons.push(format!("{at}.image: {:?} is not an image reference", s.image));
    } else if !settings.allowed_registries.allows(&s.image) {
        reasons.push(format!(
            "{at}.image: registry {} of {:?} is not allowed (allowed: {})",
            image_registry(&s.image),
            s.image,
            settings.allowed_registries.0.join(", ")
        ));
    }
    match s.port {
        Some(p) if !(1..=65535).contains(&p) => reasons.push(format!("{at}.port: {p} is not a port (1-65535)")),
        None if s.health_check_path.is_some() => reasons.push(format!(
            "{at}.healthCheckPath: service {:?} has no port to probe; give it a port or remove the health check",
            s.name
        )),
        _ => {}
    }
    for k in s.env.keys() {
        if !is_env_name(k) {
            reasons.push(format!("{at}.env: {k:?} is not an environment variable name"));
        }
    }
    reasons.extend(check_map(
        &format!("{at}.env"),
        s.env.iter(),
        crds::MAX_MAP_ENTRIES,
        crds::MAX_ENV_NAME_LEN,
        crds::MAX_VALUE_LEN,
    ));
    reasons
}

/// Checks one value against a parameter's type, enum and pattern.
fn check_value(p: &TemplateParameter, v: &str) -> Result<(), String> {
    match p.type_ {
        ParameterType::String => {}
        ParameterType::Number if v.parse::<f64>().is_err() => return Err(format!("{v:?} is not a number")),
        ParameterType::Boolean if v != "true" && v != "false" => return Err(format!("{v:?} is not true or false")),
        ParameterType::Enum if !p.enum_values.as_ref().is_some_and(|e| e.iter().any(|x| x == v)) => {
            return Err(format!(
                "{v:?} is not one of {:?}",
                p.enum_values.clone().unwrap_or_default()
            ));
        }
        _ => {}
    }
    if let Some(pattern) = &p.pattern {
        let anchored = format!("^(?:{pattern})$");
        match regex::Regex::new(&anchored) {
            Ok(re) if !re.is_match(v) => return Err(format!("{v:?} does not match the pattern {pattern:?}")),
            Ok(_) => {}
            Err(e) => return Err(format!("the template's pattern is invalid: {e}")),
        }
    }
    Ok(())
}

/// Checks a UserDeployment against its template (None for inline services) and resolves it.
pub fn validate_deployment(
    ud: &UserDeployment,
    template: Option<&TemplateSpec>,
    user_id: &str,
    settings: &Settings,
) -> Result<ValidatedDeployment, Invalid> {
    let name = ud.name_any();
    let namespace = ud.namespace().unwrap_or_default();
    let spec = &ud.spec;
    let host_label = names::host_label(user_id, &name);
    if !crds::is_dns_label(&host_label, 63) {
        return Err(Invalid::new(
            reasons::INVALID_SPEC,
            format!("host label {host_label:?} is not a DNS label of at most 63 characters; use a shorter name"),
        ));
    }

    let (services, parameters): (&[ServiceSpec], &[TemplateParameter]) = match (template, &spec.services) {
        (Some(t), _) => {
            let problems = validate_template(t, settings);
            if !problems.is_empty() {
                return Err(Invalid::new(
                    reasons::TEMPLATE_INVALID,
                    format!("the template is not valid: {}", problems.join("; ")),
                ));
            }
            (&t.services, &t.parameters)
        }
        (None, Some(inline)) if !inline.is_empty() => (inline.as_slice(), &[]),
        (None, _) => {
            return Err(Invalid::new(
                reasons::INVALID_SPEC,
                "set exactly one of templateRef and services",
            ));
        }
    };

    // Inline services get the same checks as a template's.
    if template.is_none() {
        let pseudo = TemplateSpec {
            display_name: name.clone(),
            description: String::new(),
            category: String::new(),
            visibility: Default::default(),
            parameters: vec![],
            services: services.to_vec(),
            ingress: None,
        };
        let problems = validate_template(&pseudo, settings);
        if let Some(first) = problems.iter().find(|p| p.contains("is not allowed")) {
            return Err(Invalid::new(reasons::REGISTRY_NOT_ALLOWED, format!("spec.{first}")));
        }
        if !problems.is_empty() {
            return Err(Invalid::new(
                reasons::INVALID_SPEC,
                format!("spec.{}", problems.join("; spec.")),
            ));
        }
    }

    let too_big = check_map(
        "spec.parameters",
        spec.parameters.iter().collect::<Vec<_>>().into_iter(),
        crds::MAX_MAP_ENTRIES,
        crds::MAX_ENV_NAME_LEN,
        crds::MAX_VALUE_LEN,
    )
    .or_else(|| {
        check_map(
            "spec.imageOverrides",
            spec.image_overrides.iter(),
            10,
            20,
            crds::MAX_IMAGE_LEN,
        )
    });
    if let Some(message) = too_big {
        return Err(Invalid::new(reasons::INVALID_SPEC, message));
    }
    for svc in spec.image_overrides.keys() {
        if !services.iter().any(|s| &s.name == svc) {
            return Err(Invalid::new(
                reasons::INVALID_SPEC,
                format!("spec.imageOverrides: {svc:?} is not a service of this app"),
            ));
        }
    }

    let mut resolved = Vec::with_capacity(services.len());
    for s in services {
        let mut s = s.clone();
        if let Some(image) = spec.image_overrides.get(&s.name) {
            s.image = image.clone();
        }
        if s.image.is_empty() || s.image.contains(char::is_whitespace) {
            return Err(Invalid::new(
                reasons::INVALID_SPEC,
                format!("image of service {:?} is not an image reference", s.name),
            ));
        }
        if !settings.allowed_registries.allows(&s.image) {
            return Err(Invalid::new(
                reasons::REGISTRY_NOT_ALLOWED,
                format!(
                    "image {:?} of service {:?} comes from registry {}, which is not allowed (allowed: {})",
                    s.image,
                    s.name,
                    image_registry(&s.image),
                    settings.allowed_registries.0.join(", ")
                ),
            ));
        }
        let replicas = if spec.suspend {
            0
        } else {
            spec.replicas.or(s.replicas).unwrap_or(1)
        };
        resolved.push(ResolvedService { spec: s, replicas });
    }

    let mut env = BTreeMap::new();
    let mut secret_keys: BTreeSet<String> = spec.secret_refs.iter().cloned().collect();
    for (k, _) in spec.parameters.iter() {
        if !is_env_name(k) {
            return Err(Invalid::new(
                reasons::INVALID_SPEC,
                format!("spec.parameters: {k:?} is not an environment variable name"),
            ));
        }
        if template.is_some() && !parameters.iter().any(|p| &p.name == k) {
            return Err(Invalid::new(
                reasons::INVALID_SPEC,
                format!("spec.parameters: the template has no parameter {k:?}"),
            ));
        }
    }
    if template.is_none() {
        env.extend(spec.parameters.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for p in parameters {
        let given = spec.parameters.get(&p.name);
        if p.secret {
            if given.is_some() {
                return Err(Invalid::new(
                    reasons::INVALID_SPEC,
                    format!(
                        "spec.parameters.{}: this parameter is secret; store its value as a secret and list {} in secretRefs",
                        p.name, p.name
                    ),
                ));
            }
            if secret_keys.contains(&p.name) {
                continue;
            }
            if p.required {
                return Err(Invalid::new(
                    reasons::MISSING_PARAMETER,
                    format!(
                        "secret parameter {} is required: store it as a secret and list it in spec.secretRefs",
                        p.name
                    ),
                ));
            }
            continue;
        }
        match given.or(p.default.as_ref()) {
            Some(v) => {
                check_value(p, v)
                    .map_err(|e| Invalid::new(reasons::INVALID_SPEC, format!("spec.parameters.{}: {e}", p.name)))?;
                env.insert(p.name.clone(), v.clone());
            }
            None if p.required => {
                return Err(Invalid::new(
                    reasons::MISSING_PARAMETER,
                    format!("parameter {} is required and has no value", p.name),
                ));
            }
            None => {}
        }
    }
    // Secret parameters are only read from the Secret; a reference that is not one still counts.
    secret_keys.extend(
        parameters
            .iter()
            .filter(|p| p.secret && spec.secret_refs.contains(&p.name))
            .map(|p| p.name.clone()),
    );

    let ingress = match (spec.visibility, template.and_then(|t| t.ingress.as_ref())) {
        (Visibility::Public, Some(ing)) => {
            let port = ing.port.or_else(|| {
                resolved
                    .iter()
                    .find(|s| s.spec.name == ing.service)
                    .and_then(|s| s.spec.port)
            });
            port.map(|p| (ing.service.clone(), p))
        }
        // Inline services: the first one with a port is public.
        (Visibility::Public, None) if template.is_none() => resolved
            .iter()
            .find_map(|s| s.spec.port.map(|p| (s.spec.name.clone(), p))),
        _ => None,
    };

    let host = names::host(user_id, &name, &settings.deployment_domain);
    Ok(ValidatedDeployment {
        secret_name: names::secret(&name, spec.secret_name.as_deref()),
        public_url: settings.app_url(&host),
        host,
        owner: owner_ref(ud),
        name,
        namespace,
        user_id: user_id.to_string(),
        services: resolved,
        env,
        secret_keys: secret_keys.into_iter().collect(),
        ingress,
        visibility: spec.visibility,
        restarted_at: spec.restarted_at.clone(),
        template: template.and(spec.template_ref.as_ref()).map(|r| r.name.clone()),
    })
}
