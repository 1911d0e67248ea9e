// The Billing page (issue 17) against a mocked /api/billing, and the links to it from plan-limit
// refusals elsewhere (the deploy form, the dashboard).
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { Route, Routes } from "react-router";
import { describe, expect, it, vi } from "vitest";
import {
  browser,
  checkoutPlan,
  cpuLabel,
  formatDate,
  formatMoney,
  memoryLabel,
  parseBilling,
  stripeUrl,
  upgradesFrom,
  type Billing as BillingInfo,
  type PlanLimits,
} from "../api/billing";
import { deployment, guestbook, me } from "../test/fixtures";
import { mockFetch, renderWithProviders } from "../test/render";
import { Billing } from "./Billing";
import { Dashboard } from "./Dashboard";
import { Deploy } from "./Deploy";

const FREE: PlanLimits = { deployments: 1, pods: 4, requestsCpu: "2", requestsMemory: "4Gi", limitsCpu: "4", limitsMemory: "8Gi" };
const BUSINESS: PlanLimits = { deployments: 10, pods: 40, requestsCpu: "8", requestsMemory: "16Gi", limitsCpu: "16", limitsMemory: "32Gi" };
const ENTERPRISE: PlanLimits = { deployments: null, pods: 200, requestsCpu: "64", requestsMemory: "256Gi", limitsCpu: "128", limitsMemory: "512Gi" };

/** Dec 1, 2025 and Jan 1, 2026, 00:00 UTC. */
const DEC_1 = 1764547200;
const JAN_1 = 1767225600;

/** GET /api/billing of a free user in their own sandbox, with billing on. */
function billing(over: Partial<BillingInfo> = {}): BillingInfo {
  return {
    enabled: true,
    scope: { kind: "user", id: "u-ada", name: "ada@example.com" },
    plan: "free",
    canManage: true,
    subscription: null,
    limits: FREE,
    used: { deployments: 1, suspended: 0 },
    plans: [
      { plan: "free", limits: FREE, available: true },
      { plan: "business", limits: BUSINESS, available: true },
      { plan: "enterprise", limits: ENTERPRISE, available: false },
    ],
    usage: {
      periodStart: DEC_1,
      periodEnd: null,
      cpuCoreHours: 12.5,
      memoryGibHours: 20.25,
      services: [
        { deployment: "blog", service: "web", cpuCoreHours: 1.5, memoryGibHours: 0.75 },
        { deployment: "blog", service: "redis", cpuCoreHours: 11, memoryGibHours: 19.5 },
      ],
    },
    invoices: [],
    ...over,
  };
}

/** A business subscriber with two invoices. */
function subscriber(over: Partial<BillingInfo> = {}): BillingInfo {
  return billing({
    plan: "business",
    limits: BUSINESS,
    used: { deployments: 3, suspended: 0 },
    subscription: { status: "active", plan: "business", currentPeriodEnd: JAN_1, cancelAtPeriodEnd: false, graceUntil: null },
    usage: { ...billing().usage, periodEnd: JAN_1 },
    invoices: [
      { id: "in_2", number: "ABC-0002", status: "open", amountDue: 4950, amountPaid: 0, currency: "usd", created: JAN_1, hostedInvoiceUrl: "https://invoice.stripe.com/i/2" },
      { id: "in_1", number: "ABC-0001", status: "paid", amountDue: 4900, amountPaid: 4900, currency: "usd", created: DEC_1, hostedInvoiceUrl: null },
    ],
    ...over,
  });
}

function page(answer: BillingInfo | (() => BillingInfo), { route = "/billing", extra = {} }: { route?: string; extra?: Parameters<typeof mockFetch>[0] } = {}) {
  const read = typeof answer === "function" ? answer : () => answer;
  const mock = mockFetch({
    "GET /api/billing": () => ({ body: read() }),
    "GET /api/me": () => ({ body: me() }),
    "GET /api/deployments": () => ({ body: [] }),
    ...extra,
  });
  const assign = vi.spyOn(browser, "assign").mockImplementation(() => {});
  const r = renderWithProviders(
    <Routes>
      <Route path="/billing" element={<Billing />} />
    </Routes>,
    { route },
  );
  return { ...mock, ...r, assign, user: userEvent.setup() };
}

const region = (name: string) => screen.findByRole("region", { name });
const usd = (v: number) => new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" }).format(v);

