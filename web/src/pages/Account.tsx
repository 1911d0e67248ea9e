import { useState } from "react";
import { Link, useNavigate } from "react-router";
import { useQueryClient } from "@tanstack/react-query";
import { logout } from "../api/endpoints";
import { useConfig, useMe } from "../api/hooks";
import { deploymentLimit } from "../api/types";
import { PageHeader } from "../components/Layout";
import { ErrorState, InlineError, Loading } from "../components/States";

export function Account() {
  const me = useMe();
  const config = useConfig();
  const qc = useQueryClient();
  const navigate = useNavigate();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const signOut = async () => {
    setBusy(true);
    setError(null);
    try {
      await logout();
      qc.clear();
      navigate("/signin?signedOut=1", { replace: true });
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };

  if (me.isPending) return <Loading />;
  if (me.error) return <ErrorState error={me.error} retry={() => void me.refetch()} />;
  const { user, sandbox } = me.data;
  return (
    <>
      <PageHeader title="Account" />
      <div className="grid grid-2">
        <section className="card" aria-labelledby="profile">
          <h2 id="profile">Profile</h2>
          <dl className="props">
            <dt>Name</dt>
            <dd>{user.name || "—"}</dd>
            <dt>Email</dt>
            <dd>{user.email}</dd>
            <dt>User id</dt>
            <dd>
              <code>{user.id}</code>
            </dd>
            <dt>Signed in with</dt>
            <dd>
              {me.data.authenticatedBy === "dev-mode" ? (
                <>
                  <span className="badge badge-warn">dev mode</span> no authentication
                </>
              ) : me.data.authenticatedBy === "session" ? (
                config.data?.devMode ? "a dev-mode session" : "Google"
              ) : (
                me.data.authenticatedBy
              )}
            </dd>
          </dl>
        </section>
        <section className="card" aria-labelledby="sandbox">
          <h2 id="sandbox">Sandbox</h2>
          <dl className="props">
            <dt>Namespace</dt>
            <dd>
              <code>{sandbox.namespace}</code>
            </dd>
            <dt>Plan</dt>
            <dd className="plan">
              {sandbox.plan} · <Link to="/billing">Plans and billing</Link>
            </dd>
            <dt>Deployments</dt>
            <dd>{deploymentLimit(sandbox) === null ? "unlimited" : `at most ${deploymentLimit(sandbox)}`}</dd>
            <dt>Status</dt>
            <dd>{sandbox.ready ? "ready" : "being prepared"}</dd>
          </dl>
        </section>
      </div>
      <section className="section">
        <button type="button" className="btn btn-danger" onClick={signOut} disabled={busy}>
          {busy ? "Signing out…" : "Sign out"}
        </button>
        {config.data?.devMode && (
          <p className="muted small">In dev mode the server signs every request in again as dev@localhost.</p>
        )}
        <InlineError error={error} />
      </section>
    </>
  );
}
