//! Which Template a reference means and who may use it: the one rule of the HTTP server (what
//! it lists and accepts) and the controller (what it runs).

use std::collections::HashMap;
use std::sync::Arc;

use crds::deployment::TemplateRef;
use crds::{Template, TemplateVisibility, UserSandbox};
use kube::ResourceExt;

/// Label on a team's UserSandbox naming its organization (the HTTP server writes it; tenants
/// cannot change a UserSandbox).
pub const ORG_LABEL: &str = "k8s-scheduler.io/org";

/// What the visibility rule knows of one sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Facts {
    owner: String,
    members: Vec<String>,
    org: Option<String>,
}

/// The sandboxes as the visibility rule sees them, by namespace: owner id, members' user ids
/// and organization (a team's sandbox). Empty: only a sandbox's own templates and the platform's
/// are visible (a server without a cluster).
#[derive(Clone, Debug, Default)]
pub struct Sandboxes {
    by_namespace: HashMap<String, Facts>,
}

impl Sandboxes {
    /// The facts of `all`.
    pub fn from_sandboxes<'a>(all: impl IntoIterator<Item = &'a UserSandbox>) -> Sandboxes {
        let by_namespace = all
            .into_iter()
            .map(|sb| {
                (
                    sb.spec.namespace.clone(),
                    Facts {
                        owner: sb.spec.owner.user_id.clone(),
                        members: sb.spec.members.iter().map(|m| m.user_id.clone()).collect(),
                        org: sb.labels().get(ORG_LABEL).cloned(),
                    },
                )
            })
            .collect();
        Sandboxes { by_namespace }
    }

    /// Whether the owner of `from`'s sandbox is a member of `template_namespace`'s sandbox.
    fn member_of(&self, template_namespace: &str, from: &str) -> bool {
        match (self.by_namespace.get(template_namespace), self.by_namespace.get(from)) {
            (Some(t), Some(f)) => t.members.contains(&f.owner),
            _ => false,
        }
    }

    /// Whether `from`'s sandbox belongs to the organization of `template_namespace`'s: another
    /// sandbox of that organization, or the sandbox of a person who is a member of one of them.
    fn same_org(&self, template_namespace: &str, from: &str) -> bool {
        let (Some(t), Some(f)) = (self.by_namespace.get(template_namespace), self.by_namespace.get(from)) else {
            return false;
        };
        let Some(org) = &t.org else {
            return false;
        };
        f.org.as_ref() == Some(org)
            || self
                .by_namespace
                .values()
                .any(|s| s.org.as_ref() == Some(org) && s.members.contains(&f.owner))
    }
}

