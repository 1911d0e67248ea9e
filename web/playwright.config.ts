import { defineConfig } from "@playwright/test";

// End-to-end tests against a running server (BASE_URL), driven by e2e/tests/kwok/ui.rs. No browser is
// downloaded: Debian's Chromium is used (CHROMIUM_PATH, default /usr/bin/chromium).
const root = typeof process.getuid === "function" && process.getuid() === 0;

export default defineConfig({
  testDir: "e2e",
  // Traces and screenshots of failures; e2e/tests/kwok/ui.rs gives each run its own.
  outputDir: process.env.PLAYWRIGHT_OUTPUT_DIR ?? "test-results/playwright",
  fullyParallel: false,
  workers: 1,
  retries: 0,
  // Generous: hack/test runs this beside every other test on a busy machine.
  timeout: 10 * 60_000,
  expect: { timeout: 15_000 },
  reporter: [["list"]],
  use: {
    baseURL: process.env.BASE_URL ?? "http://127.0.0.1:8081",
    headless: true,
    viewport: { width: 1280, height: 800 },
    screenshot: "only-on-failure",
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: root ? ["--no-sandbox"] : [],
    },
  },
});
