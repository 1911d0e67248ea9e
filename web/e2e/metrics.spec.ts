// The Usage region against a real app on the real node, where metrics-server runs: the server (in
// DEV_MODE) and the deployment METRICS_APP are started by the real-node test that runs this; its
// service METRICS_SERVICE (default "web") must be running. Waits until the first CPU and memory
// samples are drawn: metrics-server needs a scrape or two (up to a minute or so) after a pod starts.
import { expect, test, type Locator } from "@playwright/test";
import path from "node:path";

const shots = process.env.SCREENSHOT_DIR ?? path.join(import.meta.dirname, "..", "test-results", "screenshots");
const app = process.env.METRICS_APP ?? "";
const service = process.env.METRICS_SERVICE || "web";

/** An attribute as a number; NaN while the element is not there (never waits for it). */
async function numberAttr(l: Locator, name: string): Promise<number> {
  if ((await l.count()) === 0) return Number.NaN;
  return Number(await l.first().getAttribute(name));
}

test("the deployment page charts an app's CPU and memory use", async ({ page }) => {
  expect(app, "METRICS_APP names the deployment to open (the real-node test that runs this spec sets it)").not.toBe("");
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

  await page.goto(`/deployments/${app}`);
  await expect(page.getByRole("heading", { name: app, level: 1 })).toBeVisible();
  const usage = page.getByRole("region", { name: "Usage" });
  const card = usage.getByTestId(`usage-${service}`);
  await expect(card, `the Usage region lists the service ${service}`).toBeVisible({ timeout: 60_000 });
  await expect(card.getByTestId("usage-restarts")).toHaveAttribute("data-value", /^\d+$/);

  // The page refreshes every interval (60 s by default); reloading sees a new sample sooner. The
  // poll's value says what is still missing, so a timeout reports it.
  let first = true;
  await expect
    .poll(
      async () => {
        if (!first) await page.reload();
        first = false;
        await expect(card).toBeVisible({ timeout: 30_000 });
        const cpu = await numberAttr(card.getByTestId("usage-cpu"), "data-samples");
        const memory = await numberAttr(card.getByTestId("usage-memory"), "data-samples");
        const bytes = await numberAttr(card.getByTestId("usage-memory-now"), "data-value");
        if (cpu >= 1 && memory >= 1 && bytes > 0) return "charted";
        const unavailable = usage.getByTestId("usage-unavailable");
        const why = (await unavailable.count()) > 0 ? `; not available: ${await unavailable.innerText()}` : "";
        return `CPU samples ${cpu}, memory samples ${memory}, memory now ${bytes} bytes${why}`;
      },
      { timeout: 120_000, intervals: [2_000, 5_000, 10_000] },
    )
    .toBe("charted");

  await expect(card.getByRole("img", { name: `CPU of ${service} over the last hour` })).toBeVisible();
  await expect(card.getByRole("img", { name: `Memory of ${service} over the last hour` })).toBeVisible();
  await expect(card.getByTestId("usage-memory-now")).not.toHaveText(/^0 /);
  // From the top, as ui.spec.ts does: scrolled, the sticky header would land mid-page.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(shots, "17-deployment-usage.png"), fullPage: true, animations: "disabled" });
  expect(problems).toEqual([]);
});
