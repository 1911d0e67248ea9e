//! Template authoring through the API against the local control plane (issue 18): a user creates
//! a template in their sandbox, sees it in their catalog (another user does not), deploys it,
//! edits it and sees the app's Deployment roll to the new image; deleting it while an app uses it
//! is refused naming the app. Every allow-list rule violated is refused naming the field, by the
//! API and by the Kubernetes API as `kubectl apply` meets it; roles, visibility, token scopes and
//! YAML imports are checked.

use std::time::Duration;

use anyhow::{Context, Result};
use crds::{Template, UserDeployment};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Server, server_with_provider, sign_in};
use crate::kube_api::Run;

/// The only registry the server and the controller allow here.
const REGISTRY: &str = "ghcr.io";
const IMAGE_1: &str = "ghcr.io/k8s-scheduler/hello-web:0.1.0";
const IMAGE_2: &str = "ghcr.io/k8s-scheduler/hello-web:0.2.0";

/// The kube_api tests' run, with ghcr.io as the only registry allowed.
async fn new_run() -> Result<Run> {
    Run::empty("tpl").await
}

fn configure(run: &Run, c: &mut apiserver::config::Config) {
    run.configure(c);
    c.settings.allowed_registries = policy::settings::Registries(vec![REGISTRY.into()]);
}

/// A signed-in person.
struct Person {
    browser: reqwest::Client,
    id: String,
}

async fn person(server: &Server, provider: &e2e::oidc::OidcProvider, login: &str) -> Result<Person> {
    let browser = sign_in(server, provider, login).await?;
    let me: Value = browser.get(server.url("/api/me")).send().await?.json().await?;
    let id = me["user"]["id"].as_str().context("user id")?.to_string();
    Ok(Person { browser, id })
}

/// A same-origin JSON request; the status and the body (JSON, or the text as a string).
async fn send(
    server: &Server,
    who: &reqwest::Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let mut req = server.send(who, method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    answer(req).await
}

async fn answer(req: reqwest::RequestBuilder) -> Result<(StatusCode, Value)> {
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// Polls `check` until it gives `Some` (or fails after `timeout`).
async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    e2e::wait::poll(timeout, what, || {
        let fut = check();
        async move { Ok(fut.await) }
    })
    .await
}

/// A valid template named `name` running `image`.
fn template(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "k8s-scheduler.io/v1alpha1",
        "kind": "Template",
        "metadata": { "name": name },
        "spec": {
            "displayName": "Shop",
            "description": "A web shop",
            "parameters": [{ "name": "GREETING", "default": "hi" }],
            "services": [{ "name": "web", "image": image, "port": 8080, "healthCheckPath": "/healthz",
                "resources": { "limits": { "cpu": "200m", "memory": "64Mi" } } }],
            "ingress": { "service": "web" },
        },
    })
}