describe("the Billing page", () => {
  it("shows the plan, its subscription, usage against the limits and the invoices", async () => {
    page(subscriber());
    const plan = await region("Plan");
    expect(within(plan).getByTestId("current-plan")).toHaveTextContent("Business");
    expect(plan).toHaveTextContent("Business · Active");
    expect(plan).toHaveTextContent(`Renews${formatDate(JAN_1)}`);
    expect(within(plan).getByRole("button", { name: "Manage subscription" })).toBeEnabled();
    expect(within(plan).queryByTestId("past-due")).toBeNull();

    const usage = await region("Usage");
    expect(within(usage).getByTestId("deployments-used")).toHaveTextContent("3 of 10");
    expect(within(usage).getByRole("meter", { name: "Deployments used" })).toHaveAttribute("aria-valuenow", "3");
    expect(within(usage).getByTestId("cpu-core-hours")).toHaveTextContent("12.5 core-hours");
    expect(within(usage).getByTestId("memory-gib-hours")).toHaveTextContent("20.25 GiB-hours");
    expect(usage).toHaveTextContent(`since ${formatDate(DEC_1)}; the period ends ${formatDate(JAN_1)}`);
    const services = within(usage).getByRole("table", { name: "App time by service" });
    const redis = within(services).getAllByRole("row")[2];
    expect(within(redis).getByRole("rowheader")).toHaveTextContent("blog");
    expect(redis).toHaveTextContent("redis");
    expect(redis).toHaveTextContent("11");
    expect(redis).toHaveTextContent("19.5");
    expect(within(usage).queryByTestId("suspended")).toBeNull();

    const invoices = within(await region("Invoices")).getByRole("table", { name: "Invoices" });
    const open = screen.getByTestId("invoice-in_2");
    expect(open).toHaveTextContent(formatDate(JAN_1));
    expect(open).toHaveTextContent("ABC-0002");
    expect(open).toHaveTextContent(usd(49.5));
    expect(open).toHaveTextContent("open");
    const view = within(open).getByRole("link");
    expect(view).toHaveAccessibleName("View invoice ABC-0002 (opens in a new tab)");
    expect(view).toHaveAttribute("href", "https://invoice.stripe.com/i/2");
    expect(view).toHaveAttribute("target", "_blank");
    expect(view).toHaveAttribute("rel", "noopener noreferrer");
    // Without a hosted page, no link.
    const paid = screen.getByTestId("invoice-in_1");
    expect(paid).toHaveTextContent(usd(49));
    expect(paid).toHaveTextContent("paid");
    expect(within(paid).queryByRole("link")).toBeNull();
    expect(within(invoices).getAllByRole("row")).toHaveLength(3);

    // The plans: the current one marked, each with its limits; nothing to buy above business.
    const plans = await region("Plans");
    const business = within(plans).getByRole("listitem", { name: "Business plan" });
    expect(business).toHaveTextContent("Current plan");
    expect(business).toHaveTextContent("Deployments10");
    expect(business).toHaveTextContent("Memory requests16 GiB");
    expect(within(plans).getByRole("listitem", { name: "Enterprise plan" })).toHaveTextContent("Deploymentsunlimited");
    expect(within(plans).queryByRole("button")).toBeNull();
    expect(within(plans).getByText("Not sold here: ask your platform admins.")).toBeInTheDocument();
  });

  it("offers a free user the plans above theirs that Stripe sells, and no portal without a subscription", async () => {
    page(billing());
    const plans = await region("Plans");
    expect(within(plans).getAllByRole("button").map((b) => b.textContent)).toEqual(["Upgrade to Business"]);
    expect(within(plans).getByRole("listitem", { name: "Free plan" })).toHaveTextContent("Current plan");
    expect(within(await region("Plan")).getByTestId("current-plan")).toHaveTextContent("Free");
    expect(screen.queryByRole("button", { name: "Manage subscription" })).toBeNull();
    expect(screen.getByText("No invoices yet.")).toBeInTheDocument();
    expect(screen.getByText("The plan of your personal sandbox.")).toBeInTheDocument();
  });

  it("shows no button when billing is off: plans are set by admins", async () => {
    page(subscriber({ enabled: false }));
    const plan = await region("Plan");
    expect(within(plan).getByRole("note")).toHaveTextContent("Plans are set by your platform admins; ask one to change it.");
    expect(screen.queryAllByRole("button")).toHaveLength(0);
    // Still shown: the plan and what it allows.
    expect(within(await region("Plans")).getAllByRole("listitem")).toHaveLength(3);
  });

  it("shows a team member who cannot manage the organization's plan who can, and no button", async () => {
    page(billing({ scope: { kind: "org", id: "o-acme", name: "Acme" }, canManage: false }));
    const plan = await region("Plan");
    expect(within(plan).getByRole("note")).toHaveTextContent("Only the owners and admins of Acme can change its plan.");
    expect(screen.getByText("The plan of the organization Acme.")).toBeInTheDocument();
    expect(screen.queryAllByRole("button")).toHaveLength(0);
  });

  it("upgrades through Checkout: POSTs the plan with the CSRF header and sends the browser to the returned URL", async () => {
    sessionStorage.clear();
    const url = "https://checkout.stripe.com/c/pay/cs_test_123";
    const { calls, assign, user } = page(billing(), { extra: { "POST /api/billing/checkout": () => ({ body: { url } }) } });
    const plans = await region("Plans");
    await user.click(within(plans).getByRole("button", { name: "Upgrade to Business" }));
    await waitFor(() => expect(assign).toHaveBeenCalledWith(url));
    expect(assign).toHaveBeenCalledTimes(1);
    const post = calls.filter((c) => c.method === "POST");
    expect(post).toHaveLength(1);
    expect(post[0].path).toBe("/api/billing/checkout");
    expect(post[0].body).toEqual({ plan: "business" });
    expect(post[0].headers["Content-Type"]).toBe("application/json");
    // No second click while the browser leaves; the plan is kept for the way back.
    expect(within(plans).getByRole("button", { name: "Opening Checkout…" })).toBeDisabled();
    expect(checkoutPlan()).toBe("business");
  });

  it("shows the server's refusal of a Checkout and stays on the page", async () => {
    const refusal = "the organization already has a subscription; change it under Manage subscription";
    const { assign, user } = page(billing(), {
      extra: { "POST /api/billing/checkout": () => ({ status: 409, body: { error: refusal } }) },
    });
    const plans = await region("Plans");
    await user.click(within(plans).getByRole("button", { name: "Upgrade to Business" }));
    expect(await within(plans).findByRole("alert")).toHaveTextContent(refusal);
    expect(assign).not.toHaveBeenCalled();
    // It can be tried again.
    expect(within(plans).getByRole("button", { name: "Upgrade to Business" })).toBeEnabled();
  });

  it("does not follow a URL that is not http(s)", async () => {
    const { assign, user } = page(billing(), {
      extra: { "POST /api/billing/checkout": () => ({ body: { url: "javascript:alert(1)" } }) },
    });
    const plans = await region("Plans");
    await user.click(within(plans).getByRole("button", { name: "Upgrade to Business" }));
    expect(await within(plans).findByRole("alert")).toHaveTextContent("no usable url: javascript:alert(1)");
    expect(assign).not.toHaveBeenCalled();
  });

  it("opens the Customer Portal with an empty POST", async () => {
    const url = "https://billing.stripe.com/p/session/test_1";
    const { calls, assign, user } = page(subscriber(), { extra: { "POST /api/billing/portal": () => ({ body: { url } }) } });
    await user.click(await screen.findByRole("button", { name: "Manage subscription" }));
    await waitFor(() => expect(assign).toHaveBeenCalledWith(url));
    const post = calls.find((c) => c.method === "POST");
    expect(post?.path).toBe("/api/billing/portal");
    expect(post?.body).toBeUndefined();
  });

  it("shows the portal's refusal in the Plan section", async () => {
    const { assign, user } = page(subscriber(), {
      extra: { "POST /api/billing/portal": () => ({ status: 400, body: { error: "no Stripe customer for this organization" } }) },
    });
    const plan = await region("Plan");
    await user.click(within(plan).getByRole("button", { name: "Manage subscription" }));
    expect(await within(plan).findByRole("alert")).toHaveTextContent("no Stripe customer for this organization");
    expect(assign).not.toHaveBeenCalled();
  });

  it("warns of a failed payment with the grace period's end, and of a cancellation at the period's end", async () => {
    const grace = JAN_1 + 7 * 86400;
    page(
      subscriber({
        subscription: { status: "past_due", plan: "business", currentPeriodEnd: JAN_1, cancelAtPeriodEnd: true, graceUntil: grace },
      }),
    );
    const plan = await region("Plan");
    expect(plan).toHaveTextContent("Business · Payment overdue");
    expect(within(plan).getByTestId("past-due")).toHaveTextContent(
      `The last payment failed. The Business plan is kept until ${formatDate(grace)}; after that the sandbox moves to the Free plan`,
    );
    expect(within(plan).getByTestId("past-due")).toHaveTextContent("Update the payment method under Manage subscription.");
    expect(within(plan).getByTestId("cancel-at-period-end")).toHaveTextContent(
      `cancelled at the end of the period (${formatDate(JAN_1)}): the plan then becomes Free`,
    );
    expect(plan).toHaveTextContent(`Ends${formatDate(JAN_1)}`);
  });

  it("explains suspended apps after a downgrade", async () => {
    page(billing({ used: { deployments: 3, suspended: 2 } }));
    const usage = await region("Usage");
    expect(within(usage).getByTestId("suspended")).toHaveTextContent("2 apps are suspended");
    expect(within(usage).getByTestId("suspended")).toHaveTextContent("Nothing was deleted");
    expect(within(usage).getByTestId("deployments-used")).toHaveTextContent("3 of 1");
    expect(usage).toHaveTextContent("The plan's limit is reached");
  });

  it(
    "back from a paid Checkout: thanks, then reads the plan again until Stripe's confirmation arrived",
    async () => {
      sessionStorage.setItem("k8s-scheduler.checkoutPlan", "business");
      let reads = 0;
      const { calls, client } = page(
        () => {
          reads++;
          return reads < 2 ? billing() : subscriber();
        },
        { route: "/billing?checkout=success" },
      );
      const invalidate = vi.spyOn(client, "invalidateQueries");
      expect(await screen.findByText("Thanks — your plan changes as soon as Stripe confirms the payment (usually seconds).")).toBeInTheDocument();
      expect(await screen.findByText("Thanks — you are now on the Business plan.", {}, { timeout: 5000 })).toBeInTheDocument();
      expect(within(await region("Plan")).getByTestId("current-plan")).toHaveTextContent("Business");
      // The sandbox's limits (/api/me) and suspended apps are read again.
      expect(invalidate).toHaveBeenCalledWith({ queryKey: ["me"] });
      expect(invalidate).toHaveBeenCalledWith({ queryKey: ["deployments"] });
      // Confirmed: no more reads.
      const n = calls.filter((c) => c.path === "/api/billing").length;
      expect(n).toBe(2);
      await new Promise((r) => setTimeout(r, 2500));
      expect(calls.filter((c) => c.path === "/api/billing")).toHaveLength(n);
    },
    15_000,
  );

  it("says a cancelled Checkout changed nothing, without reading again", async () => {
    const { calls } = page(billing(), { route: "/billing?checkout=cancelled" });
    expect(await screen.findByText("Checkout was cancelled: nothing was charged and the plan is unchanged.")).toBeInTheDocument();
    await region("Plan");
    expect(calls.filter((c) => c.path === "/api/billing")).toHaveLength(1);
  });

  it("names the field of an answer that does not follow the contract", async () => {
    const bad = { ...billing(), can_manage: true } as Record<string, unknown>;
    delete bad.canManage;
    mockFetch({ "GET /api/billing": () => ({ body: bad }) });
    renderWithProviders(<Billing />, { route: "/billing" });
    expect(await screen.findByRole("alert")).toHaveTextContent("canManage should be true or false");
  });
});

