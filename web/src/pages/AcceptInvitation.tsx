// /invitations/:token, the link of an invitation email: what accepting joins, and the Accept
// button. Only a sign-in with the invited (verified) address can accept; anyone else is told so
// and offered to sign out and back in as that address.
import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { ApiError, messageOf } from "../api/client";
import { acceptInvitation, logout } from "../api/endpoints";
import { useMe } from "../api/hooks";
import { enterSandbox, sandboxLabel, teamKeys, until, useInvitation } from "../api/teams";
import { PageHeader } from "../components/Layout";
import { Empty, ErrorState, InlineError, Loading } from "../components/States";
import { useToast } from "../components/Toasts";
import { exact } from "../lib/format";

const sameEmail = (a?: string, b?: string) => !!a && !!b && a.trim().toLowerCase() === b.trim().toLowerCase();

export function AcceptInvitation() {
  const { token = "" } = useParams();
  const inv = useInvitation(token);
  const me = useMe();
  const qc = useQueryClient();
  const navigate = useNavigate();
  const toast = useToast();
  const accept = useMutation({ mutationFn: () => acceptInvitation(token) });
  const [signOutError, setSignOutError] = useState<unknown>(null);
  const here = `/invitations/${encodeURIComponent(token)}`;

  // Back to this page after signing in again, as the invited address this time.
  const signOut = async () => {
    setSignOutError(null);
    try {
      await logout();
      qc.clear();
      navigate(`/signin?signedOut=1&redirect=${encodeURIComponent(here)}`, { replace: true });
    } catch (e) {
      setSignOutError(e);
    }
  };

  const join = async () => {
    const accepted = await accept.mutateAsync().catch(() => null); // a refusal is shown below
    if (!accepted) return;
    const { team } = accepted;
    // The server made the team the current sandbox: this page goes first (its token is used up),
    // then every view switches to the team's sandbox.
    navigate(`/teams/${encodeURIComponent(team.id)}`, { replace: true });
    toast(`You joined team ${sandboxLabel(team)} as ${team.role}; it is now your current sandbox.`);
    qc.removeQueries({ queryKey: teamKeys.invitation(token) });
    await enterSandbox(qc);
  };

  if (inv.isPending) return <Loading label="Reading the invitation…" />;
  if (inv.error) {
    if (inv.error instanceof ApiError && inv.error.status === 404) {
      return (
        <>
          <PageHeader title="Invitation" />
          <Empty title="This invitation cannot be used" action={<Link className="btn" to="/">Go to the dashboard</Link>}>
            {/* "this invitation is no longer valid: ask for a new one", as the server says it. */}
            {messageOf(inv.error)}
          </Empty>
        </>
      );
    }
    return <ErrorState error={inv.error} retry={() => void inv.refetch()} title="The invitation cannot be read" />;
  }

  const i = inv.data;
  const signedInAs = me.data?.user.email;
  const otherAccount = signedInAs !== undefined && !sameEmail(signedInAs, i.email);
  const wrongAccount = accept.error instanceof ApiError && accept.error.status === 403;

  return (
    <>
      <PageHeader title={`Join team ${i.teamName}`} subtitle={`Organization ${i.orgName}`} />
      <section className="card invitation" aria-labelledby="invitation-heading">
        <h2 id="invitation-heading">Invitation</h2>
        <dl className="props">
          <dt>Team</dt>
          <dd>{sandboxLabel({ name: i.teamName, orgName: i.orgName })}</dd>
          <dt>Role</dt>
          <dd data-testid="invitation-role">{i.role}</dd>
          <dt>For</dt>
          <dd>{i.email}</dd>
          <dt>Invited by</dt>
          <dd>{i.invitedBy}</dd>
          <dt>Expires</dt>
          <dd>
            <time dateTime={i.expiresAt} title={exact(i.expiresAt)}>
              {until(i.expiresAt)}
            </time>
          </dd>
        </dl>
        {otherAccount && !wrongAccount && (
          <p className="callout callout-warn" role="note">
            You are signed in as {signedInAs}, but this invitation is for {i.email}: only that address can accept it.
          </p>
        )}
        {wrongAccount ? (
          <div className="callout callout-error" role="alert">
            <p>{messageOf(accept.error)}</p>
            <button type="button" className="btn" onClick={() => void signOut()}>
              Sign out to sign in as {i.email}
            </button>
            <InlineError error={signOutError} />
          </div>
        ) : (
          <InlineError error={accept.error} />
        )}
        <div className="form-actions">
          {otherAccount && !wrongAccount && (
            <button type="button" className="btn" onClick={() => void signOut()}>
              Sign out to sign in as {i.email}
            </button>
          )}
          <button type="button" className="btn btn-primary" disabled={accept.isPending} onClick={() => void join()}>
            {accept.isPending ? "Joining…" : `Accept and join ${i.teamName}`}
          </button>
        </div>
        {otherAccount && !wrongAccount && <InlineError error={signOutError} />}
      </section>
    </>
  );
}
