// Billing (issue 17): GET /api/billing (the current sandbox's plan, subscription, usage this period
// and invoices), Stripe Checkout to upgrade and the Customer Portal to manage a subscription; both
// answer a Stripe URL that the browser is sent to. Also the rules the page shows: plan order,
// money in minor units, limits in words.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError } from "./client";
import { keys } from "./hooks";

export type PlanName = "free" | "business" | "enterprise";

/** What a plan allows. null: unlimited (the contract says so for deployments; the others are
 *  read the same way, so that an unlimited plan of a later server does not show "null"). */
export interface PlanLimits {
  deployments: number | null;
  pods: number | null;
  /** Kubernetes quantities, e.g. "2", "500m", "4Gi". */
  requestsCpu: string | null;
  requestsMemory: string | null;
  limitsCpu: string | null;
  limitsMemory: string | null;
}

export interface Subscription {
  /** Stripe's subscription status: active, trialing, past_due, canceled, unpaid, incomplete, … */
  status: string;
  plan: string;
  /** Unix seconds. */
  currentPeriodEnd: number | null;
  cancelAtPeriodEnd: boolean;
  /** past_due: the paid plan is kept until then (Unix seconds), then the sandbox moves to free. */
  graceUntil: number | null;
}

export interface PlanOffer {
  plan: string;
  limits: PlanLimits;
  /** A Stripe price is configured for it: Checkout can sell it. */
  available: boolean;
}

export interface ServiceAppTime {
  deployment: string;
  service: string;
  cpuCoreHours: number;
  memoryGibHours: number;
}

export interface BillingUsage {
  /** Unix seconds; periodEnd null: the period is open (no subscription). */
  periodStart: number;
  periodEnd: number | null;
  cpuCoreHours: number;
  memoryGibHours: number;
  services: ServiceAppTime[];
}

export interface Invoice {
  id: string;
  number: string | null;
  status: string | null;
  /** Minor units of `currency` (cents for usd). */
  amountDue: number;
  amountPaid: number;
  /** ISO 4217, lower case as Stripe writes it. */
  currency: string;
  /** Unix seconds. */
  created: number;
  hostedInvoiceUrl: string | null;
}

/** GET /api/billing. */
export interface Billing {
  /** BILLING_ENABLED: false means plans are set by the platform's admins, not bought here. */
  enabled: boolean;
  /** Whose plan it is: the current team's organization, or the user's own sandbox. */
  scope: { kind: "user" | "org"; id: string; name: string };
  plan: string;
  /** May change the plan (org owners and admins; the user for their own sandbox). */
  canManage: boolean;
  subscription: Subscription | null;
  limits: PlanLimits;
  /** suspended: apps scaled to zero because the plan allows fewer deployments than there are. */
  used: { deployments: number; suspended: number };
  plans: PlanOffer[];
  usage: BillingUsage;
  invoices: Invoice[];
}

export const billingKeys = {
  // Not in teams.ts's SANDBOX_INDEPENDENT list: a team switch changes whose plan this is.
  billing: ["billing"] as const,
};

// ---- The shape of the answer -----------------------------------------------------------------

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** Thrown for an answer that does not have the contract's shape: names the field. */
function shapeError(field: string, want: string): Error {
  return new Error(`the server's billing answer is not understood: ${field} should be ${want}`);
}

function field<T>(o: Record<string, unknown>, name: string, where: string, ok: (v: unknown) => v is T, want: string): T {
  const v = o[name];
  if (!ok(v)) throw shapeError(`${where}${name}`, want);
  return v;
}

const isString = (v: unknown): v is string => typeof v === "string";
const isBool = (v: unknown): v is boolean => typeof v === "boolean";
const isNullableNumber = (v: unknown): v is number | null => v === null || isNumber(v);
const isNullableString = (v: unknown): v is string | null => v === null || isString(v);
/** Absent optional fields read as null. */
const orNull = (o: Record<string, unknown>, name: string) => (o[name] === undefined ? { ...o, [name]: null } : o);

function parseLimits(raw: unknown, where: string): PlanLimits {
  if (!isObject(raw)) throw shapeError(where.replace(/\.$/, ""), "an object");
  const o = ["deployments", "pods", "requestsCpu", "requestsMemory", "limitsCpu", "limitsMemory"].reduce(orNull, raw);
  return {
    deployments: field(o, "deployments", where, isNullableNumber, "a number or null"),
    pods: field(o, "pods", where, isNullableNumber, "a number or null"),
    requestsCpu: field(o, "requestsCpu", where, isNullableString, "a quantity or null"),
    requestsMemory: field(o, "requestsMemory", where, isNullableString, "a quantity or null"),
    limitsCpu: field(o, "limitsCpu", where, isNullableString, "a quantity or null"),
    limitsMemory: field(o, "limitsMemory", where, isNullableString, "a quantity or null"),
  };
}

