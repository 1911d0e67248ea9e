// One team: its members and their roles, invitations, renaming, deleting and leaving. What a
// role may do is decided by the server; this page offers only what the caller's role allows and
// shows the server's refusals (403 limits, 409 last admin, 429 resend too soon) as they are.
import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { useQueryClient } from "@tanstack/react-query";
import { ApiError } from "../api/client";
import { useMe } from "../api/hooks";
import { afterLosingTeam, canManageOrg, sandboxLabel, until, useOrgs, useTeam, useTeamActions, validateTeamName } from "../api/teams";
import { TEAM_ROLES, type Invitation, type Team, type TeamMember, type TeamRole } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { PageHeader } from "../components/Layout";
import { PlanLimitLink } from "../components/PlanLimitLink";
import { Modal } from "../components/Modal";
import { Badge } from "../components/StatusBadge";
import { Empty, ErrorState, InlineError, Loading } from "../components/States";
import { useSandboxSwitch } from "../components/TeamSwitcher";
import { useToast } from "../components/Toasts";
import { ago, exact } from "../lib/format";

/** What a role may do, in a few words (for the role selects' description). */
const ROLE_HELP: Record<TeamRole, string> = {
  admin: "manages members and invitations, and deploys",
  developer: "deploys and manages the team's apps and secrets",
  viewer: "reads only",
};

// A loose check: the server validates the address; this catches typing slips before a request.
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

type Dialog =
  | { kind: "rename" }
  | { kind: "delete" }
  | { kind: "leave" }
  | { kind: "remove"; member: TeamMember }
  | { kind: "revoke"; invitation: Invitation };

export function TeamDetail() {
  const { team: id = "" } = useParams();
  const team = useTeam(id);
  const me = useMe();
  const orgs = useOrgs();
  const actions = useTeamActions(id);
  const qc = useQueryClient();
  const navigate = useNavigate();
  const toast = useToast();
  const { switchTo, pending: switching } = useSandboxSwitch();
  const [dialog, setDialog] = useState<Dialog | null>(null);

  if (team.isPending) return <Loading />;
  if (team.error) {
    // Outsiders get 404 too: the page does not say whether the team exists.
    if (team.error instanceof ApiError && team.error.status === 404) {
      return (
        <>
          <PageHeader title="Team" />
          <Empty title="This team does not exist, or you are not in it" action={<Link className="btn" to="/teams">All teams</Link>}>
            It may have been deleted, or you were removed from it.
          </Empty>
        </>
      );
    }
    return <ErrorState error={team.error} retry={() => void team.refetch()} />;
  }
  const t = team.data;
  const isAdmin = t.role === "admin";
  const org = orgs.data?.find((o) => o.id === t.orgId);
  const canDelete = org ? canManageOrg(org) : false;
  const myId = me.data?.user.id;
  const amMember = t.members.some((m) => m.userId === myId);
  const isCurrent = me.data?.team?.id === t.id;
  const close = () => setDialog(null);

  /** Leaving or deleting: away from this page first, then the caches (see afterLosingTeam). */
  const lost = async (message: string) => {
    close();
    navigate("/teams");
    toast(message);
    await afterLosingTeam(qc, t.id, isCurrent);
  };

  return (
    <>
      <nav aria-label="Breadcrumb" className="breadcrumb">
        <Link to="/teams">Teams</Link> <span aria-hidden="true">/</span> <span aria-current="page">{t.name}</span>
      </nav>
      <PageHeader
        title={t.name}
        subtitle={
          <span className="subtitle-row">
            <span>Organization {t.orgName}</span>
            <Badge tone="muted">you are {t.role}</Badge>
            <span>
              Sandbox <code>{t.namespace}</code>
            </span>
          </span>
        }
      >
        {isCurrent ? (
          <Badge tone="ok">current sandbox</Badge>
        ) : (
          <button type="button" className="btn btn-primary" disabled={switching} onClick={() => void switchTo(t)}>
            Switch to this team
          </button>
        )}
        {isAdmin && (
          <button type="button" className="btn" onClick={() => setDialog({ kind: "rename" })}>
            Rename
          </button>
        )}
        {amMember && (
          <button type="button" className="btn btn-danger" onClick={() => setDialog({ kind: "leave" })}>
            Leave team
          </button>
        )}
        {canDelete && (
          <button type="button" className="btn btn-danger" onClick={() => setDialog({ kind: "delete" })}>
            Delete team
          </button>
        )}
      </PageHeader>

      <Members team={t} myId={myId} isAdmin={isAdmin} onRemove={(m) => setDialog({ kind: "remove", member: m })} />
      {isAdmin && <InviteForm team={t} />}
      {isAdmin && <Invitations team={t} onRevoke={(inv) => setDialog({ kind: "revoke", invitation: inv })} />}

      {dialog?.kind === "rename" && <RenameDialog team={t} onClose={close} />}
      {dialog?.kind === "delete" && (
        <ConfirmDialog
          title={`Delete team ${t.name}?`}
          confirmLabel="Delete team"
          typeToConfirm={t.name}
          busy={actions.remove.isPending}
          error={actions.remove.error}
          onCancel={() => {
            actions.remove.reset();
            close();
          }}
          onConfirm={() =>
            actions.remove.mutateAsync().then(
              () => lost(`Team ${t.name} deleted.`),
              () => undefined, // shown in the dialog
            )
          }
        >
          <p>
            The team's sandbox and every app in it are deleted, with their secrets. Its {t.members.length} member
            {t.members.length === 1 ? "" : "s"} lose access and pending invitations stop working.
          </p>
        </ConfirmDialog>
      )}
      {dialog?.kind === "leave" && myId && (
        <ConfirmDialog
          title={`Leave team ${t.name}?`}
          confirmLabel="Leave team"
          busy={actions.leave.isPending}
          error={actions.leave.error}
          onCancel={() => {
            actions.leave.reset();
            close();
          }}
          onConfirm={() =>
            actions.leave.mutateAsync(myId).then(
              () => lost(`You left team ${t.name}.`),
              () => undefined, // 409 (the last admin) is shown in the dialog
            )
          }
        >
          <p>
            You lose access to the team's apps and secrets{isCurrent ? ", and your personal sandbox is shown again" : ""}. An admin
            can invite you back.
          </p>
        </ConfirmDialog>
      )}
      {dialog?.kind === "remove" && (
        <ConfirmDialog
          title={`Remove ${dialog.member.email} from ${t.name}?`}
          confirmLabel="Remove member"
          busy={actions.removeMember.isPending}
          error={actions.removeMember.error}
          onCancel={() => {
            actions.removeMember.reset();
            close();
          }}
          onConfirm={() =>
            actions.removeMember.mutate(dialog.member.userId, {
              onSuccess: () => {
                toast(`${dialog.member.email} removed from ${t.name}.`);
                close();
              },
            })
          }
        >
          <p>They lose access to the team's apps and secrets at once.</p>
        </ConfirmDialog>
      )}
      {dialog?.kind === "revoke" && (
        <ConfirmDialog
          title={`Revoke the invitation to ${dialog.invitation.email}?`}
          confirmLabel="Revoke invitation"
          busy={actions.revoke.isPending}
          error={actions.revoke.error}
          onCancel={() => {
            actions.revoke.reset();
            close();
          }}
          onConfirm={() =>
            actions.revoke.mutate(dialog.invitation.id, {
              onSuccess: () => {
                toast(`The invitation to ${dialog.invitation.email} is revoked.`);
                close();
              },
            })
          }
        >
          <p>The link in the email stops working; you can invite the address again later.</p>
        </ConfirmDialog>
      )}
    </>
  );
}

