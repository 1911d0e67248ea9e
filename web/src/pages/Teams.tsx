// Organizations and their teams: the teams one is in (and switching to one), each organization's
// teams with their limits, creating organizations and teams, and, for owners and admins, the
// organization's audit of membership changes. One team's members and invitations: ./TeamDetail.tsx.
import { useId, useState } from "react";
import { Link } from "react-router";
import { useMe } from "../api/hooks";
import { canManageOrg, sandboxLabel, useOrg, useOrgActions, useOrgAudit, useOrgs, validateTeamName } from "../api/teams";
import type { AuditEntry, Org } from "../api/types";
import { PageHeader } from "../components/Layout";
import { PlanLimitLink } from "../components/PlanLimitLink";
import { Badge } from "../components/StatusBadge";
import { Empty, ErrorState, InlineError, Loading } from "../components/States";
import { useSandboxSwitch } from "../components/TeamSwitcher";
import { useToast } from "../components/Toasts";
import { ago, exact } from "../lib/format";

/** A plan limit in words; null is unlimited. */
const limit = (n: number | null, one: string, many: string) => (n === null ? `unlimited ${many}` : `${n} ${n === 1 ? one : many}`);

export function Teams() {
  return (
    <>
      <PageHeader title="Teams" subtitle="A team shares one sandbox: choose it at the top to see and deploy its apps." />
      <MyTeams />
      <Organizations />
      <NewOrg />
    </>
  );
}

