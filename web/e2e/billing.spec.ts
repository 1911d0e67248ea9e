// Billing end to end (issue 17): the Billing page against a real server with BILLING_ENABLED=true
// whose Stripe API is stripe-mock, signed in by DEV_MODE (the dev user, on the free plan). The page
// shows the plan and usage; "Upgrade to Business" sends the browser to the Checkout URL that
// POST /api/billing/checkout answered.
//
// The browser never connects outside loopback: every request to another host is aborted before it
// leaves (stripe-mock answers real-looking https://checkout.stripe.com/... URLs, and the test only
// checks that the browser set off for the right one).
//
// What the harness provides:
// - BASE_URL: the server (see e2e/src/browser.rs), DEV_MODE=true, BILLING_ENABLED=true,
//   STRIPE_API_BASE pointing at stripe-mock, and a Price for the business plan
//   (STRIPE_PRICE_BUSINESS), so that it can be bought.
// - Optional: CHECKOUT_URL_PREFIX, how the Checkout URLs the server returns start (default
//   https://checkout.stripe.com, as stripe-mock answers).
// - Optional: SCREENSHOT_DIR, where the pictures go.
import { expect, test, type BrowserContext, type Page } from "@playwright/test";
import path from "node:path";

const shots = process.env.SCREENSHOT_DIR ?? path.join(import.meta.dirname, "..", "test-results", "screenshots");
const CHECKOUT_PREFIX = process.env.CHECKOUT_URL_PREFIX ?? "https://checkout.stripe.com";

/** Loopback hosts: the server under test and nothing else. */
function isLoopback(url: URL): boolean {
  const h = url.hostname;
  return h === "localhost" || h.endsWith(".localhost") || h === "[::1]" || /^127(\.\d{1,3}){3}$/.test(h);
}

/**
 * Aborts every request of `context` to a host other than loopback, before anything is sent, and
 * records it. Registered before the first page is opened, so no request escapes it.
 */
async function keepOnLoopback(context: BrowserContext): Promise<string[]> {
  const blocked: string[] = [];
  await context.route(
    (url) => !isLoopback(url),
    async (route) => {
      blocked.push(route.request().url());
      await route.abort("blockedbyclient");
    },
  );
  return blocked;
}

async function shot(page: Page, name: string) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true, animations: "disabled", style: ".toasts { display: none; }" });
}

test("the Billing page shows the plan and usage, and Upgrade to Business goes to the Checkout URL the API returned", async ({
  context,
  page,
}) => {
  const blocked = await keepOnLoopback(context);
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 500) problems.push(`${r.status()} from ${r.request().method()} ${r.url()}`);
  });

  // Signed in by DEV_MODE; the Billing page from the navigation.
  await page.goto("/");
  await expect(page.getByTestId("dev-mode"), "the server must run with DEV_MODE=true").toBeVisible();
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Billing", exact: true }).click();
  await expect(page).toHaveURL((u) => u.pathname === "/billing");
  await expect(page.getByRole("heading", { name: "Billing", level: 1 })).toBeVisible();

  // The plan: free, no subscription, and billing on (no "set by your platform admins").
  const plan = page.getByRole("region", { name: "Plan", exact: true });
  await expect(plan.getByTestId("current-plan")).toHaveText("Free");
  await expect(plan).not.toContainText("Plans are set by your platform admins", { timeout: 0 });
  await expect(plan.getByRole("button", { name: "Manage subscription" })).toHaveCount(0);

  // Usage: deployments against the free plan's limit of 1, and app time this period.
  const usage = page.getByRole("region", { name: "Usage", exact: true });
  await expect(usage.getByTestId("deployments-used")).toHaveText(/^\d+ of 1$/);
  await expect(usage.getByRole("meter", { name: "Deployments used" })).toHaveAttribute("aria-valuemax", "1");
  await expect(usage.getByTestId("cpu-core-hours")).toHaveText(/^[\d.,]+ core-hours$/);
  await expect(usage.getByTestId("memory-gib-hours")).toHaveText(/^[\d.,]+ GiB-hours$/);

  // The plans, each with its limits; the current one marked.
  const plans = page.getByRole("region", { name: "Plans", exact: true });
  await expect(plans.getByRole("listitem", { name: "Free plan" })).toContainText("Current plan");
  await expect(plans.getByRole("listitem", { name: "Business plan" })).toContainText("Deployments");
  await expect(page.getByRole("region", { name: "Invoices", exact: true })).toBeVisible();
  await shot(page, "billing-free");

  // Upgrade: the page POSTs the plan, and the browser sets off for the URL in the answer. The
  // answer is read on its way to the page (the page leaves at once, and with it the response).
  let answered: { status: number; body: string } | undefined;
  const isCheckoutApi = (url: URL) => isLoopback(url) && url.pathname === "/api/billing/checkout";
  await page.route(
    isCheckoutApi,
    async (route) => {
      const response = await route.fetch();
      answered = { status: response.status(), body: await response.text() };
      await route.fulfill({ response });
    },
  );
  const checkoutPost = page.waitForRequest((r) => r.method() === "POST" && new URL(r.url()).pathname === "/api/billing/checkout");
  const toStripe = page.waitForRequest((r) => r.url().startsWith(CHECKOUT_PREFIX));
  await plans.getByRole("button", { name: "Upgrade to Business" }).click();

  const post = await checkoutPost;
  expect(post.postDataJSON()).toEqual({ plan: "business" });
  expect(await post.headerValue("content-type")).toContain("application/json");
  // The answer first, so that a wrong one fails here saying what it was (not as a wait for a
  // request that never comes).
  await expect.poll(() => answered, { message: "the answer of POST /api/billing/checkout" }).toBeDefined();
  expect(answered!.status, answered!.body).toBe(200);
  const { url } = JSON.parse(answered!.body) as { url?: unknown };
  expect(typeof url, `the checkout answer's url: ${answered!.body}`).toBe("string");
  expect((url as string).startsWith(CHECKOUT_PREFIX), `${url as string} should start with ${CHECKOUT_PREFIX} (CHECKOUT_URL_PREFIX)`).toBe(true);
  const navigation = await toStripe;
  // Browsers send no fragment; a Checkout URL with one must still be the one followed.
  const noFragment = (u: string) => u.split("#")[0];
  expect(noFragment(navigation.url())).toBe(noFragment(url as string));
  expect(navigation.isNavigationRequest()).toBe(true);
  expect(navigation.frame()).toBe(page.mainFrame());
  // Stopped here: no answer came from outside.
  expect(await navigation.response()).toBeNull();
  expect(navigation.failure()).not.toBeNull();

  // Back from a cancelled Checkout (a fresh tab: the first one is on the browser's error page for
  // the aborted trip): said so, and the plan is still free.
  const back = await context.newPage();
  back.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await back.goto("/billing?checkout=cancelled");
  await expect(back.getByText("Checkout was cancelled: nothing was charged and the plan is unchanged.")).toBeVisible();
  await expect(back.getByRole("region", { name: "Plan", exact: true }).getByTestId("current-plan")).toHaveText("Free");
  await shot(back, "billing-checkout-cancelled");

  // Only the trip to Checkout was stopped: the app itself loads nothing from elsewhere.
  expect(blocked.filter((u) => !u.startsWith(CHECKOUT_PREFIX))).toEqual([]);
  expect(blocked.length).toBeGreaterThanOrEqual(1);
  expect(problems).toEqual([]);
});
