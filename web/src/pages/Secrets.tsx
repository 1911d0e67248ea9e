// Secrets by scope: your account, a template, a deployment, one service of a deployment. Values
// are write-only: they are sent once and never shown again.
import { useMemo, useState } from "react";
import { useDeployments, useSecretActions, useSecrets, useTemplates } from "../api/hooks";
import { useCanWrite } from "../api/teams";
import type { SecretInfo, SecretScope, SecretTarget } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { PageHeader } from "../components/Layout";
import { Modal } from "../components/Modal";
import { Empty, ErrorState, InlineError, Loading } from "../components/States";
import { useToast } from "../components/Toasts";
import { ViewerNote } from "../components/ViewerNote";
import { ago, exact } from "../lib/format";
import { SECRET_KEY } from "../lib/params";

const SCOPES: { scope: SecretScope; title: string; help: string }[] = [
  { scope: "user", title: "Account", help: "Available to every deployment of yours." },
  { scope: "template", title: "Template", help: "Given to every deployment made from one template." },
  { scope: "deployment", title: "Deployment", help: "One deployment's secrets (secret parameters land here)." },
  { scope: "service", title: "Service", help: "Only one service of a deployment." },
];

export const whereOf = (s: SecretTarget) =>
  s.scope === "user"
    ? "account"
    : s.scope === "template"
      ? `template ${s.template}`
      : s.scope === "deployment"
        ? `deployment ${s.deployment}`
        : `${s.deployment} / ${s.service}`;

