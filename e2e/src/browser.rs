//! The Playwright suites of `web/e2e/` (Debian's Chromium, headless), run against a server the
//! test started: `ui.spec.ts` on the kwok cluster (tests/kwok/ui.rs), `logs.spec.ts` on the real node
//! (tests/real_node/logs.rs).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// `web/` of this repository.
pub fn web_dir() -> PathBuf {
    crate::repo_path("web")
}

/// Runs `npx playwright test <spec>` in `web/` against `base_url`, with `env` on top; returns its
/// exit status and output. Screenshots go to `screenshots`, traces and pictures of failures to
/// `output`.
pub fn playwright(
    spec: &str,
    base_url: &str,
    screenshots: &Path,
    output: &Path,
    env: &[(&str, &str)],
) -> Result<(bool, String)> {
    let web = web_dir();
    if !web.join("node_modules/@playwright/test").exists() {
        bail!(
            "{}/node_modules lacks @playwright/test: run web/scripts/build --deps (hack/test does)",
            web.display()
        );
    }
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        bail!("{chromium} not found: install Debian's chromium (hack/test does) or set CHROMIUM_PATH");
    }
    let mut cmd = Command::new("npx");
    cmd.args(["--no-install", "playwright", "test", spec])
        .current_dir(&web)
        .env("BASE_URL", base_url)
        .env("SCREENSHOT_DIR", screenshots)
        .env("PLAYWRIGHT_OUTPUT_DIR", output)
        .env("CHROMIUM_PATH", &chromium)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .env("CI", "1")
        .env("FORCE_COLOR", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .context("running npx playwright test (Node.js and npm are needed for this test)")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut out = String::new();
    child.stdout.take().context("stdout")?.read_to_string(&mut out)?;
    let status = child.wait()?;
    out.push_str(&err_reader.join().unwrap_or_default());
    Ok((status.success(), out))
}