function parseSubscription(raw: unknown): Subscription | null {
  if (raw === null || raw === undefined) return null;
  if (!isObject(raw)) throw shapeError("subscription", "an object or null");
  const o = ["currentPeriodEnd", "graceUntil"].reduce(orNull, raw);
  const w = "subscription.";
  return {
    status: field(o, "status", w, isString, "a string"),
    plan: field(o, "plan", w, isString, "a string"),
    currentPeriodEnd: field(o, "currentPeriodEnd", w, isNullableNumber, "Unix seconds or null"),
    cancelAtPeriodEnd: o.cancelAtPeriodEnd === undefined ? false : field(o, "cancelAtPeriodEnd", w, isBool, "true or false"),
    graceUntil: field(o, "graceUntil", w, isNullableNumber, "Unix seconds or null"),
  };
}

function list(raw: Record<string, unknown>, name: string): unknown[] {
  const v = raw[name] ?? [];
  if (!Array.isArray(v)) throw shapeError(name, "a list");
  return v;
}

/**
 * Checks GET /api/billing against the contract. A renamed field (say, snake_case) would otherwise
 * show as "undefined" or "NaN" on the page; this names it instead.
 */
export function parseBilling(raw: unknown): Billing {
  if (!isObject(raw)) throw shapeError("the body", "a JSON object");
  const scope = raw.scope;
  if (!isObject(scope)) throw shapeError("scope", "an object");
  const kind = scope.kind;
  if (kind !== "user" && kind !== "org") throw shapeError("scope.kind", '"user" or "org"');
  const usage = raw.usage;
  if (!isObject(usage)) throw shapeError("usage", "an object");
  const used = raw.used;
  if (!isObject(used)) throw shapeError("used", "an object");
  return {
    enabled: field(raw, "enabled", "", isBool, "true or false"),
    scope: { kind, id: field(scope, "id", "scope.", isString, "a string"), name: field(scope, "name", "scope.", isString, "a string") },
    plan: field(raw, "plan", "", isString, "a string"),
    canManage: field(raw, "canManage", "", isBool, "true or false"),
    subscription: parseSubscription(raw.subscription),
    limits: parseLimits(raw.limits, "limits."),
    used: {
      deployments: field(used, "deployments", "used.", isNumber, "a number"),
      suspended: used.suspended === undefined ? 0 : field(used, "suspended", "used.", isNumber, "a number"),
    },
    plans: list(raw, "plans").map((p, i): PlanOffer => {
      const w = `plans[${i}].`;
      if (!isObject(p)) throw shapeError(`plans[${i}]`, "an object");
      return {
        plan: field(p, "plan", w, isString, "a string"),
        limits: parseLimits(p.limits, `${w}limits.`),
        available: field(p, "available", w, isBool, "true or false"),
      };
    }),
    usage: {
      periodStart: field(usage, "periodStart", "usage.", isNumber, "Unix seconds"),
      periodEnd: field(orNull(usage, "periodEnd"), "periodEnd", "usage.", isNullableNumber, "Unix seconds or null"),
      cpuCoreHours: field(usage, "cpuCoreHours", "usage.", isNumber, "a number"),
      memoryGibHours: field(usage, "memoryGibHours", "usage.", isNumber, "a number"),
      services: list(usage, "services").map((s, i): ServiceAppTime => {
        const w = `usage.services[${i}].`;
        if (!isObject(s)) throw shapeError(`usage.services[${i}]`, "an object");
        return {
          deployment: field(s, "deployment", w, isString, "a string"),
          service: field(s, "service", w, isString, "a string"),
          cpuCoreHours: field(s, "cpuCoreHours", w, isNumber, "a number"),
          memoryGibHours: field(s, "memoryGibHours", w, isNumber, "a number"),
        };
      }),
    },
    invoices: list(raw, "invoices").map((inv, i): Invoice => {
      const w = `invoices[${i}].`;
      if (!isObject(inv)) throw shapeError(`invoices[${i}]`, "an object");
      const o = ["number", "status", "hostedInvoiceUrl"].reduce(orNull, inv);
      return {
        id: field(o, "id", w, isString, "a string"),
        number: field(o, "number", w, isNullableString, "a string or null"),
        status: field(o, "status", w, isNullableString, "a string or null"),
        amountDue: field(o, "amountDue", w, isNumber, "a number (minor units)"),
        amountPaid: field(o, "amountPaid", w, isNumber, "a number (minor units)"),
        currency: field(o, "currency", w, isString, "a currency code"),
        created: field(o, "created", w, isNumber, "Unix seconds"),
        hostedInvoiceUrl: field(o, "hostedInvoiceUrl", w, isNullableString, "a URL or null"),
      };
    }),
  };
}