describe("billing rules", () => {
  it("reads the contract and names what is wrong", () => {
    expect(parseBilling(subscriber())).toEqual(subscriber());
    expect(() => parseBilling({ ...billing(), scope: { kind: "team", id: "x", name: "x" } })).toThrow('scope.kind should be "user" or "org"');
    expect(() => parseBilling({ ...billing(), invoices: [{ ...subscriber().invoices[0], amount_due: 1, amountDue: undefined }] })).toThrow(
      "invoices[0].amountDue should be a number (minor units)",
    );
    expect(() => parseBilling({ ...billing(), limits: { ...FREE, pods: "4" } })).toThrow("limits.pods should be a number or null");
  });

  it("formats money from Stripe's minor units in the invoice's currency", () => {
    expect(formatMoney(4900, "usd", "en-US")).toBe("$49.00");
    expect(formatMoney(4900, "eur", "de-DE")).toBe("49,00\u00a0€");
    // Zero- and three-decimal currencies as Stripe counts them.
    expect(formatMoney(4900, "jpy", "en-US")).toBe("¥4,900");
    expect(formatMoney(12345, "kwd", "en-US")).toBe("KWD\u00a012.345");
    // A code Intl does not know still shows the amount.
    expect(formatMoney(4900, "zz1", "en-US")).toBe("49 ZZ1");
  });

  it("writes limits in words", () => {
    expect(cpuLabel("2")).toBe("2 cores");
    expect(cpuLabel("1")).toBe("1 core");
    expect(cpuLabel("500m")).toBe("500 millicores");
    expect(cpuLabel(null)).toBe("unlimited");
    expect(memoryLabel("4Gi")).toBe("4 GiB");
    expect(memoryLabel("512Mi")).toBe("512 MiB");
    expect(memoryLabel("1G")).toBe("1G");
  });

  it("offers only the plans above the current one that can be bought", () => {
    const plans = billing().plans;
    expect(upgradesFrom("free", plans).map((p) => p.plan)).toEqual(["business"]);
    expect(upgradesFrom("business", plans)).toEqual([]);
    expect(upgradesFrom("enterprise", plans)).toEqual([]);
    // A list without the current plan: the known order decides.
    expect(upgradesFrom("free", plans.slice(1)).map((p) => p.plan)).toEqual(["business"]);
    expect(upgradesFrom("custom", plans)).toEqual([]);
  });

  it("follows only http(s) URLs", () => {
    expect(stripeUrl({ url: "https://checkout.stripe.com/c/pay/x" })).toBe("https://checkout.stripe.com/c/pay/x");
    expect(() => stripeUrl({})).toThrow("no url");
    expect(() => stripeUrl({ url: "data:text/html,hi" })).toThrow("no usable url");
    expect(() => stripeUrl({ url: "not a url" })).toThrow("no usable url");
  });
});

