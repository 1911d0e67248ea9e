//! Which Template a reference means and who may use it: the one rule of the HTTP server (what
//! it lists and accepts) and the controller (what it runs).

use std::sync::Arc;

use crds::deployment::TemplateRef;
use crds::{Template, TemplateVisibility};
use kube::ResourceExt;

/// Whether a Template in namespace `template_namespace` with `visibility` can be used from
/// namespace `from`: the one rule of both the HTTP server (what it lists and accepts) and the
/// controller (what it runs). Visible are the templates of one's own namespace, whatever their
/// visibility, and the `org` and `public` templates of the platform namespace; never a private or
/// team template of the platform namespace, nor any template of another sandbox's namespace.
pub fn is_visible(
    template_namespace: &str,
    visibility: TemplateVisibility,
    from: &str,
    platform_namespace: &str,
) -> bool {
    template_namespace == from
        || (template_namespace == platform_namespace
            && matches!(visibility, TemplateVisibility::Org | TemplateVisibility::Public))
}

/// The namespaces to look for the Template of `r` in, in order: the one it names, else the
/// deployment's own (`from`), then the platform namespace.
pub fn search_order<'a>(r: &'a TemplateRef, from: &'a str, platform_namespace: &'a str) -> Vec<&'a str> {
    match &r.namespace {
        Some(ns) => vec![ns.as_str()],
        None if from == platform_namespace => vec![from],
        None => vec![from, platform_namespace],
    }
}

/// Whether `t` may be used from namespace `from`.
pub fn usable(t: &Template, from: &str, platform_namespace: &str) -> bool {
    is_visible(
        t.namespace().as_deref().unwrap_or_default(),
        t.spec.visibility,
        from,
        platform_namespace,
    )
}

/// The Template `r` means for a deployment in `from`, found with `lookup(namespace, name)`: the
/// first one in [`search_order`]; `None` when there is none or it may not be used from `from`
/// (a hidden template is not found, whatever comes after it).
pub fn resolve<T: AsRef<Template>>(
    r: &TemplateRef,
    from: &str,
    platform_namespace: &str,
    mut lookup: impl FnMut(&str, &str) -> Option<T>,
) -> Option<T> {
    search_order(r, from, platform_namespace)
        .into_iter()
        .find_map(|ns| lookup(ns, &r.name))
        .filter(|t| usable(t.as_ref(), from, platform_namespace))
}

/// The templates of `all` that may be used from `from`, own ones first (they shadow the platform's
/// of the same name), then by name: what the catalog lists.
pub fn listed(
    all: impl IntoIterator<Item = Arc<Template>>,
    from: &str,
    platform_namespace: &str,
) -> Vec<Arc<Template>> {
    let mut out: Vec<Arc<Template>> = all
        .into_iter()
        .filter(|t| usable(t, from, platform_namespace))
        .collect();
    out.sort_by_key(|t| (t.namespace().as_deref() != Some(from), t.name_any()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use TemplateVisibility::*;

    #[test]
    fn visibility_matrix() {
        let platform = "k8s-scheduler";
        // (template namespace, visibility, from, visible)
        for (tns, v, from, visible) in [
            ("sandbox-a", Private, "sandbox-a", true),
            ("sandbox-a", Team, "sandbox-a", true),
            ("sandbox-a", Org, "sandbox-a", true),
            ("sandbox-a", Public, "sandbox-a", true),
            (platform, Org, "sandbox-a", true),
            (platform, Public, "sandbox-a", true),
            // The controller ran these before (the server did not list them): a private or team
            // template of the platform namespace, and another sandbox's org or public template.
            (platform, Private, "sandbox-a", false),
            (platform, Team, "sandbox-a", false),
            ("sandbox-b", Public, "sandbox-a", false),
            ("sandbox-b", Org, "sandbox-a", false),
            ("sandbox-b", Private, "sandbox-a", false),
            ("sandbox-b", Team, "sandbox-a", false),
            (platform, Private, platform, true),
        ] {
            assert_eq!(is_visible(tns, v, from, platform), visible, "{tns} {v:?} from {from}");
        }
    }

    fn template(ns: &str, name: &str, visibility: TemplateVisibility) -> Arc<Template> {
        let mut t: Template = serde_json::from_value(serde_json::json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "Template",
            "metadata": { "name": name, "namespace": ns },
            "spec": { "displayName": name, "services": [{ "name": "web", "image": "ghcr.io/x/web:1", "port": 8080 }] },
        }))
        .expect("template");
        t.spec.visibility = visibility;
        Arc::new(t)
    }

    #[test]
    fn a_reference_finds_the_own_template_first_and_never_a_hidden_one() {
        let platform = "k8s-scheduler";
        let all = [
            template("sandbox-a", "shop", Private),
            template(platform, "shop", Public),
            template(platform, "blog", Public),
            template(platform, "internal", Private),
            template("sandbox-b", "wiki", Public),
        ];
        let lookup = |ns: &str, name: &str| {
            all.iter()
                .find(|t| t.namespace().as_deref() == Some(ns) && t.name_any() == name)
                .cloned()
        };
        let reference = |name: &str, ns: Option<&str>| TemplateRef {
            name: name.into(),
            namespace: ns.map(str::to_string),
        };
        let found = |r: &TemplateRef| resolve(r, "sandbox-a", platform, lookup).map(|t| t.namespace().unwrap());
        assert_eq!(found(&reference("shop", None)).as_deref(), Some("sandbox-a"));
        assert_eq!(found(&reference("shop", Some(platform))).as_deref(), Some(platform));
        assert_eq!(found(&reference("blog", None)).as_deref(), Some(platform));
        assert_eq!(found(&reference("internal", None)), None, "private to the platform");
        assert_eq!(found(&reference("wiki", Some("sandbox-b"))), None, "another sandbox's");
        assert_eq!(found(&reference("nothing", None)), None);
        let names: Vec<(String, String)> = listed(all.iter().cloned(), "sandbox-a", platform)
            .iter()
            .map(|t| (t.namespace().unwrap(), t.name_any()))
            .collect();
        assert_eq!(
            names,
            [
                ("sandbox-a".to_string(), "shop".to_string()),
                (platform.to_string(), "blog".to_string()),
                (platform.to_string(), "shop".to_string()),
            ]
        );
    }
}