// ---- Calls and hooks -------------------------------------------------------------------------

export const getBilling = async (signal?: AbortSignal) => parseBilling(await api<unknown>("/api/billing", { signal }));

/**
 * The URL of a Checkout or Portal answer. Only http(s) is followed: the browser is sent there,
 * and a `javascript:` URL from a confused server must not run in the app's origin.
 */
export function stripeUrl(raw: unknown): string {
  const url = isObject(raw) ? raw.url : undefined;
  if (typeof url !== "string" || url === "") throw new Error("the server's answer has no url to continue to");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`the server's answer has no usable url: ${url}`);
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new Error(`the server's answer has no usable url: ${url}`);
  return url;
}

export const startCheckout = async (plan: string) =>
  stripeUrl(await api<unknown>("/api/billing/checkout", { method: "POST", body: { plan } }));
export const openPortal = async () => stripeUrl(await api<unknown>("/api/billing/portal", { method: "POST" }));

/**
 * Leaving the app for Stripe. An object rather than a bare call so that tests can replace it
 * (jsdom's `window.location.assign` cannot be spied on and does not navigate).
 */
export const browser = {
  assign(url: string) {
    window.location.assign(url);
  },
};

// The plan being bought, kept across the trip to Stripe (which returns to /billing?checkout=success
// without it) so that the page knows which plan it waits for. Per tab, like the trip itself.
const CHECKOUT_PLAN = "k8s-scheduler.checkoutPlan";

function rememberCheckout(plan: string) {
  try {
    sessionStorage.setItem(CHECKOUT_PLAN, plan);
  } catch {
    // Storage refused (private mode, quota): the page then waits for any paid plan.
  }
}

/** The plan the last Checkout of this tab was for, if known. */
export function checkoutPlan(): string | null {
  try {
    return sessionStorage.getItem(CHECKOUT_PLAN);
  } catch {
    return null;
  }
}

/**
 * Whether `b` shows the outcome of a paid Checkout for `plan` (null: any paid plan): the plan is
 * in place and the subscription is one that keeps it.
 */
export function checkoutConfirmed(b: Billing, plan: string | null): boolean {
  const paid = plan ? b.plan === plan : b.plan !== "free";
  return paid && b.subscription !== null && ["active", "trialing"].includes(b.subscription.status);
}

/** How often, and how many times, the page reads /api/billing again after a paid Checkout. */
export const CONFIRM_POLL_MS = 2_000;
export const CONFIRM_POLLS = 15;

/**
 * GET /api/billing. `awaiting` (back from a paid Checkout; the plan bought, or null when not
 * known): read it again every [`CONFIRM_POLL_MS`] until [`checkoutConfirmed`], at most
 * [`CONFIRM_POLLS`] times, since the plan changes when Stripe's webhook reaches the server,
 * usually seconds after the redirect.
 */
export const useBilling = (awaiting?: { plan: string | null }) =>
  useQuery({
    queryKey: billingKeys.billing,
    queryFn: ({ signal }) => getBilling(signal),
    refetchInterval: (q) => {
      if (!awaiting) return false;
      const d = q.state.data;
      if (d && checkoutConfirmed(d, awaiting.plan)) return false;
      return q.state.dataUpdateCount + q.state.errorUpdateCount < CONFIRM_POLLS ? CONFIRM_POLL_MS : false;
    },
  });

/**
 * Checkout ("upgrade to …") and the Portal ("manage subscription"): each asks the server for a
 * Stripe URL and sends the browser there. A mutation's `isSuccess` then means the browser is
 * leaving: the page keeps its buttons disabled while Stripe's page loads.
 */