function Members({ team, myId, isAdmin, onRemove }: { team: Team; myId?: string; isAdmin: boolean; onRemove: (m: TeamMember) => void }) {
  const { setRole } = useTeamActions(team.id);
  const toast = useToast();
  const members = [...team.members].sort((a, b) => a.email.localeCompare(b.email));
  return (
    <section className="section" aria-labelledby="members-heading">
      <h2 id="members-heading">Members</h2>
      {/* 409: the team would be left without an admin; the server's sentence says so. */}
      <InlineError error={setRole.error} />
      {members.length === 0 ? (
        <Empty title="No members">Invite someone below.</Empty>
      ) : (
        <div className="table-wrap">
          <table className="responsive">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                {isAdmin && (
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {members.map((m) => (
                <tr key={m.userId} data-testid={`member-${m.email}`}>
                  <th scope="row" data-label="Name">
                    {m.name || <span className="muted">—</span>}
                    {m.userId === myId && <span className="muted"> (you)</span>}
                  </th>
                  <td data-label="Email">{m.email}</td>
                  <td data-label="Role">
                    {isAdmin ? (
                      <select
                        aria-label={`Role of ${m.email}`}
                        value={m.role}
                        disabled={setRole.isPending}
                        title={ROLE_HELP[m.role]}
                        onChange={(e) => {
                          const role = e.target.value as TeamRole;
                          setRole.mutate({ userId: m.userId, role }, { onSuccess: () => toast(`${m.email} is now ${role}.`) });
                        }}
                      >
                        {TEAM_ROLES.map((r) => (
                          <option key={r} value={r}>
                            {r}
                          </option>
                        ))}
                      </select>
                    ) : (
                      m.role
                    )}
                  </td>
                  {isAdmin && (
                    <td className="actions">
                      {m.userId !== myId && (
                        <button type="button" className="btn btn-small btn-danger" aria-label={`Remove ${m.email}`} onClick={() => onRemove(m)}>
                          Remove
                        </button>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function InviteForm({ team }: { team: Team }) {
  const { invite } = useTeamActions(team.id);
  const toast = useToast();
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<TeamRole>("developer");
  const [error, setError] = useState<string | null>(null);
  return (
    <form
      className="card form section"
      noValidate
      aria-labelledby="invite-heading"
      onSubmit={(e) => {
        e.preventDefault();
        const v = email.trim();
        const err = EMAIL.test(v) ? null : "an email address such as ada@example.com";
        setError(err);
        if (err) return;
        invite.mutate(
          { email: v, role },
          {
            onSuccess: (inv) => {
              toast(`Invitation sent to ${inv.email}.`);
              setEmail("");
            },
          },
        );
      }}
    >
      <h2 id="invite-heading">Invite someone</h2>
      <p className="muted small">
        They get an email with a link valid for 7 days, and join once they sign in with that address.
      </p>
      <div className="grid grid-2">
        <div className={`field${error ? " field-invalid" : ""}`}>
          <label htmlFor="invite-email">Email</label>
          <input
            id="invite-email"
            type="email"
            value={email}
            autoComplete="off"
            spellCheck={false}
            placeholder="ada@example.com"
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? "invite-email-error" : undefined}
            onChange={(e) => setEmail(e.target.value)}
          />
          {error && (
            <p className="field-error" id="invite-email-error">
              {error}
            </p>
          )}
        </div>
        <div className="field">
          <label htmlFor="invite-role">Role</label>
          <select id="invite-role" value={role} aria-describedby="invite-role-help" onChange={(e) => setRole(e.target.value as TeamRole)}>
            {TEAM_ROLES.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
          <p className="hint" id="invite-role-help">
            A {role} {ROLE_HELP[role]}.
          </p>
        </div>
      </div>
      {/* 403 (the plan's members per team) and 409 (already a member or invited) as the server says them. */}
      <InlineError error={invite.error} />
      <PlanLimitLink error={invite.error} />
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={invite.isPending}>
          {invite.isPending ? "Sending…" : "Send invitation"}
        </button>
      </div>
    </form>
  );
}

function Invitations({ team, onRevoke }: { team: Team; onRevoke: (inv: Invitation) => void }) {
  const { resend } = useTeamActions(team.id);
  const toast = useToast();
  return (
    <section className="section" aria-labelledby="invitations-heading">
      <h2 id="invitations-heading">Pending invitations</h2>
      {/* 429: resent too recently; the server's sentence says when it can be sent again. */}
      <InlineError error={resend.error} />
      {team.invitations.length === 0 ? (
        <Empty title="No pending invitations" />
      ) : (
        <div className="table-wrap">
          <table className="responsive">
            <thead>
              <tr>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                <th scope="col">Invited by</th>
                <th scope="col">Last sent</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {team.invitations.map((inv) => (
                <tr key={inv.id} data-testid={`invitation-${inv.email}`}>
                  <th scope="row" data-label="Email">
                    {inv.email}
                  </th>
                  <td data-label="Role">{inv.role}</td>
                  <td data-label="Invited by">{inv.invitedBy}</td>
                  <td data-label="Last sent">
                    <time dateTime={inv.lastSentAt} title={exact(inv.lastSentAt)}>
                      {ago(inv.lastSentAt)}
                    </time>
                  </td>
                  <td data-label="Expires">
                    <time dateTime={inv.expiresAt} title={exact(inv.expiresAt)}>
                      {until(inv.expiresAt)}
                    </time>
                  </td>
                  <td className="actions">
                    <button
                      type="button"
                      className="btn btn-small"
                      disabled={resend.isPending}
                      aria-label={`Resend the invitation to ${inv.email}`}
                      onClick={() => resend.mutate(inv.id, { onSuccess: () => toast(`Invitation to ${inv.email} sent again.`) })}
                    >
                      Resend
                    </button>
                    <button
                      type="button"
                      className="btn btn-small btn-danger"
                      aria-label={`Revoke the invitation to ${inv.email}`}
                      onClick={() => onRevoke(inv)}
                    >
                      Revoke
                    </button>
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

function RenameDialog({ team, onClose }: { team: Team; onClose: () => void }) {
  const { rename } = useTeamActions(team.id);
  const toast = useToast();
  const [name, setName] = useState(team.name);
  const [error, setError] = useState<string | null>(null);
  return (
    <Modal
      title={`Rename ${team.name}`}
      onClose={onClose}
      footer={
        <>
          <button type="button" className="btn" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" form="rename-team-form" className="btn btn-primary" disabled={rename.isPending}>
            {rename.isPending ? "Saving…" : "Save name"}
          </button>
        </>
      }
    >
      <form
        id="rename-team-form"
        className="form"
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          const err = validateTeamName(name);
          setError(err);
          if (err) return;
          rename.mutate(name.trim(), {
            onSuccess: (t) => {
              toast(`Team renamed to ${sandboxLabel(t)}.`);
              onClose();
            },
          });
        }}
      >
        <div className={`field${error ? " field-invalid" : ""}`}>
          <label htmlFor="team-name">Team name</label>
          <input
            id="team-name"
            data-autofocus
            value={name}
            maxLength={64}
            autoComplete="off"
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? "team-name-error" : undefined}
            onChange={(e) => setName(e.target.value)}
          />
          {error && (
            <p className="field-error" id="team-name-error">
              {error}
            </p>
          )}
        </div>
        <InlineError error={rename.error} />
      </form>
    </Modal>
  );
}
