//! The Argo CD health checks, run by a real Lua interpreter on sample objects, and the copy of the
//! script embedded in the argocd-cm snippet.

use anyhow::{Context, Result, ensure};

fn gitops_dir() -> String {
    e2e::repo_path("examples/gitops").display().to_string()
}

#[test]
fn argo_cd_health_checks_pass_their_samples() -> Result<()> {
    let dir = gitops_dir();
    let lua = std::env::var("LUA").unwrap_or_else(|_| "lua5.4".into());
    let out = std::process::Command::new(&lua)
        .current_dir(&dir)
        .args(["health_test.lua", "health.lua"])
        .output()
        .with_context(|| format!("running {lua}: install it (apt-get install lua5.4; hack/test does)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "health checks failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(text.contains("6 passed, 0 failed"), "{text}");
    Ok(())
}

#[test]
fn argocd_cm_snippet_embeds_the_tested_script() -> Result<()> {
    let dir = gitops_dir();
    let script = std::fs::read_to_string(format!("{dir}/health.lua"))?;
    let snippet: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{dir}/argocd-cm-health.yaml"))?)?;
    for kind in ["UserDeployment", "UserSandbox"] {
        let key = format!("resource.customizations.health.k8s-scheduler.io_{kind}");
        let embedded = snippet["data"][key.as_str()]
            .as_str()
            .with_context(|| format!("{key} missing"))?;
        ensure!(embedded == script, "{key} differs from health.lua; copy it over");
    }
    Ok(())
}