describe("links to the Billing page from plan-limit refusals", () => {
  const LIMIT = "the free plan allows 1 deployment; delete one or upgrade your plan";

  async function deploy(refusal: { status: number; error: string }) {
    const mock = mockFetch({
      "GET /api/me": () => ({ body: me() }),
      "GET /api/deployments": () => ({ body: [] }),
      "GET /api/templates/guestbook": () => ({ body: guestbook }),
      "POST /api/deployments": () => ({ status: refusal.status, body: { error: refusal.error } }),
    });
    renderWithProviders(
      <Routes>
        <Route path="/templates/:name/deploy" element={<Deploy />} />
      </Routes>,
      { route: "/templates/guestbook/deploy" },
    );
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText(/TITLE/), "My book");
    await user.type(screen.getByLabelText(/REDIS_PASSWORD/), "hunter2");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    expect(await screen.findByRole("alert")).toHaveTextContent(refusal.error);
    return mock;
  }

  it("the deploy form shows the server's plan-limit 403 with a link to /billing", async () => {
    await deploy({ status: 403, error: LIMIT });
    expect(screen.getByRole("link", { name: "See plans and billing" })).toHaveAttribute("href", "/billing");
  });

  it("other refusals get no such link", async () => {
    await deploy({ status: 403, error: "your role in team Web (viewer) cannot deploy" });
    expect(screen.queryByRole("link", { name: /plans and billing/i })).toBeNull();
  });

  it("a 409 that mentions a plan is not a plan limit", async () => {
    await deploy({ status: 409, error: "the free plan allows names up to 40 characters; guestbook-test exists" });
    expect(screen.queryByRole("link", { name: /plans and billing/i })).toBeNull();
  });

  it("the deploy page links there when the limit is reached", async () => {
    mockFetch({
      "GET /api/me": () => ({ body: me() }),
      "GET /api/deployments": () => ({ body: [deployment({ name: "blog" })] }),
      "GET /api/templates/guestbook": () => ({ body: guestbook }),
    });
    renderWithProviders(
      <Routes>
        <Route path="/" element={<Dashboard />} />
        <Route path="/templates/:name/deploy" element={<Deploy />} />
      </Routes>,
      { route: "/templates/guestbook/deploy" },
    );
    const note = await screen.findByRole("note");
    await waitFor(() => expect(note).toHaveTextContent("Your free plan allows 1 deployment and you have 1"));
    expect(within(note).getByRole("link", { name: "see plans and billing" })).toHaveAttribute("href", "/billing");
  });

  it("the dashboard's plan card links there when the limit is reached", async () => {
    mockFetch({
      "GET /api/me": () => ({ body: me() }),
      "GET /api/deployments": () => ({ body: [deployment({ name: "blog" })] }),
    });
    renderWithProviders(<Dashboard />);
    const quota = await screen.findByTestId("quota");
    await waitFor(() => expect(quota).toHaveTextContent("1 of 1 deployment used"));
    expect(within(quota).getByRole("link", { name: "see plans and billing" })).toHaveAttribute("href", "/billing");
  });
});