export function useBillingActions() {
  const qc = useQueryClient();
  const go = (url: string) => browser.assign(url);
  return {
    checkout: useMutation({
      mutationFn: startCheckout,
      onSuccess: (url, plan) => {
        rememberCheckout(plan);
        go(url);
      },
    }),
    portal: useMutation({ mutationFn: openPortal, onSuccess: go }),
    /** After the plan changed: the sandbox's plan and limits (/api/me) and suspended apps. */
    planChanged: () => {
      void qc.invalidateQueries({ queryKey: keys.me });
      void qc.invalidateQueries({ queryKey: keys.deployments });
    },
  };
}

// ---- Rules the page shows --------------------------------------------------------------------

/** Plans from small to big, for servers whose list leaves one out. */
const PLAN_ORDER: readonly string[] = ["free", "business", "enterprise"];

/** "Free", "Business", "Enterprise", or a later plan's id with a capital. */
export const planLabel = (plan: string) => (plan ? plan[0].toUpperCase() + plan.slice(1) : plan);

/**
 * The plans above `current` that can be bought: in the server's order (smallest first), or the
 * known order when the current plan is not in the list.
 */
export function upgradesFrom(current: string, plans: PlanOffer[]): PlanOffer[] {
  const at = plans.findIndex((p) => p.plan === current);
  if (at >= 0) return plans.slice(at + 1).filter((p) => p.available);
  const rank = PLAN_ORDER.indexOf(current);
  if (rank < 0) return [];
  return plans.filter((p) => p.available && PLAN_ORDER.indexOf(p.plan) > rank);
}

/**
 * Digits of the minor unit as Stripe counts it (https://docs.stripe.com/currencies#minor-units),
 * which is not always ISO 4217's: Stripe's zero-decimal list, and three decimals for these five.
 */
const ZERO_DECIMAL = new Set(["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]);
const THREE_DECIMAL = new Set(["bhd", "jod", "kwd", "omr", "tnd"]);

export function minorDigits(currency: string): number {
  const c = currency.toLowerCase();
  if (ZERO_DECIMAL.has(c)) return 0;
  if (THREE_DECIMAL.has(c)) return 3;
  return 2;
}

/** An amount in minor units as money: 4900 usd → "$49.00" (in the browser's locale). */
export function formatMoney(minor: number, currency: string, locale?: string): string {
  const amount = minor / 10 ** minorDigits(currency);
  try {
    return new Intl.NumberFormat(locale, { style: "currency", currency: currency.toUpperCase() }).format(amount);
  } catch {
    // A code Intl does not know: the number and the code as Stripe sent it.
    return `${new Intl.NumberFormat(locale, { maximumFractionDigits: minorDigits(currency) }).format(amount)} ${currency.toUpperCase()}`;
  }
}

/** Core-hours and GiB-hours: at most two decimals. */
export const formatHours = (v: number, locale?: string) => new Intl.NumberFormat(locale, { maximumFractionDigits: 2 }).format(v);

/** A date from Unix seconds, e.g. "Jan 1, 2026" in en-US. */
export const formatDate = (unix: number, locale?: string) =>
  new Intl.DateTimeFormat(locale, { year: "numeric", month: "short", day: "numeric" }).format(new Date(unix * 1000));

/** A CPU quantity in words: "2" → "2 cores", "500m" → "500 millicores", null → "unlimited". */
export function cpuLabel(q: string | null): string {
  if (q === null) return "unlimited";
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(q.trim());
  if (!m) return q;
  if (m[2] === "m") return `${m[1]} millicores`;
  return `${m[1]} ${m[1] === "1" ? "core" : "cores"}`;
}

/** A memory quantity with binary units written out: "4Gi" → "4 GiB", "512Mi" → "512 MiB". */
export function memoryLabel(q: string | null): string {
  if (q === null) return "unlimited";
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi)$/.exec(q.trim());
  return m ? `${m[1]} ${m[2]}B` : q;
}

/** Subscription statuses in words. */
export function statusLabel(status: string): string {
  switch (status) {
    case "active":
      return "Active";
    case "trialing":
      return "Trial";
    case "past_due":
      return "Payment overdue";
    case "canceled":
      return "Canceled";
    case "unpaid":
      return "Unpaid";
    case "incomplete":
      return "Awaiting first payment";
    case "incomplete_expired":
      return "First payment failed";
    case "paused":
      return "Paused";
    default:
      return status;
  }
}

/** A refusal the server gives because of the plan's limits (its 403 says "the … plan allows …"). */
export const isPlanLimit = (e: unknown) => e instanceof ApiError && e.status === 403 && e.message.includes("plan allows");
