// API tokens for scripts and CI: a new token is shown once; the list never shows values.
import { useState } from "react";
import { useTokenActions, useTokens } from "../api/hooks";
import { SCOPES, type CreatedToken, type TokenInfo } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { CopyButton } from "../components/CopyButton";
import { PageHeader } from "../components/Layout";
import { Empty, ErrorState, InlineError, Loading } from "../components/States";
import { useToast } from "../components/Toasts";
import { ago, exact } from "../lib/format";

/** Lifetimes offered for a new token, in days ("" = does not expire). */
const EXPIRY_CHOICES = [
  { value: "30", label: "30 days" },
  { value: "90", label: "90 days" },
  { value: "365", label: "1 year" },
  { value: "", label: "Never" },
];

/** The expiry cell of a token: never, expired, or its date. */
function Expiry({ at }: { at: number | null }) {
  if (at === null) return <span className="muted">never</span>;
  const when = new Date(at * 1000).toLocaleDateString();
  if (at * 1000 <= Date.now()) return <strong title={exact(at)}>expired {when}</strong>;
  return <time title={exact(at)}>{when}</time>;
}

export function Tokens() {
  const tokens = useTokens();
  const { create, revoke } = useTokenActions();
  const toast = useToast();
  const [name, setName] = useState("");
  const [expiry, setExpiry] = useState("90");
  const [scopes, setScopes] = useState<string[]>(["deployments:read", "deployments:write", "templates:read"]);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [created, setCreated] = useState<CreatedToken | null>(null);
  const [revoking, setRevoking] = useState<TokenInfo | null>(null);

  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    const errs: Record<string, string> = {};
    const n = name.trim();
    if (!n || n.length > 64) errs.name = "a name of 1 to 64 characters";
    if (scopes.length === 0) errs.scopes = "choose at least one scope";
    setErrors(errs);
    if (Object.keys(errs).length > 0) return;
    create.mutate(
      { name: n, scopes, expiresInDays: expiry === "" ? undefined : Number(expiry) },
      {
        onSuccess: (t) => {
          setCreated(t);
          setName("");
        },
      },
    );
  };

  return (
    <>
      <PageHeader title="API tokens" subtitle={<>For scripts and CI: send <code>Authorization: Bearer &lt;token&gt;</code>.</>} />
      {created && (
        <div className="callout callout-ok" role="status" data-testid="new-token">
          <p>
            <strong>Token {created.name} created.</strong> Copy it now: it is shown only this once.
          </p>
          <div className="token-value">
            <code data-testid="token-value">{created.token}</code>
            <CopyButton text={created.token} />
          </div>
          <button type="button" className="btn btn-small btn-ghost" onClick={() => setCreated(null)}>
            I have copied it
          </button>
        </div>
      )}
      <form className="card form" onSubmit={submit} noValidate aria-labelledby="new-token-heading">
        <h2 id="new-token-heading">New token</h2>
        <div className={`field${errors.name ? " field-invalid" : ""}`}>
          <label htmlFor="token-name">Name</label>
          <input
            id="token-name"
            value={name}
            maxLength={64}
            placeholder="ci-deploy"
            autoComplete="off"
            aria-invalid={errors.name ? true : undefined}
            aria-describedby={errors.name ? "token-name-error" : undefined}
            onChange={(e) => setName(e.target.value)}
          />
          {errors.name && (
            <p className="field-error" id="token-name-error">
              {errors.name}
            </p>
          )}
        </div>
        <div className="field">
          <label htmlFor="token-expiry">Expires after</label>
          <select id="token-expiry" value={expiry} onChange={(e) => setExpiry(e.target.value)}>
            {EXPIRY_CHOICES.map((c) => (
              <option key={c.value} value={c.value}>
                {c.label}
              </option>
            ))}
          </select>
        </div>
        <fieldset className={`field scopes${errors.scopes ? " field-invalid" : ""}`} aria-describedby={errors.scopes ? "token-scopes-error" : undefined}>
          <legend>Scopes</legend>
          {SCOPES.map((s) => (
            <label key={s} className="check">
              <input
                type="checkbox"
                checked={scopes.includes(s)}
                onChange={(e) => setScopes((old) => (e.target.checked ? [...old, s] : old.filter((x) => x !== s)))}
              />
              <code>{s}</code>
            </label>
          ))}
          {errors.scopes && (
            <p className="field-error" id="token-scopes-error">
              {errors.scopes}
            </p>
          )}
        </fieldset>
        <InlineError error={create.error} />
        <div className="form-actions">
          <button type="submit" className="btn btn-primary" disabled={create.isPending}>
            {create.isPending ? "Creating…" : "Create token"}
          </button>
        </div>
      </form>

      <section className="section" aria-labelledby="tokens-heading">
        <h2 id="tokens-heading">Your tokens</h2>
        {tokens.isPending ? (
          <Loading />
        ) : tokens.error ? (
          <ErrorState error={tokens.error} retry={() => void tokens.refetch()} />
        ) : tokens.data.length === 0 ? (
          <Empty title="No tokens">Create one above for a script or a CI pipeline.</Empty>
        ) : (
          <div className="table-wrap">
            <table className="responsive">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Scopes</th>
                  <th scope="col">Created</th>
                  <th scope="col">Last used</th>
                  <th scope="col">Expires</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {tokens.data.map((t) => (
                  <tr key={t.id} data-testid={`token-${t.name}`}>
                    <th scope="row" data-label="Name">
                      {t.name}
                    </th>
                    <td data-label="Scopes">
                      {t.scopes.map((s) => (
                        <code key={s} className="scope">
                          {s}
                        </code>
                      ))}
                    </td>
                    <td data-label="Created">
                      <time title={exact(t.createdAt)}>{ago(t.createdAt)}</time>
                    </td>
                    <td data-label="Last used">
                      {t.lastUsedAt ? <time title={exact(t.lastUsedAt)}>{ago(t.lastUsedAt)}</time> : <span className="muted">never</span>}
                    </td>
                    <td data-label="Expires">
                      <Expiry at={t.expiresAt} />
                    </td>
                    <td className="actions">
                      <button type="button" className="btn btn-small btn-danger" onClick={() => setRevoking(t)} aria-label={`Revoke ${t.name}`}>
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
      {revoking && (
        <ConfirmDialog
          title={`Revoke ${revoking.name}?`}
          confirmLabel="Revoke token"
          busy={revoke.isPending}
          error={revoke.error}
          onCancel={() => {
            revoke.reset();
            setRevoking(null);
          }}
          onConfirm={() =>
            revoke.mutate(revoking.id, {
              onSuccess: () => {
                toast(`${revoking.name} revoked.`);
                if (created?.id === revoking.id) setCreated(null);
                setRevoking(null);
              },
            })
          }
        >
          <p>Scripts using this token stop working at once.</p>
        </ConfirmDialog>
      )}
    </>
  );
}
