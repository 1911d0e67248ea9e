// The log viewer against a real app on the real node: started by e2e/tests/real_node/logs.rs,
// which runs the server in DEV_MODE, deploys the guestbook (LOG_LEVEL=debug: one line per entry)
// as LOGS_APP, and writes an entry through the gateway every two seconds while this runs.
import { expect, test } from "@playwright/test";
import path from "node:path";

const shots = process.env.SCREENSHOT_DIR ?? path.join(import.meta.dirname, "..", "test-results", "screenshots");
const app = process.env.LOGS_APP ?? "";

const entries = (text: string) => (text.match(/added an entry of \d+ characters/g) ?? []).length;

test("the log viewer follows the lines an app prints", async ({ page }) => {
  expect(app, "LOGS_APP names the deployment (e2e/tests/real_node/logs.rs sets it)").not.toBe("");
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

  await page.goto(`/deployments/${app}`);
  await expect(page.getByRole("heading", { name: app, level: 1 })).toBeVisible();
  const logs = page.getByRole("region", { name: "Logs" });
  await logs.getByLabel("Service").selectOption("web");
  const lines = logs.getByTestId("log-lines");
  // What the app printed before: read once, not followed.
  await expect(lines).toContainText("listening on", { timeout: 60_000 });
  await expect(logs.getByTestId("log-pod")).toContainText(`${app}-web-`);

  await logs.getByRole("checkbox", { name: "Follow" }).check();
  await expect(logs.getByRole("checkbox", { name: "Previous container" })).toBeDisabled();
  await expect(lines).toContainText("listening on");
  const before = entries(await lines.innerText());
  // New entries arrive on the open stream: the count grows without a reload (twice, so that a
  // line that was on its way when Follow was turned on does not make it pass).
  await expect.poll(async () => entries(await lines.innerText()), { timeout: 60_000 }).toBeGreaterThan(before + 1);
  await page.screenshot({ path: path.join(shots, "16-deployment-logs-following.png"), fullPage: true });

  // Search narrows the followed lines to the matches.
  await logs.getByLabel("Search logs").fill("added an entry");
  await expect.poll(async () => {
    const shown = (await lines.innerText()).split("\n").filter((l) => l.trim() !== "");
    return shown.length > 0 && shown.every((l) => l.includes("added an entry"));
  }).toBe(true);

  // Turning Follow off stops the stream: the count stays put while entries keep being written.
  await logs.getByLabel("Search logs").fill("");
  await logs.getByRole("checkbox", { name: "Follow" }).uncheck();
  const stopped = entries(await lines.innerText());
  await page.waitForTimeout(5_000);
  expect(entries(await lines.innerText())).toBe(stopped);
  expect(problems).toEqual([]);
});
