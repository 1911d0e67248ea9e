import { Link } from "react-router";
import { useDeployments, useMe } from "../api/hooks";
import { sandboxLabel, useCanWrite } from "../api/teams";
import { deploymentLimit, type Deployment } from "../api/types";
import { PageHeader } from "../components/Layout";
import { StatusBadge } from "../components/StatusBadge";
import { Empty, ErrorState, Loading } from "../components/States";
import { ViewerNote } from "../components/ViewerNote";
import { statusOf, readiness } from "../lib/status";
import { DeploymentsMeter, limitReached } from "../components/DeploymentsMeter";

export function Dashboard() {
  const me = useMe();
  const deployments = useDeployments();
  const canWrite = useCanWrite();
  const name = me.data?.user.name || me.data?.user.email;
  const team = me.data?.team ?? null;
  return (
    <>
      <PageHeader title="Dashboard" subtitle={name ? `Welcome back, ${name}.` : undefined}>
        {canWrite && (
          <Link className="btn btn-primary" to="/templates">
            New deployment
          </Link>
        )}
      </PageHeader>
      <ViewerNote />
      <div className="grid grid-3">
        <QuotaCard count={deployments.data?.length} />
        <SummaryCard deployments={deployments.data} />
        <SandboxCard />
      </div>
      <section className="section" aria-labelledby="yours">
        <div className="section-header">
          <h2 id="yours">{team ? `Deployments of team ${team.name}` : "Your deployments"}</h2>
          <Link to="/deployments">All deployments</Link>
        </div>
        {deployments.isPending ? (
          <Loading />
        ) : deployments.error ? (
          <ErrorState error={deployments.error} retry={() => void deployments.refetch()} />
        ) : deployments.data.length === 0 ? (
          canWrite ? (
            <Empty title="No deployments yet" action={<Link className="btn btn-primary" to="/templates">Browse templates</Link>}>
              Pick a template from the catalog, fill in its parameters and it runs in {team ? "the team's" : "your"} sandbox.
            </Empty>
          ) : (
            <Empty title="No deployments yet">Apps the team's developers deploy show up here.</Empty>
          )
        ) : (
          <ul className="cards" aria-label="Deployments">
            {deployments.data.map((d) => (
              <DeploymentCard key={d.name} d={d} />
            ))}
          </ul>
        )}
      </section>
    </>
  );
}

function DeploymentCard({ d }: { d: Deployment }) {
  const s = statusOf(d);
  return (
    <li className="card card-link">
      <div className="card-row">
        <Link to={`/deployments/${encodeURIComponent(d.name)}`} className="card-title">
          {d.name}
        </Link>
        <StatusBadge deployment={d} />
      </div>
      <p className="muted small">
        {d.template ? `from ${d.template}` : "custom"} · {readiness(d) ?? "no services yet"}
      </p>
      {s.detail && s.tone !== "ok" && <p className="small">{s.detail}</p>}
      {d.url && (
        <a className="small url" href={d.url} target="_blank" rel="noreferrer">
          {d.url}
        </a>
      )}
    </li>
  );
}

function QuotaCard({ count }: { count?: number }) {
  const me = useMe();
  if (me.isPending) return <div className="card"><Loading /></div>;
  if (me.error) return <div className="card"><ErrorState error={me.error} /></div>;
  const { plan } = me.data.sandbox;
  const limit = deploymentLimit(me.data.sandbox);
  const used = count ?? 0;
  const full = limitReached(used, limit);
  return (
    <div className="card stat" data-testid="quota">
      <p className="stat-label">Plan</p>
      <p className="stat-value">
        <span className="plan">{plan}</span>
      </p>
      <p className="small">
        {limit === null ? (
          <>{used} deployments · unlimited</>
        ) : (
          <>
            {used} of {limit} deployment{limit === 1 ? "" : "s"} used
          </>
        )}
      </p>
      <DeploymentsMeter used={used} limit={limit} />
      {full && (
        <p className="small warn-text">
          Your plan's limit is reached: delete a deployment to make another, or <Link to="/billing">see plans and billing</Link>.
        </p>
      )}
    </div>
  );
}

function SummaryCard({ deployments }: { deployments?: Deployment[] }) {
  const counts = { ok: 0, progress: 0, error: 0, other: 0 };
  for (const d of deployments ?? []) {
    const t = statusOf(d).tone;
    if (t === "ok") counts.ok++;
    else if (t === "progress" || t === "warn") counts.progress++;
    else if (t === "error") counts.error++;
    else counts.other++;
  }
  return (
    <div className="card stat">
      <p className="stat-label">Status</p>
      <ul className="summary">
        <li><span className="badge badge-ok"><span className="dot" aria-hidden="true" />{counts.ok}</span> ready</li>
        <li><span className="badge badge-progress"><span className="dot" aria-hidden="true" />{counts.progress}</span> in progress</li>
        <li><span className="badge badge-error"><span className="dot" aria-hidden="true" />{counts.error}</span> failing</li>
      </ul>
    </div>
  );
}

function SandboxCard() {
  const me = useMe();
  if (!me.data) return <div className="card" />;
  const sb = me.data.sandbox;
  return (
    <div className="card stat">
      <p className="stat-label">Sandbox</p>
      <p className="stat-value small-value">
        <code>{sb.namespace}</code>
      </p>
      <p className="small" data-testid="sandbox-owner">
        {me.data.team ? (
          <>
            Team {sandboxLabel(me.data.team)}
            {me.data.role && <> · you are {me.data.role}</>}
          </>
        ) : (
          "Personal"
        )}
      </p>
      <p className="small">
        {sb.ready ? (
          <span className="badge badge-ok"><span className="dot" aria-hidden="true" />Ready</span>
        ) : (
          <span className="badge badge-progress"><span className="dot" aria-hidden="true" />Being prepared</span>
        )}
      </p>
    </div>
  );
}
