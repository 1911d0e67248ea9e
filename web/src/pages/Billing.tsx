// The Billing page (issue 17): the current sandbox's plan (the team's organization, or the user's
// own), its subscription, usage this period against the plan's limits, the plans with their
// limits and upgrade buttons (to Stripe Checkout), the Customer Portal, and invoices. With
// BILLING_ENABLED=false plans are set by admins: the page shows them without any button.
import { useEffect, useId, useMemo, useRef } from "react";
import { useSearchParams } from "react-router";
import {
  checkoutConfirmed,
  checkoutPlan,
  cpuLabel,
  formatDate,
  formatHours,
  formatMoney,
  memoryLabel,
  planLabel,
  statusLabel,
  upgradesFrom,
  useBilling,
  useBillingActions,
  type Billing as BillingInfo,
  type Invoice,
  type PlanLimits,
} from "../api/billing";
import { PageHeader } from "../components/Layout";
import { Badge } from "../components/StatusBadge";
import { ErrorState, InlineError, Loading } from "../components/States";
import { DeploymentsMeter, limitReached } from "../components/DeploymentsMeter";

type Actions = ReturnType<typeof useBillingActions>;

export function Billing() {
  const [params] = useSearchParams();
  const outcome = params.get("checkout");
  // Read once: the plan this tab went to Checkout for.
  const awaiting = useMemo(() => (outcome === "success" ? { plan: checkoutPlan() } : undefined), [outcome]);
  const billing = useBilling(awaiting);
  const actions = useBillingActions();

  // A plan that changed while the page is open (the webhook after Checkout, a change in the
  // Portal seen on refocus) changes the sandbox's limits and may resume suspended apps.
  const plan = billing.data?.plan;
  const seen = useRef<string | undefined>(undefined);
  const { planChanged } = actions;
  useEffect(() => {
    if (plan === undefined) return;
    if (seen.current !== undefined && seen.current !== plan) planChanged();
    seen.current = plan;
  }, [plan, planChanged]);

  const data = billing.data;
  return (
    <>
      <PageHeader
        title="Billing"
        subtitle={
          data ? (data.scope.kind === "org" ? `The plan of the organization ${data.scope.name}.` : "The plan of your personal sandbox.") : undefined
        }
      />
      {outcome === "success" &&
        (data && checkoutConfirmed(data, awaiting?.plan ?? null) ? (
          <div className="callout callout-ok" role="status">
            Thanks — you are now on the {planLabel(data.plan)} plan.
          </div>
        ) : (
          <div className="callout callout-ok" role="status">
            Thanks — your plan changes as soon as Stripe confirms the payment (usually seconds).
          </div>
        ))}
      {outcome === "cancelled" && (
        <div className="callout" role="status">
          Checkout was cancelled: nothing was charged and the plan is unchanged.
        </div>
      )}
      {billing.isPending ? (
        <Loading label="Loading billing…" />
      ) : billing.error ? (
        <ErrorState error={billing.error} retry={() => void billing.refetch()} title="Billing" />
      ) : (
        <>
          <PlanSection b={billing.data} actions={actions} />
          <UsageSection b={billing.data} />
          <PlansSection b={billing.data} actions={actions} />
          <InvoicesSection invoices={billing.data.invoices} />
        </>
      )}
    </>
  );
}

/** Whether the browser is on its way to Stripe (or asking where to go): no second click. */
const busy = (a: Actions) => a.checkout.isPending || a.checkout.isSuccess || a.portal.isPending || a.portal.isSuccess;

/** Who may change the plan, for those who may not. */
function whoCanManage(b: BillingInfo): string {
  return b.scope.kind === "org"
    ? `Only the owners and admins of ${b.scope.name} can change its plan.`
    : "Your account cannot change this plan.";
}