export function Secrets() {
  const secrets = useSecrets();
  const [editing, setEditing] = useState<SecretInfo | "new" | null>(null);
  const [deleting, setDeleting] = useState<SecretInfo | null>(null);
  const { remove } = useSecretActions();
  const toast = useToast();
  // Viewers see which secrets exist (never values) but cannot store, replace or delete them.
  const canWrite = useCanWrite();

  return (
    <>
      <PageHeader title="Secrets" subtitle="Values are write-only: they are never shown again after saving.">
        {canWrite && (
          <button type="button" className="btn btn-primary" onClick={() => setEditing("new")}>
            New secret
          </button>
        )}
      </PageHeader>
      <ViewerNote to="change secrets" />
      {secrets.isPending ? (
        <Loading />
      ) : secrets.error ? (
        <ErrorState error={secrets.error} retry={() => void secrets.refetch()} />
      ) : secrets.data.length === 0 ? (
        <Empty
          title="No secrets yet"
          action={
            canWrite ? (
              <button type="button" className="btn btn-primary" onClick={() => setEditing("new")}>
                New secret
              </button>
            ) : undefined
          }
        >
          Store passwords and API keys here; deployments read them as environment variables.
        </Empty>
      ) : (
        SCOPES.map(({ scope, title, help }) => {
          const items = secrets.data.filter((s) => s.scope === scope);
          if (items.length === 0) return null;
          return (
            <section key={scope} className="section" aria-labelledby={`scope-${scope}`}>
              <h2 id={`scope-${scope}`}>{title}</h2>
              <p className="muted small">{help}</p>
              <div className="table-wrap">
                <table className="responsive">
                  <thead>
                    <tr>
                      <th scope="col">Key</th>
                      {scope !== "user" && <th scope="col">Of</th>}
                      <th scope="col">Description</th>
                      <th scope="col">Updated</th>
                      {canWrite && (
                        <th scope="col">
                          <span className="sr-only">Actions</span>
                        </th>
                      )}
                    </tr>
                  </thead>
                  <tbody>
                    {items.map((s) => (
                      <tr key={`${whereOf(s)}/${s.name}`} data-testid={`secret-${s.name}`}>
                        <th scope="row" data-label="Key">
                          <code>{s.name}</code>
                        </th>
                        {scope !== "user" && <td data-label="Of">{whereOf(s)}</td>}
                        <td data-label="Description">{s.description || <span className="muted">—</span>}</td>
                        <td data-label="Updated">
                          <time dateTime={s.updatedAt} title={exact(s.updatedAt)}>
                            {ago(s.updatedAt)}
                          </time>
                        </td>
                        {canWrite && (
                          <td className="actions">
                            <button type="button" className="btn btn-small" onClick={() => setEditing(s)} aria-label={`Replace the value of ${s.name} (${whereOf(s)})`}>
                              Replace value
                            </button>
                            <button type="button" className="btn btn-small btn-danger" onClick={() => setDeleting(s)} aria-label={`Delete ${s.name} (${whereOf(s)})`}>
                              Delete
                            </button>
                          </td>
                        )}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </section>
          );
        })
      )}
      {editing && canWrite && <SecretDialog existing={editing === "new" ? null : editing} onClose={() => setEditing(null)} />}
      {deleting && canWrite && (
        <ConfirmDialog
          title={`Delete ${deleting.name}?`}
          confirmLabel="Delete secret"
          busy={remove.isPending}
          error={remove.error}
          onCancel={() => {
            remove.reset();
            setDeleting(null);
          }}
          onConfirm={() =>
            remove.mutate(deleting, {
              onSuccess: () => {
                toast(`${deleting.name} deleted.`);
                setDeleting(null);
              },
            })
          }
        >
          <p>
            <code>{deleting.name}</code> of {whereOf(deleting)} is deleted. Apps that read it fail to start until it is stored
            again.
          </p>
        </ConfirmDialog>
      )}
    </>
  );
}

function SecretDialog({ existing, onClose }: { existing: SecretInfo | null; onClose: () => void }) {
  const { put } = useSecretActions();
  const toast = useToast();
  const deployments = useDeployments();
  const templates = useTemplates();
  const [scope, setScope] = useState<SecretScope>(existing?.scope ?? "user");
  const [template, setTemplate] = useState(existing?.template ?? "");
  const [deployment, setDeployment] = useState(existing?.deployment ?? "");
  const [service, setService] = useState(existing?.service ?? "");
  const [key, setKey] = useState(existing?.name ?? "");
  const [value, setValue] = useState("");
  const [description, setDescription] = useState(existing?.description ?? "");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const services = useMemo(
    () => deployments.data?.find((d) => d.name === deployment)?.services.map((s) => s.name) ?? [],
    [deployments.data, deployment],
  );

  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    const errs: Record<string, string> = {};
    if (!SECRET_KEY.test(key)) errs.key = "letters, digits and underscores, not starting with a digit";
    if (value === "") errs.value = "a value is required";
    if (scope === "template" && !template) errs.template = "choose a template";
    if ((scope === "deployment" || scope === "service") && !deployment) errs.deployment = "choose a deployment";
    if (scope === "service" && !service) errs.service = "name the service";
    setErrors(errs);
    if (Object.keys(errs).length > 0) return;
    const target: SecretTarget = { scope, name: key, template, deployment, service };
    put.mutate(
      { target, value, description },
      {
        onSuccess: () => {
          toast(`${key} saved.`);
          onClose();
        },
      },
    );
  };

  const err = (k: string) =>
    errors[k] ? (
      <p className="field-error" id={`secret-${k}-error`}>
        {errors[k]}
      </p>
    ) : null;
  const aria = (k: string) => ({
    "aria-invalid": errors[k] ? true : undefined,
    "aria-describedby": errors[k] ? `secret-${k}-error` : undefined,
  });

  return (
    <Modal
      title={existing ? `Replace ${existing.name}` : "New secret"}
      onClose={onClose}
      footer={
        <>
          <button type="button" className="btn" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" form="secret-form" className="btn btn-primary" disabled={put.isPending}>
            {put.isPending ? "Saving…" : "Save secret"}
          </button>
        </>
      }
    >
      <form id="secret-form" className="form" onSubmit={submit} noValidate>
        {existing ? (
          <p className="muted">
            <code>{existing.name}</code> of {whereOf(existing)}. The current value is not shown; the new one replaces it.
          </p>
        ) : (
          <>
            <div className="field">
              <label htmlFor="secret-scope">Scope</label>
              <select id="secret-scope" value={scope} onChange={(e) => setScope(e.target.value as SecretScope)}>
                {SCOPES.map((s) => (
                  <option key={s.scope} value={s.scope}>
                    {s.title}: {s.help}
                  </option>
                ))}
              </select>
            </div>
            {scope === "template" && (
              <div className={`field${errors.template ? " field-invalid" : ""}`}>
                <label htmlFor="secret-template">Template</label>
                <select id="secret-template" value={template} onChange={(e) => setTemplate(e.target.value)} {...aria("template")}>
                  <option value="">Choose…</option>
                  {(templates.data ?? []).map((t) => (
                    <option key={t.name} value={t.name}>
                      {t.displayName || t.name}
                    </option>
                  ))}
                </select>
                {err("template")}
              </div>
            )}
            {(scope === "deployment" || scope === "service") && (
              <div className={`field${errors.deployment ? " field-invalid" : ""}`}>
                <label htmlFor="secret-deployment">Deployment</label>
                <select id="secret-deployment" value={deployment} onChange={(e) => setDeployment(e.target.value)} {...aria("deployment")}>
                  <option value="">Choose…</option>
                  {(deployments.data ?? []).map((d) => (
                    <option key={d.name} value={d.name}>
                      {d.name}
                    </option>
                  ))}
                </select>
                {err("deployment")}
              </div>
            )}
            {scope === "service" && (
              <div className={`field${errors.service ? " field-invalid" : ""}`}>
                <label htmlFor="secret-service">Service</label>
                <input id="secret-service" list="secret-services" value={service} onChange={(e) => setService(e.target.value)} autoComplete="off" {...aria("service")} />
                <datalist id="secret-services">
                  {services.map((s) => (
                    <option key={s} value={s} />
                  ))}
                </datalist>
                {err("service")}
              </div>
            )}
            <div className={`field${errors.key ? " field-invalid" : ""}`}>
              <label htmlFor="secret-key">Key</label>
              <input
                id="secret-key"
                value={key}
                placeholder="DATABASE_PASSWORD"
                spellCheck={false}
                autoComplete="off"
                onChange={(e) => setKey(e.target.value)}
                {...aria("key")}
              />
              {err("key")}
            </div>
          </>
        )}
        <div className={`field${errors.value ? " field-invalid" : ""}`}>
          <label htmlFor="secret-value">Value</label>
          <input
            id="secret-value"
            type="password"
            autoComplete="new-password"
            spellCheck={false}
            value={value}
            data-autofocus={existing ? true : undefined}
            onChange={(e) => setValue(e.target.value)}
            {...aria("value")}
          />
          {err("value")}
        </div>
        <div className="field">
          <label htmlFor="secret-description">Description (optional)</label>
          <input id="secret-description" value={description} onChange={(e) => setDescription(e.target.value)} autoComplete="off" />
        </div>
        <InlineError error={put.error} />
      </form>
    </Modal>
  );
}