function MyTeams() {
  const me = useMe();
  const { switchTo, pending } = useSandboxSwitch();
  if (!me.data) return null;
  const teams = me.data.teams ?? [];
  const current = me.data.team?.id ?? null;
  return (
    <section className="section" aria-labelledby="my-teams">
      <h2 id="my-teams">Your teams</h2>
      {teams.length === 0 ? (
        <Empty title="You are in no team yet">
          Create an organization below and a team in it, or accept an invitation that a team admin sent you.
        </Empty>
      ) : (
        <div className="table-wrap">
          <table className="responsive">
            <thead>
              <tr>
                <th scope="col">Team</th>
                <th scope="col">Organization</th>
                <th scope="col">Your role</th>
                <th scope="col">
                  <span className="sr-only">Sandbox</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {teams.map((t) => (
                <tr key={t.id} data-testid={`my-team-${t.id}`}>
                  <th scope="row" data-label="Team">
                    <Link to={`/teams/${encodeURIComponent(t.id)}`}>{t.name}</Link>
                  </th>
                  <td data-label="Organization">{t.orgName}</td>
                  <td data-label="Your role">{t.role}</td>
                  <td className="actions">
                    {t.id === current ? (
                      <Badge tone="ok">current sandbox</Badge>
                    ) : (
                      <button
                        type="button"
                        className="btn btn-small"
                        disabled={pending}
                        aria-label={`Switch to ${sandboxLabel(t)}`}
                        onClick={() => void switchTo(t)}
                      >
                        Switch to
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Organizations() {
  const orgs = useOrgs();
  return (
    <section className="section" aria-labelledby="orgs-heading">
      <h2 id="orgs-heading">Organizations</h2>
      {orgs.isPending ? (
        <Loading />
      ) : orgs.error ? (
        <ErrorState error={orgs.error} retry={() => void orgs.refetch()} />
      ) : orgs.data.length === 0 ? (
        <Empty title="No organizations">An organization holds teams and their plan. Create one below.</Empty>
      ) : (
        orgs.data.map((o) => <OrgSection key={o.id} org={o} />)
      )}
    </section>
  );
}

function OrgSection({ org }: { org: Org }) {
  const detail = useOrg(org.id);
  const headingId = `org-${useId()}`;
  const manage = canManageOrg(org);
  return (
    <section className="card org" aria-labelledby={headingId} data-testid={`org-${org.id}`}>
      <div className="card-row">
        <h3 id={headingId}>{org.name}</h3>
        <span className="tags">
          <Badge tone="muted">
            <span className="plan">{org.plan}</span> plan
          </Badge>{" "}
          <Badge tone="muted">you are {org.role}</Badge>
        </span>
      </div>
      {detail.isPending ? (
        <Loading />
      ) : detail.error ? (
        <ErrorState error={detail.error} retry={() => void detail.refetch()} />
      ) : (
        <>
          <p className="small muted">
            The {detail.data.plan} plan allows {limit(detail.data.limits.teams, "team", "teams")} and{" "}
            {limit(detail.data.limits.membersPerTeam, "member", "members")} per team.
          </p>
          {detail.data.teams.length === 0 ? (
            <p className="muted">No teams yet.</p>
          ) : (
            <ul className="team-list" aria-label={`Teams of ${org.name}`}>
              {detail.data.teams.map((t) => (
                <li key={t.id}>
                  <Link to={`/teams/${encodeURIComponent(t.id)}`}>{t.name}</Link>{" "}
                  <span className="muted small">
                    {t.members} member{t.members === 1 ? "" : "s"}
                  </span>
                </li>
              ))}
            </ul>
          )}
        </>
      )}
      {manage && <NewTeam org={org} />}
      {manage && <AuditPanel org={org} />}
    </section>
  );
}

function NewTeam({ org }: { org: Org }) {
  const { createTeam } = useOrgActions();
  const toast = useToast();
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const id = `new-team-${useId()}`;
  return (
    <form
      className="inline-form new-team"
      noValidate
      aria-label={`New team in ${org.name}`}
      onSubmit={(e) => {
        e.preventDefault();
        const err = validateTeamName(name);
        setError(err);
        if (err) return;
        createTeam.mutate(
          { org: org.id, name: name.trim() },
          {
            onSuccess: (t) => {
              toast(`Team ${t.name} created.`);
              setName("");
            },
          },
        );
      }}
    >
      <div className={`field${error ? " field-invalid" : ""}`}>
        <label htmlFor={id}>New team name</label>
        <div className="input-group">
          <input
            id={id}
            value={name}
            maxLength={64}
            autoComplete="off"
            placeholder="Web"
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? `${id}-error` : undefined}
            onChange={(e) => setName(e.target.value)}
          />
          <button type="submit" className="btn" disabled={createTeam.isPending}>
            {createTeam.isPending ? "Creating…" : "Create team"}
          </button>
        </div>
        {error && (
          <p className="field-error" id={`${id}-error`}>
            {error}
          </p>
        )}
      </div>
      {/* The plan's limit (403) is the server's sentence, shown as it is. */}
      <InlineError error={createTeam.error} />
      <PlanLimitLink error={createTeam.error} />
    </form>
  );
}

/** One audit entry in words: "invited ada@example.com to Web". */
export function describeAudit(e: AuditEntry): string {
  const team = e.team ?? "a team";
  const who = e.subject ?? "someone";
  switch (e.action) {
    case "team.created":
      return `created team ${team}`;
    case "team.renamed":
      return `renamed team ${team}`;
    case "team.deleted":
      return `deleted team ${team}`;
    case "member.added":
      return `added ${who} to ${team}`;
    case "member.role_changed":
      return `changed the role of ${who} in ${team}`;
    case "member.removed":
      return `removed ${who} from ${team}`;
    case "member.left":
      return `left ${team}`;
    case "invitation.sent":
      return `invited ${who} to ${team}`;
    case "invitation.resent":
      return `sent the invitation of ${who} to ${team} again`;
    case "invitation.revoked":
      return `revoked the invitation of ${who} to ${team}`;
    case "invitation.accepted":
      return `accepted the invitation to ${team}`;
    default:
      // An action this UI does not know yet: its name says enough.
      return [e.action, e.team, e.subject].filter(Boolean).join(" ");
  }
}

function AuditPanel({ org }: { org: Org }) {
  const [open, setOpen] = useState(false);
  const audit = useOrgAudit(org.id, open);
  const panelId = `audit-${useId()}`;
  return (
    <div className="audit">
      <button type="button" className="btn btn-small btn-ghost" aria-expanded={open} aria-controls={panelId} onClick={() => setOpen((o) => !o)}>
        {open ? "Hide membership changes" : "Show membership changes"}
      </button>
      {open && (
        <div id={panelId}>
          {audit.isPending ? (
            <Loading />
          ) : audit.error ? (
            <ErrorState error={audit.error} retry={() => void audit.refetch()} />
          ) : audit.data.length === 0 ? (
            <p className="muted">No membership changes yet.</p>
          ) : (
            <div className="table-wrap">
              <table className="responsive" aria-label={`Membership changes in ${org.name}`}>
                <thead>
                  <tr>
                    <th scope="col">When</th>
                    <th scope="col">Who</th>
                    <th scope="col">What</th>
                    <th scope="col">Detail</th>
                  </tr>
                </thead>
                <tbody>
                  {audit.data.map((e, i) => (
                    <tr key={`${e.at}-${i}`} data-testid="audit-entry">
                      <td data-label="When">
                        <time dateTime={e.at} title={exact(e.at)}>
                          {ago(e.at)}
                        </time>
                      </td>
                      <td data-label="Who">{e.actor}</td>
                      <td data-label="What">{describeAudit(e)}</td>
                      <td data-label="Detail">{e.detail ?? <span className="muted">—</span>}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </div>
      )}
    </div>
  );
}

function NewOrg() {
  const { createOrg } = useOrgActions();
  const toast = useToast();
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  return (
    <form
      className="card form section"
      noValidate
      aria-labelledby="new-org-heading"
      onSubmit={(e) => {
        e.preventDefault();
        const err = validateTeamName(name);
        setError(err);
        if (err) return;
        createOrg.mutate(name.trim(), {
          onSuccess: (o) => {
            toast(`Organization ${o.name} created.`);
            setName("");
          },
        });
      }}
    >
      <h2 id="new-org-heading">New organization</h2>
      <div className={`field${error ? " field-invalid" : ""}`}>
        <label htmlFor="org-name">Organization name</label>
        <input
          id="org-name"
          value={name}
          maxLength={64}
          autoComplete="organization"
          placeholder="Acme"
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? "org-name-error" : undefined}
          onChange={(e) => setName(e.target.value)}
        />
        {error && (
          <p className="field-error" id="org-name-error">
            {error}
          </p>
        )}
      </div>
      <InlineError error={createOrg.error} />
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={createOrg.isPending}>
          {createOrg.isPending ? "Creating…" : "Create organization"}
        </button>
      </div>
    </form>
  );
}