/** A titled section: a `region` named by its heading, so that assistive technology (and Playwright) finds it. */
function Section({ title, children }: { title: string; children: React.ReactNode }) {
  const id = `billing-${useId()}`;
  return (
    <section className="section" aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}

function PlanSection({ b, actions }: { b: BillingInfo; actions: Actions }) {
  const sub = b.subscription;
  const manage = b.enabled && b.canManage && sub !== null;
  return (
    <Section title="Plan">
      <div className="card">
        <div className="card-row">
          <p className="stat-value" data-testid="current-plan">
            {planLabel(b.plan)}
          </p>
          {sub && <SubscriptionBadge status={sub.status} />}
        </div>
        {sub ? (
          <dl className="props">
            <dt>Subscription</dt>
            <dd>
              {planLabel(sub.plan)} · {statusLabel(sub.status)}
            </dd>
            {sub.currentPeriodEnd !== null && (
              <>
                <dt>{sub.cancelAtPeriodEnd || sub.status === "canceled" ? "Ends" : "Renews"}</dt>
                <dd>{formatDate(sub.currentPeriodEnd)}</dd>
              </>
            )}
          </dl>
        ) : (
          <p className="muted small">
            {b.plan === "free" || !b.enabled ? "No subscription." : "No subscription: this plan was set by your platform admins."}
          </p>
        )}
        {sub?.status === "past_due" && (
          <div className="callout callout-warn" role="note" data-testid="past-due">
            The last payment failed.{" "}
            {sub.graceUntil !== null ? (
              <>
                The {planLabel(sub.plan)} plan is kept until {formatDate(sub.graceUntil)}; after that the sandbox moves to the Free
                plan and apps over its limit are suspended.
              </>
            ) : (
              <>Without a payment the sandbox moves to the Free plan and apps over its limit are suspended.</>
            )}{" "}
            {manage ? "Update the payment method under Manage subscription." : null}
          </div>
        )}
        {sub?.cancelAtPeriodEnd && sub.status !== "canceled" && (
          <div className="callout" role="note" data-testid="cancel-at-period-end">
            The subscription is cancelled at the end of the period
            {sub.currentPeriodEnd !== null ? <> ({formatDate(sub.currentPeriodEnd)})</> : null}: the plan then becomes Free.
            {manage ? " Manage subscription to keep it." : null}
          </div>
        )}
        {!b.enabled ? (
          <p className="callout" role="note">
            Plans are set by your platform admins; ask one to change it.
          </p>
        ) : (
          !b.canManage && (
            <p className="callout" role="note">
              {whoCanManage(b)}
            </p>
          )
        )}
        {manage && (
          <div className="form-actions">
            <button type="button" className="btn" disabled={busy(actions)} onClick={() => actions.portal.mutate()}>
              {actions.portal.isPending || actions.portal.isSuccess ? "Opening Stripe…" : "Manage subscription"}
            </button>
          </div>
        )}
        <InlineError error={actions.portal.error} />
      </div>
    </Section>
  );
}

function SubscriptionBadge({ status }: { status: string }) {
  const tone = status === "active" || status === "trialing" ? "ok" : status === "past_due" || status === "unpaid" ? "warn" : "muted";
  return <Badge tone={tone}>{statusLabel(status)}</Badge>;
}

function UsageSection({ b }: { b: BillingInfo }) {
  const limit = b.limits.deployments;
  const used = b.used.deployments;
  const full = limitReached(used, limit);
  const { usage } = b;
  return (
    <Section title="Usage">
      <div className="grid grid-3">
        <div className="card stat">
          <p className="stat-label">Deployments</p>
          <p className="stat-value" data-testid="deployments-used">
            {limit === null ? `${used} · unlimited` : `${used} of ${limit}`}
          </p>
          <DeploymentsMeter used={used} limit={limit} />
          {full && <p className="small warn-text">The plan's limit is reached: a new deployment is refused.</p>}
        </div>
        <div className="card stat">
          <p className="stat-label">CPU this period</p>
          <p className="stat-value" data-testid="cpu-core-hours">
            {formatHours(usage.cpuCoreHours)} <span className="unit">core-hours</span>
          </p>
        </div>
        <div className="card stat">
          <p className="stat-label">Memory this period</p>
          <p className="stat-value" data-testid="memory-gib-hours">
            {formatHours(usage.memoryGibHours)} <span className="unit">GiB-hours</span>
          </p>
        </div>
      </div>
      <p className="small muted billing-period">
        Requested CPU and memory × the time apps ran, since {formatDate(usage.periodStart)}
        {usage.periodEnd !== null ? <>; the period ends {formatDate(usage.periodEnd)}</> : null}.
      </p>
      {b.used.suspended > 0 && (
        <div className="callout callout-warn" role="note" data-testid="suspended">
          {b.used.suspended === 1
            ? "1 app is suspended: the plan allows fewer deployments than there are, so the newest was scaled to zero. Nothing was deleted; it starts again when the plan allows it."
            : `${b.used.suspended} apps are suspended: the plan allows fewer deployments than there are, so the newest were scaled to zero. Nothing was deleted; they start again when the plan allows them.`}
        </div>
      )}
      {usage.services.length === 0 ? (
        <p className="muted">No app time recorded yet this period.</p>
      ) : (
        <div className="table-wrap">
          <table className="responsive" aria-label="App time by service">
            <thead>
              <tr>
                <th scope="col">Deployment</th>
                <th scope="col">Service</th>
                <th scope="col" className="num">
                  CPU (core-hours)
                </th>
                <th scope="col" className="num">
                  Memory (GiB-hours)
                </th>
              </tr>
            </thead>
            <tbody>
              {usage.services.map((s) => (
                <tr key={`${s.deployment}/${s.service}`}>
                  <th scope="row" data-label="Deployment">
                    {s.deployment}
                  </th>
                  <td data-label="Service">{s.service}</td>
                  <td data-label="CPU (core-hours)" className="num">
                    {formatHours(s.cpuCoreHours)}
                  </td>
                  <td data-label="Memory (GiB-hours)" className="num">
                    {formatHours(s.memoryGibHours)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}

function LimitList({ limits }: { limits: PlanLimits }) {
  const count = (n: number | null) => (n === null ? "unlimited" : String(n));
  return (
    <dl className="props">
      <dt>Deployments</dt>
      <dd>{count(limits.deployments)}</dd>
      <dt>Pods</dt>
      <dd>{count(limits.pods)}</dd>
      <dt>CPU requests</dt>
      <dd>{cpuLabel(limits.requestsCpu)}</dd>
      <dt>Memory requests</dt>
      <dd>{memoryLabel(limits.requestsMemory)}</dd>
      <dt>CPU limits</dt>
      <dd>{cpuLabel(limits.limitsCpu)}</dd>
      <dt>Memory limits</dt>
      <dd>{memoryLabel(limits.limitsMemory)}</dd>
    </dl>
  );
}

function PlansSection({ b, actions }: { b: BillingInfo; actions: Actions }) {
  const offer = b.enabled && b.canManage;
  const upgrades = new Set(upgradesFrom(b.plan, b.plans).map((p) => p.plan));
  const target = actions.checkout.variables;
  return (
    <Section title="Plans">
      {b.plans.length === 0 ? (
        <p className="muted">The server lists no plans.</p>
      ) : (
        <ul className="cards plan-cards">
          {b.plans.map((p) => {
            const current = p.plan === b.plan;
            const label = planLabel(p.plan);
            return (
              <li key={p.plan} className={`card plan-card${current ? " plan-current" : ""}`} aria-label={`${label} plan`}>
                <div className="card-row">
                  <h3>{label}</h3>
                  {current && <Badge tone="ok">Current plan</Badge>}
                </div>
                <LimitList limits={p.limits} />
                {offer && upgrades.has(p.plan) && (
                  <div className="form-actions">
                    <button type="button" className="btn btn-primary" disabled={busy(actions)} onClick={() => actions.checkout.mutate(p.plan)}>
                      {target === p.plan && (actions.checkout.isPending || actions.checkout.isSuccess) ? "Opening Checkout…" : `Upgrade to ${label}`}
                    </button>
                  </div>
                )}
                {offer && !current && !p.available && !upgrades.has(p.plan) && isAbove(b, p.plan) && (
                  <p className="small muted plan-note">Not sold here: ask your platform admins.</p>
                )}
              </li>
            );
          })}
        </ul>
      )}
      <InlineError error={actions.checkout.error} />
    </Section>
  );
}

/** Whether `plan` comes after the current plan in the server's list. */
const isAbove = (b: BillingInfo, plan: string) => {
  const at = b.plans.findIndex((p) => p.plan === b.plan);
  return at >= 0 && b.plans.findIndex((p) => p.plan === plan) > at;
};

function InvoicesSection({ invoices }: { invoices: Invoice[] }) {
  return (
    <Section title="Invoices">
      {invoices.length === 0 ? (
        <p className="muted">No invoices yet.</p>
      ) : (
        <div className="table-wrap">
          <table className="responsive" aria-label="Invoices">
            <thead>
              <tr>
                <th scope="col">Date</th>
                <th scope="col">Number</th>
                <th scope="col" className="num">
                  Amount
                </th>
                <th scope="col">Status</th>
                <th scope="col">
                  <span className="sr-only">Invoice</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {invoices.map((inv) => (
                <tr key={inv.id} data-testid={`invoice-${inv.id}`}>
                  <td data-label="Date">{formatDate(inv.created)}</td>
                  <td data-label="Number">{inv.number ?? "—"}</td>
                  <td data-label="Amount" className="num">
                    {formatMoney(inv.amountDue, inv.currency)}
                  </td>
                  <td data-label="Status">{inv.status ? <InvoiceStatus status={inv.status} /> : "—"}</td>
                  <td className="actions">
                    {inv.hostedInvoiceUrl && (
                      <a
                        href={inv.hostedInvoiceUrl}
                        target="_blank"
                        rel="noopener noreferrer"
                        aria-label={`View invoice ${inv.number ?? `of ${formatDate(inv.created)}`} (opens in a new tab)`}
                      >
                        View
                      </a>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}

function InvoiceStatus({ status }: { status: string }) {
  const tone = status === "paid" ? "ok" : status === "open" ? "warn" : status === "uncollectible" ? "error" : "muted";
  return <Badge tone={tone}>{status}</Badge>;
}