/// The fields a refusal names.
fn fields(body: &Value) -> Vec<String> {
    body["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The image of the app's Deployment for service `web`, as the controller rendered it.
async fn rendered_image(client: &Client, ns: &str, app: &str) -> Option<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let selector = format!("{}={app}", policy::build::DEPLOYMENT_LABEL);
    let list = deployments.list(&ListParams::default().labels(&selector)).await.ok()?;
    let d = list.items.first()?;
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

#[tokio::test]
async fn a_template_is_created_deployed_edited_and_deleted_through_the_api() -> Result<()> {
    let run = new_run().await?;
    let result = authoring(&run).await;
    run.cleanup().await;
    result
}

async fn authoring(run: &Run) -> Result<()> {
    let (provider, server) = server_with_provider(|c| configure(run, c)).await?;
    let alice = person(&server, &provider, "tplalice").await?;
    let bob = person(&server, &provider, "tplbob").await?;
    let ns = run.ns(&alice.id);
    run.namespace(&run.ns(&bob.id)).await?;
    let mut controller = e2e::operator::ControllerProcess::start(&[
        ("SANDBOX_SELECTOR", &format!("{}={}", e2e::operator::RUN_LABEL, run.run)),
        ("WATCH_NAMESPACE", &ns),
        ("PLATFORM_NAMESPACE", &run.platform),
        ("DEPLOYMENT_DOMAIN", "apps.test"),
        ("ALLOWED_REGISTRIES", REGISTRY),
        ("LEADER_ELECT", "false"),
        ("DISABLE_NETWORK_POLICIES", "true"),
    ])?;
    poll(Duration::from_secs(60), "alice's sandbox to be ready", || async {
        let me: Value = alice
            .browser
            .get(server.url("/api/me"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (me["sandbox"]["ready"] == true).then_some(())
    })
    .await
    .with_context(|| controller.logs())?;

    // Create: in alice's sandbox, in her catalog, not in bob's.
    let (s, made) = send(
        &server,
        &alice.browser,
        Method::POST,
        "/api/templates",
        Some(template("shop", IMAGE_1)),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(
        (made["name"].as_str(), made["namespace"].as_str()),
        (Some("shop"), Some(ns.as_str()))
    );
    assert_eq!(made["system"], false);
    let stored = Api::<Template>::namespaced(run.client.clone(), &ns).get("shop").await?;
    assert_eq!(stored.spec.services[0].image, IMAGE_1);
    poll(Duration::from_secs(30), "shop in alice's catalog", || async {
        let list: Value = alice
            .browser
            .get(server.url("/api/templates"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list.as_array()?.iter().any(|t| t["name"] == "shop").then_some(())
    })
    .await?;
    let (s, again) = send(
        &server,
        &alice.browser,
        Method::POST,
        "/api/templates",
        Some(template("shop", IMAGE_1)),
    )
    .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{again}");
    assert!(
        again["error"].as_str().unwrap_or("").contains("exists already"),
        "{again}"
    );
    let (s, _) = send(&server, &bob.browser, Method::GET, "/api/templates/shop", None).await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "bob sees alice's private template");
    let bobs: Value = bob
        .browser
        .get(server.url("/api/templates"))
        .send()
        .await?
        .json()
        .await?;
    assert!(!bobs.as_array().unwrap().iter().any(|t| t["name"] == "shop"), "{bobs}");
    for (method, path, body) in [
        (Method::PUT, "/api/templates/shop", Some(template("shop", IMAGE_2))),
        (Method::DELETE, "/api/templates/shop", None),
    ] {
        let (s, e) = send(&server, &bob.browser, method.clone(), path, body).await?;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path} as bob: {e}");
    }

    // Deploy it; the controller renders the template's image.
    let (s, app) = send(
        &server,
        &alice.browser,
        Method::POST,
        "/api/deployments",
        Some(json!({ "template": "shop", "name": "shopapp" })),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{app}");
    poll(
        Duration::from_secs(60),
        "the app's Deployment with the first image",
        || async { (rendered_image(&run.client, &ns, "shopapp").await? == IMAGE_1).then_some(()) },
    )
    .await
    .with_context(|| controller.logs())?;

    // Edit: the app rolls to the new image.
    let (s, edited) = send(
        &server,
        &alice.browser,
        Method::PUT,
        "/api/templates/shop",
        Some(template("shop", IMAGE_2)),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{edited}");
    assert_eq!(edited["services"][0]["image"], IMAGE_2, "{edited}");
    poll(
        Duration::from_secs(60),
        "the app's Deployment with the new image",
        || async { (rendered_image(&run.client, &ns, "shopapp").await? == IMAGE_2).then_some(()) },
    )
    .await
    .with_context(|| controller.logs())?;
    // An invalid edit changes nothing.
    let (s, bad) = send(
        &server,
        &alice.browser,
        Method::PUT,
        "/api/templates/shop",
        Some(template("shop", "docker.io/library/nginx:1")),
    )
    .await?;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert_eq!(fields(&bad), ["spec.services[0].image"], "{bad}");

    // Delete while in use: refused, naming the app.
    let (s, refused) = send(&server, &alice.browser, Method::DELETE, "/api/templates/shop", None).await?;
    assert_eq!(s, StatusCode::CONFLICT, "{refused}");
    let why = refused["error"].as_str().unwrap_or("");
    assert!(why.contains("1 app of this sandbox (shopapp)"), "{refused}");
    assert!(
        Api::<Template>::namespaced(run.client.clone(), &ns)
            .get_opt("shop")
            .await?
            .is_some()
    );

    // Delete the app, then the template: gone.
    let (s, e) = send(
        &server,
        &alice.browser,
        Method::DELETE,
        "/api/deployments/shopapp",
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    let uds: Api<UserDeployment> = Api::namespaced(run.client.clone(), &ns);
    e2e::wait_until_gone(&uds, "shopapp", Duration::from_secs(60))
        .await
        .with_context(|| controller.logs())?;
    poll(
        Duration::from_secs(30),
        "the template's delete once no app uses it",
        || async {
            let (s, _) = send(&server, &alice.browser, Method::DELETE, "/api/templates/shop", None)
                .await
                .ok()?;
            (s == StatusCode::NO_CONTENT).then_some(())
        },
    )
    .await?;
    let templates: Api<Template> = Api::namespaced(run.client.clone(), &ns);
    e2e::wait_until_gone(&templates, "shop", Duration::from_secs(30)).await?;
    poll(Duration::from_secs(30), "shop gone from the catalog", || async {
        let (s, _) = send(&server, &alice.browser, Method::GET, "/api/templates/shop", None)
            .await
            .ok()?;
        (s == StatusCode::NOT_FOUND).then_some(())
    })
    .await?;

    allow_list(run, &server, &alice, &ns).await?;
    tokens_and_yaml(&server, &alice, &ns).await?;
    controller.kill();
    Ok(())
}

/// Each rule of the tenant allow-list, broken once: the API refuses it naming the field (and
/// validate says the same without saving); so does the Kubernetes API for what admission can
/// tell (everything but the registry allow-list, which is a setting of the platform: there the
/// controller marks the template invalid, naming the field, and the server refuses to deploy it).
async fn allow_list(run: &Run, server: &Server, alice: &Person, ns: &str) -> Result<()> {
    let templates: Api<Template> = Api::namespaced(run.client.clone(), ns);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut t = template("broken", IMAGE_1);
        change(&mut t);
        t
    };
    let cases: Vec<(&str, Value, bool)> = vec![
        (
            "spec.services[0].image",
            with(&|t| t["spec"]["services"][0]["image"] = json!("docker.io/evil/miner:1")),
            false,
        ),
        (
            "spec.services[0].securityContext",
            with(&|t| t["spec"]["services"][0]["securityContext"] = json!({ "privileged": true, "runAsUser": 0 })),
            true,
        ),
        (
            "spec.services[0].hostPath",
            with(&|t| t["spec"]["services"][0]["hostPath"] = json!({ "path": "/var/run/docker.sock" })),
            true,
        ),
        (
            "spec.services[0].serviceAccountName",
            with(&|t| t["spec"]["services"][0]["serviceAccountName"] = json!("default")),
            true,
        ),
        (
            "metadata.name",
            with(&|t| t["metadata"]["name"] = json!("Bad_Name")),
            true,
        ),
        (
            "spec.services[0].resources.limits.cpu",
            with(&|t| t["spec"]["services"][0]["resources"]["limits"]["cpu"] = json!("lots")),
            true,
        ),
    ];
    for (field, body, admission_refuses) in cases {
        let (s, checked) = send(
            server,
            &alice.browser,
            Method::POST,
            "/api/templates/validate",
            Some(body.clone()),
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{checked}");
        assert_eq!(checked["valid"], false, "{field}: {checked}");
        assert!(
            fields(&checked).iter().any(|f| f == field),
            "validate, {field}: {checked}"
        );
        let (s, refused) = send(
            server,
            &alice.browser,
            Method::POST,
            "/api/templates",
            Some(body.clone()),
        )
        .await?;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {refused}");
        assert!(
            fields(&refused).iter().any(|f| f == field),
            "create, {field}: {refused}"
        );
        assert!(refused["error"].as_str().unwrap_or("").contains(field), "{refused}");
        assert!(templates.get_opt("broken").await?.is_none(), "{field}: nothing saved");

        // The same object as `kubectl apply` sends it (server-side apply, strict field validation).
        let mut manifest = body.clone();
        manifest["metadata"]["namespace"] = json!(ns);
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let pp = PatchParams::apply("kubectl").validation_strict();
        let applied = templates.patch(&name, &pp, &Patch::Apply(&manifest)).await;
        if admission_refuses {
            let err = applied
                .err()
                .with_context(|| format!("kubectl apply accepted {field}"))?;
            let text = err.to_string();
            let leaf = field.rsplit('.').next().unwrap_or(field);
            assert!(
                text.contains(leaf) || (field == "metadata.name" && text.contains("Bad_Name")),
                "{field}: {text}"
            );
        } else {
            applied.with_context(|| format!("kubectl apply of {field}"))?;
            let t = e2e::wait_for(
                &templates,
                &name,
                Duration::from_secs(60),
                "the controller to mark it invalid",
                |t: Option<&Template>| t.and_then(|t| t.status.as_ref()).is_some_and(|s| !s.valid),
            )
            .await?;
            let reasons = t.status.map(|s| s.reasons).unwrap_or_default();
            assert!(
                reasons.iter().any(|r| r.starts_with("services[0].image")),
                "{reasons:?}"
            );
            // The server refuses to deploy it, with the controller's message.
            let (s, e) = send(
                server,
                &alice.browser,
                Method::POST,
                "/api/deployments",
                Some(json!({ "template": name, "name": "evil" })),
            )
            .await?;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
            assert!(e["error"].as_str().unwrap_or("").contains("docker.io"), "{e}");
            templates.delete(&name, &DeleteParams::default()).await?;
            e2e::wait_until_gone(&templates, &name, Duration::from_secs(30)).await?;
        }
    }
    Ok(())
}

/// A token without `templates:write` is refused; YAML imports (as a body with a token, or
/// inside JSON from the browser) are read like JSON, and another namespace or kind is refused
/// naming the field.
async fn tokens_and_yaml(server: &Server, alice: &Person, ns: &str) -> Result<()> {
    let token = |scopes: Value| async move {
        let (s, t) = send(
            server,
            &alice.browser,
            Method::POST,
            "/api/tokens",
            Some(json!({ "name": format!("t{}", rand_suffix()), "scopes": scopes })),
        )
        .await?;
        anyhow::ensure!(s == StatusCode::CREATED, "token: {t}");
        Ok::<String, anyhow::Error>(t["token"].as_str().context("token")?.to_string())
    };
    let reader = token(json!(["templates:read"])).await?;
    let writer = token(json!(["templates:read", "templates:write"])).await?;
    let client = reqwest::Client::new();
    let (s, e) = answer(
        client
            .post(server.url("/api/templates"))
            .bearer_auth(&reader)
            .json(&template("tokenmade", IMAGE_1)),
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(e["error"].as_str().unwrap_or("").contains("templates:write"), "{e}");

    let yaml = |namespace: &str, kind: &str| {
        format!(
            "apiVersion: k8s-scheduler.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: imported\n  namespace: {namespace}\n\
             spec:\n  displayName: Imported\n  services:\n    - name: web\n      image: {IMAGE_1}\n      port: 8080\n"
        )
    };
    let post_yaml = |text: String| {
        client
            .post(server.url("/api/templates"))
            .bearer_auth(&writer)
            .header("content-type", "application/yaml")
            .body(text)
    };
    let (s, e) = answer(post_yaml(yaml("kube-system", "Template"))).await?;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(fields(&e), ["metadata.namespace"], "{e}");
    assert!(e["error"].as_str().unwrap_or("").contains("kube-system"), "{e}");
    let (s, e) = answer(post_yaml(yaml(ns, "ConfigMap"))).await?;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(fields(&e), ["kind"], "{e}");
    let (s, e) = answer(post_yaml("spec: [unclosed".into())).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    // A good file: saved, from a token or from the browser.
    let (s, made) = answer(post_yaml(yaml(ns, "Template"))).await?;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(made["namespace"], ns, "{made}");
    let (s, e) = send(server, &alice.browser, Method::DELETE, "/api/templates/imported", None).await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    let from_browser = json!({ "yaml": yaml(ns, "Template").replace("imported", "browserimport") });
    let (s, made) = send(
        server,
        &alice.browser,
        Method::POST,
        "/api/templates",
        Some(from_browser),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    Ok(())
}

fn rand_suffix() -> String {
    e2e::unique_name("x")
}

#[tokio::test]
async fn roles_and_visibility_decide_who_may_write_which_template() -> Result<()> {
    let run = new_run().await?;
    let result = roles(&run).await;
    run.cleanup().await;
    result
}

/// Invites `who` into `team` with `role` (as `admin`, who manages the team) and has them accept.
async fn join(server: &Server, admin: &Person, team: &str, who: &Person, login: &str, role: &str) -> Result<()> {
    let (s, inv) = send(
        server,
        &admin.browser,
        Method::POST,
        &format!("/api/teams/{team}/invitations"),
        Some(json!({ "email": format!("{login}@example.com"), "role": role })),
    )
    .await?;
    anyhow::ensure!(s == StatusCode::CREATED, "inviting {login}: {inv}");
    let link = inv["link"].as_str().context("no link without EMAIL_PROVIDER")?;
    let token = link.rsplit('/').next().unwrap_or_default();
    let (s, body) = send(
        server,
        &who.browser,
        Method::POST,
        &format!("/api/invitations/{token}/accept"),
        None,
    )
    .await?;
    anyhow::ensure!(s == StatusCode::OK, "{login} accepting: {body}");
    Ok(())
}

async fn roles(run: &Run) -> Result<()> {
    let (provider, server) = server_with_provider(|c| configure(run, c)).await?;
    let owner = person(&server, &provider, "tplolga").await?;
    let dev = person(&server, &provider, "tpldan").await?;
    let viewer = person(&server, &provider, "tplvic").await?;
    // No controller here: create the sandbox namespaces as it would.
    run.namespace(&run.ns(&owner.id)).await?;
    let (s, org) = send(
        &server,
        &owner.browser,
        Method::POST,
        "/api/orgs",
        Some(json!({ "name": "Acme" })),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{org}");
    let org = org["id"].as_str().context("org id")?.to_string();
    // A free organization's team holds one member: a plan with room for three (as `--set-org-plan`).
    assert!(apiserver::teams::store::set_org_plan(&server.app.state.db, &org, crds::Plan::Business).await?);
    let (s, team) = send(
        &server,
        &owner.browser,
        Method::POST,
        &format!("/api/orgs/{org}/teams"),
        Some(json!({ "name": "Web" })),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{team}");
    let team_id = team["id"].as_str().context("team id")?.to_string();
    let team_ns = team["namespace"].as_str().context("team namespace")?.to_string();
    run.namespace(&team_ns).await?;
    join(&server, &owner, &team_id, &dev, "tpldan", "developer").await?;
    join(&server, &owner, &team_id, &viewer, "tplvic", "viewer").await?;

    // In their own sandbox, only private templates.
    let mut shared = template("teamshared", IMAGE_1);
    shared["spec"]["visibility"] = json!("team");
    let (s, e) = send(
        &server,
        &owner.browser,
        Method::POST,
        "/api/templates",
        Some(shared.clone()),
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(e["error"].as_str().unwrap_or("").contains("personal sandbox"), "{e}");
    let mut public = template("forall", IMAGE_1);
    public["spec"]["visibility"] = json!("public");
    let (s, e) = send(&server, &owner.browser, Method::POST, "/api/templates", Some(public)).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(e["error"].as_str().unwrap_or("").contains("platform's catalog"), "{e}");

    for p in [&owner, &dev, &viewer] {
        let (s, me) = send(
            &server,
            &p.browser,
            Method::PUT,
            "/api/me/team",
            Some(json!({ "team": team_id })),
        )
        .await?;
        assert_eq!(s, StatusCode::OK, "{me}");
    }
    // A viewer may not write templates: 403 naming the role.
    let (s, e) = send(
        &server,
        &viewer.browser,
        Method::POST,
        "/api/templates",
        Some(template("byviewer", IMAGE_1)),
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let why = e["error"].as_str().unwrap_or("");
    assert!(why.contains("developer") && why.contains("viewer"), "{e}");
    // A developer may share with the team, not with the organization.
    let (s, made) = send(
        &server,
        &dev.browser,
        Method::POST,
        "/api/templates",
        Some(shared.clone()),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(
        (made["namespace"].as_str(), made["visibility"].as_str()),
        (Some(team_ns.as_str()), Some("team"))
    );
    let mut org_wide = template("orgwide", IMAGE_1);
    org_wide["spec"]["visibility"] = json!("org");
    let (s, e) = send(
        &server,
        &dev.browser,
        Method::POST,
        "/api/templates",
        Some(org_wide.clone()),
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(e["error"].as_str().unwrap_or("").contains("owners and admins"), "{e}");
    let (s, checked) = send(
        &server,
        &dev.browser,
        Method::POST,
        "/api/templates/validate",
        Some(org_wide.clone()),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{checked}");
    assert_eq!(fields(&checked), ["spec.visibility"], "{checked}");
    let (s, e) = send(
        &server,
        &dev.browser,
        Method::PUT,
        "/api/templates/teamshared",
        Some({
            let mut t = shared.clone();
            t["spec"]["visibility"] = json!("org");
            t
        }),
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    // The organization's owner may.
    let (s, made) = send(&server, &owner.browser, Method::POST, "/api/templates", Some(org_wide)).await?;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(made["visibility"], "org");
    // The viewer sees both in the team's catalog but may not delete them.
    poll(
        Duration::from_secs(30),
        "the team's templates in the viewer's catalog",
        || async {
            let (_, list) = send(&server, &viewer.browser, Method::GET, "/api/templates", None)
                .await
                .ok()?;
            let names: Vec<&str> = list.as_array()?.iter().filter_map(|t| t["name"].as_str()).collect();
            (names.contains(&"teamshared") && names.contains(&"orgwide")).then_some(())
        },
    )
    .await?;
    let (s, e) = send(&server, &viewer.browser, Method::DELETE, "/api/templates/orgwide", None).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let (s, e) = send(&server, &dev.browser, Method::DELETE, "/api/templates/teamshared", None).await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    Ok(())
}