/// Whether a Template in namespace `template_namespace` with `visibility` can be used from
/// namespace `from`: the one rule of both the HTTP server (what it lists and accepts) and the
/// controller (what it runs). Visible are the templates of one's own namespace, whatever their
/// visibility; the `org` and `public` templates of the platform namespace; a sandbox's `team`
/// templates from the sandboxes of its members (a team's template from its members' own
/// sandboxes); and a team sandbox's `org` templates from every sandbox of its organization and its
/// members' own. Never a private or team template of the platform namespace, nor another
/// sandbox's private or public template (public is for the platform's catalog).
pub fn is_visible(
    template_namespace: &str,
    visibility: TemplateVisibility,
    from: &str,
    platform_namespace: &str,
    sandboxes: &Sandboxes,
) -> bool {
    if template_namespace == from {
        return true;
    }
    if template_namespace == platform_namespace {
        return matches!(visibility, TemplateVisibility::Org | TemplateVisibility::Public);
    }
    match visibility {
        TemplateVisibility::Team => sandboxes.member_of(template_namespace, from),
        TemplateVisibility::Org => sandboxes.same_org(template_namespace, from),
        TemplateVisibility::Private | TemplateVisibility::Public => false,
    }
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
pub fn usable(t: &Template, from: &str, platform_namespace: &str, sandboxes: &Sandboxes) -> bool {
    is_visible(
        t.namespace().as_deref().unwrap_or_default(),
        t.spec.visibility,
        from,
        platform_namespace,
        sandboxes,
    )
}

/// The Template `r` means for a deployment in `from`, found with `lookup(namespace, name)`: the
/// first one in [`search_order`]; `None` when there is none or it may not be used from `from`
/// (a hidden template is not found, whatever comes after it).
pub fn resolve<T: AsRef<Template>>(
    r: &TemplateRef,
    from: &str,
    platform_namespace: &str,
    sandboxes: &Sandboxes,
    mut lookup: impl FnMut(&str, &str) -> Option<T>,
) -> Option<T> {
    search_order(r, from, platform_namespace)
        .into_iter()
        .find_map(|ns| lookup(ns, &r.name))
        .filter(|t| usable(t.as_ref(), from, platform_namespace, sandboxes))
}

/// The templates of `all` that may be used from `from`: own ones first (they shadow the
/// platform's of the same name), then the platform's, then those shared by a team or an
/// organization, each by name: what the catalog lists.
pub fn listed(
    all: impl IntoIterator<Item = Arc<Template>>,
    from: &str,
    platform_namespace: &str,
    sandboxes: &Sandboxes,
) -> Vec<Arc<Template>> {
    let mut out: Vec<Arc<Template>> = all
        .into_iter()
        .filter(|t| usable(t, from, platform_namespace, sandboxes))
        .collect();
    let rank = |t: &Template| match t.namespace().as_deref() {
        Some(ns) if ns == from => 0,
        Some(ns) if ns == platform_namespace => 1,
        _ => 2,
    };
    out.sort_by_key(|t| (rank(t), t.name_any(), t.namespace()));
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
            assert_eq!(
                is_visible(tns, v, from, platform, &Sandboxes::default()),
                visible,
                "{tns} {v:?} from {from}"
            );
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
        let none = Sandboxes::default();
        let found = |r: &TemplateRef| resolve(r, "sandbox-a", platform, &none, lookup).map(|t| t.namespace().unwrap());
        assert_eq!(found(&reference("shop", None)).as_deref(), Some("sandbox-a"));
        assert_eq!(found(&reference("shop", Some(platform))).as_deref(), Some(platform));
        assert_eq!(found(&reference("blog", None)).as_deref(), Some(platform));
        assert_eq!(found(&reference("internal", None)), None, "private to the platform");
        assert_eq!(found(&reference("wiki", Some("sandbox-b"))), None, "another sandbox's");
        assert_eq!(found(&reference("nothing", None)), None);
        let names: Vec<(String, String)> = listed(all.iter().cloned(), "sandbox-a", platform, &none)
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

    fn sandbox(ns: &str, owner: &str, members: &[&str], org: Option<&str>) -> UserSandbox {
        let mut labels = serde_json::Map::new();
        if let Some(o) = org {
            labels.insert(ORG_LABEL.into(), o.into());
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "k8s-scheduler.io/v1alpha1", "kind": "UserSandbox",
            "metadata": { "name": ns, "labels": labels },
            "spec": { "owner": { "userId": owner }, "namespace": ns,
                "members": members.iter().map(|m| serde_json::json!({ "userId": m, "role": "developer" })).collect::<Vec<_>>() },
        }))
        .expect("sandbox")
    }

    #[test]
    fn team_and_org_templates_are_shared_with_the_team_and_the_organization() {
        let platform = "k8s-scheduler";
        let all = [
            // Team web of org acme (members alice and bob); team ops of acme (carol); alice's,
            // bob's, carol's and dave's own sandboxes; team x of another org (dave).
            sandbox("sandbox-tmweb", "tmweb", &["alice", "bob"], Some("acme")),
            sandbox("sandbox-tmops", "tmops", &["carol"], Some("acme")),
            sandbox("sandbox-alice", "alice", &[], None),
            sandbox("sandbox-carol", "carol", &[], None),
            sandbox("sandbox-dave", "dave", &[], None),
            sandbox("sandbox-tmx", "tmx", &["dave"], Some("other")),
        ];
        let dir = Sandboxes::from_sandboxes(all.iter());
        let v = |tns: &str, vis: TemplateVisibility, from: &str| is_visible(tns, vis, from, platform, &dir);
        // A team template: its members' own sandboxes, not another team's or an outsider's.
        assert!(v("sandbox-tmweb", Team, "sandbox-alice"));
        assert!(!v("sandbox-tmweb", Team, "sandbox-carol"));
        assert!(!v("sandbox-tmweb", Team, "sandbox-tmops"));
        assert!(!v("sandbox-tmweb", Team, "sandbox-dave"));
        // An org template: every sandbox of the organization and its members' own.
        assert!(v("sandbox-tmweb", Org, "sandbox-tmops"));
        assert!(v("sandbox-tmweb", Org, "sandbox-carol"));
        assert!(v("sandbox-tmweb", Org, "sandbox-alice"));
        assert!(
            !v("sandbox-tmweb", Org, "sandbox-dave"),
            "dave is in another organization"
        );
        assert!(!v("sandbox-tmweb", Org, "sandbox-tmx"));
        // Private and public templates of a sandbox stay its own.
        assert!(!v("sandbox-tmweb", Private, "sandbox-alice"));
        assert!(!v("sandbox-tmweb", Public, "sandbox-alice"));
        // A person's own sandbox has no team or organization: its team/org templates stay home.
        assert!(!v("sandbox-alice", Org, "sandbox-tmweb"));
        assert!(!v("sandbox-alice", Team, "sandbox-tmweb"));
        // Unknown sandboxes (no cluster): nothing is shared.
        assert!(!is_visible(
            "sandbox-tmweb",
            Team,
            "sandbox-alice",
            platform,
            &Sandboxes::default()
        ));
        // The catalog: own, then the platform's, then the shared ones.
        let t = |ns: &str, name: &str, vis| template(ns, name, vis);
        let names: Vec<(String, String)> = listed(
            [
                t("sandbox-tmweb", "shop", Team),
                t(platform, "blog", Public),
                t("sandbox-alice", "mine", Private),
            ],
            "sandbox-alice",
            platform,
            &dir,
        )
        .iter()
        .map(|t| (t.namespace().unwrap(), t.name_any()))
        .collect();
        assert_eq!(
            names,
            [
                ("sandbox-alice".to_string(), "mine".to_string()),
                (platform.to_string(), "blog".to_string()),
                ("sandbox-tmweb".to_string(), "shop".to_string()),
            ]
        );
    }
}
