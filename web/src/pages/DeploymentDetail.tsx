import { Fragment, useMemo, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { ApiError, messageOf } from "../api/client";
import { useConfig, useDeployment, useDeploymentActions, useManifest, useTemplate } from "../api/hooks";
import { useCanWrite } from "../api/teams";
import type { DeploymentDetail as Detail, Template } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { CopyButton } from "../components/CopyButton";
import { FailureBanner } from "../components/FailureBanner";
import { PageHeader } from "../components/Layout";
import { LogViewer } from "../components/LogViewer";
import { Modal } from "../components/Modal";
import { ParameterFields } from "../components/ParameterFields";
import { Badge, StatusBadge } from "../components/StatusBadge";
import { Empty, ErrorState, InlineError, Loading } from "../components/States";
import { useToast } from "../components/Toasts";
import { UsageCharts } from "../components/UsageCharts";
import { ViewerNote } from "../components/ViewerNote";
import { ago, exact } from "../lib/format";
import { initialValues, validateAll } from "../lib/params";
import { conditionTone } from "../lib/status";

export function DeploymentDetail() {
  const { name = "" } = useParams();
  const d = useDeployment(name);
  const template = useTemplate(d.data?.template ?? "");
  const [dialog, setDialog] = useState<null | "yaml" | "delete">(null);
  const actions = useDeploymentActions(name);
  const toast = useToast();
  const navigate = useNavigate();
  const canWrite = useCanWrite();

  if (d.isPending) return <Loading />;
  if (d.error) {
    if (d.error instanceof ApiError && d.error.status === 404) {
      return (
        <>
          <PageHeader title={name} />
          <Empty title="This deployment does not exist (any more)" action={<Link className="btn" to="/deployments">All deployments</Link>}>
            It may have been deleted.
          </Empty>
        </>
      );
    }
    return <ErrorState error={d.error} retry={() => void d.refetch()} />;
  }
  const dep = d.data;
  const tpl = dep.template && template.data ? template.data : null;

  return (
    <>
      <FailureBanner deployment={dep} />
      <nav aria-label="Breadcrumb" className="breadcrumb">
        <Link to="/deployments">Deployments</Link> <span aria-hidden="true">/</span> <span aria-current="page">{dep.name}</span>
      </nav>
      <PageHeader
        title={dep.name}
        subtitle={
          <span className="subtitle-row">
            <StatusBadge deployment={dep} withDetail />
            {dep.url && (
              <a className="url" href={dep.url} target="_blank" rel="noreferrer">
                {dep.url}
              </a>
            )}
          </span>
        }
      >
        {canWrite && (
          <button
            type="button"
            className="btn"
            disabled={actions.restart.isPending || dep.phase === "Deleting"}
            onClick={() =>
              actions.restart.mutate(undefined, {
                onSuccess: () => toast(`Restart of ${dep.name} requested: its pods are being replaced.`),
                onError: (e) => toast(messageOf(e), "error"),
              })
            }
          >
            {actions.restart.isPending ? "Restarting…" : "Restart"}
          </button>
        )}
        <button type="button" className="btn" onClick={() => setDialog("yaml")}>
          View as YAML
        </button>
        {canWrite && (
          <button type="button" className="btn btn-danger" onClick={() => setDialog("delete")} disabled={dep.phase === "Deleting"}>
            Delete
          </button>
        )}
      </PageHeader>
      <ViewerNote to="deploy or change this app" />

      <div className="grid grid-2">
        <section className="card" aria-labelledby="overview">
          <h2 id="overview">Overview</h2>
          <dl className="props">
            <dt>Phase</dt>
            <dd data-testid="phase">{dep.phase}</dd>
            {dep.reason && (
              <>
                <dt>Reason</dt>
                <dd>{dep.reason}</dd>
              </>
            )}
            {dep.message && (
              <>
                <dt>Message</dt>
                <dd>{dep.message}</dd>
              </>
            )}
            <dt>Template</dt>
            <dd>{dep.template ? <Link to={`/templates/${encodeURIComponent(dep.template)}`}>{dep.template}</Link> : "custom"}</dd>
            <dt>URL</dt>
            <dd>
              {dep.url ? (
                <a href={dep.url} target="_blank" rel="noreferrer" className="url">
                  {dep.url}
                </a>
              ) : (
                <span className="muted">{dep.visibility === "internal" ? "internal only" : "not yet"}</span>
              )}
            </dd>
            <dt>Visibility</dt>
            <dd>{dep.visibility}</dd>
            <dt>Namespace</dt>
            <dd>
              <code>{dep.namespace}</code>
            </dd>
            <dt>Created</dt>
            <dd>
              <time dateTime={dep.createdAt ?? undefined} title={exact(dep.createdAt)}>
                {ago(dep.createdAt)}
              </time>
            </dd>
            <dt>Generation</dt>
            <dd>
              {dep.generation}
              {dep.observedGeneration !== dep.generation && (
                <span className="muted"> (status describes {dep.observedGeneration ?? "none yet"})</span>
              )}
            </dd>
          </dl>
        </section>
        <Services dep={dep} template={tpl} canWrite={canWrite} />
      </div>

      <Usage dep={dep} />

      <Logs dep={dep} template={tpl} />

      <section className="section" aria-labelledby="conditions">
        <h2 id="conditions">Conditions</h2>
        {dep.conditions.length === 0 ? (
          <Empty title="No conditions yet">The controller has not reported on this deployment yet.</Empty>
        ) : (
          <div className="table-wrap">
            <table className="responsive">
              <thead>
                <tr>
                  <th scope="col">Type</th>
                  <th scope="col">Status</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Message</th>
                  <th scope="col">Since</th>
                </tr>
              </thead>
              <tbody>
                {dep.conditions.map((c) => (
                  <tr key={c.type}>
                    <th scope="row" data-label="Type">
                      {c.type}
                    </th>
                    <td data-label="Status">
                      <Badge tone={conditionTone(c)}>{c.status}</Badge>
                    </td>
                    <td data-label="Reason">{c.reason}</td>
                    <td data-label="Message">{c.message || <span className="muted">—</span>}</td>
                    <td data-label="Since">
                      <time dateTime={c.lastTransitionTime} title={exact(c.lastTransitionTime)}>
                        {ago(c.lastTransitionTime)}
                      </time>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <section className="section" aria-labelledby="events">
        <h2 id="events">Recent events</h2>
        {dep.events.length === 0 ? (
          <Empty title="No recent events" />
        ) : (
          <ol className="events">
            {[...dep.events].reverse().map((e, i) => (
              <li key={`${e.reason}-${e.lastSeen}-${i}`} className={e.type === "Warning" ? "event-warning" : undefined}>
                <Badge tone={e.type === "Warning" ? "warn" : "muted"}>{e.reason}</Badge> <span>{e.message}</span>
                <span className="muted small">
                  {e.count > 1 ? ` ×${e.count} · ` : " · "}
                  <time dateTime={e.lastSeen ?? undefined} title={exact(e.lastSeen)}>
                    {ago(e.lastSeen)}
                  </time>
                </span>
              </li>
            ))}
          </ol>
        )}
      </section>

      {canWrite ? (
        <Configuration dep={dep} template={tpl} templateState={template} />
      ) : (
        <ConfigurationView dep={dep} />
      )}

      {dep.manifests && (
        <section className="section" aria-labelledby="manifests">
          <h2 id="manifests">Rendered objects</h2>
          <p className="muted">Kubernetes is disabled on this server: these are the objects the controller would create.</p>
          <details>
            <summary>{dep.manifests.length} objects</summary>
            <pre className="code">{JSON.stringify(dep.manifests, null, 2)}</pre>
          </details>
        </section>
      )}

      {dialog === "yaml" && <YamlDialog name={dep.name} onClose={() => setDialog(null)} />}
      {dialog === "delete" && canWrite && (
        <ConfirmDialog
          title={`Delete ${dep.name}?`}
          confirmLabel="Delete"
          typeToConfirm={dep.name}
          busy={actions.remove.isPending}
          error={actions.remove.error}
          onCancel={() => setDialog(null)}
          onConfirm={() =>
            actions.remove.mutate(undefined, {
              onSuccess: () => {
                toast(`${dep.name} is being deleted.`);
                navigate("/deployments");
              },
            })
          }
        >
          <p>
            The app and everything it runs are removed from your sandbox, and so are the secrets stored for this deployment and
            its services. Account and template secrets stay.
          </p>
        </ConfirmDialog>
      )}
    </>
  );
}

function YamlDialog({ name, onClose }: { name: string; onClose: () => void }) {
  const m = useManifest(name, true);
  return (
    <Modal
      title={`${name}.yaml`}
      onClose={onClose}
      wide
      footer={
        <>
          {m.data && <CopyButton text={m.data} label="Copy YAML" />}
          <button type="button" className="btn" onClick={onClose}>
            Close
          </button>
        </>
      }
    >
      <p className="muted small">
        The UserDeployment as <code>kubectl apply -f</code> or a GitOps repository takes it (no status, no secret values).
      </p>
      {m.isPending ? (
        <Loading />
      ) : m.error ? (
        <ErrorState error={m.error} retry={() => void m.refetch()} />
      ) : (
        <pre className="code" data-testid="manifest" tabIndex={0} aria-label="YAML manifest">
          {m.data}
        </pre>
      )}
    </Modal>
  );
}

/** The services of a deployment: those of its template and those its status reports. */
function useServiceNames(dep: Detail, template: Template | null): string[] {
  return useMemo(() => {
    const set = new Set<string>([...(template?.services.map((s) => s.name) ?? []), ...dep.services.map((s) => s.name)]);
    return Array.from(set);
  }, [template, dep.services]);
}

function Usage({ dep }: { dep: Detail }) {
  const config = useConfig();
  return (
    <section className="section" aria-labelledby="usage">
      <h2 id="usage">Usage</h2>
      {config.data?.kubernetesEnabled === false ? (
        <Empty title="No usage">Kubernetes is disabled on this server: nothing runs, so nothing uses CPU or memory.</Empty>
      ) : config.isPending ? (
        // Known first: without Kubernetes there is nothing to poll for.
        <Loading />
      ) : (
        <UsageCharts deployment={dep.name} />
      )}
    </section>
  );
}

function Logs({ dep, template }: { dep: Detail; template: Template | null }) {
  const config = useConfig();
  const names = useServiceNames(dep, template);
  // The first failing service's logs are the ones worth reading first.
  const failing = dep.services.find((s) => s.reason)?.name;
  return (
    <section className="section" aria-labelledby="logs">
      <h2 id="logs">Logs</h2>
      {config.data?.kubernetesEnabled === false ? (
        <Empty title="No logs">Kubernetes is disabled on this server: nothing runs, so nothing prints.</Empty>
      ) : (
        <LogViewer deployment={dep.name} services={names} initialService={failing} />
      )}
    </section>
  );
}

function Services({ dep, template, canWrite }: { dep: Detail; template: Template | null; canWrite: boolean }) {
  const [editing, setEditing] = useState<string | null>(null);
  const names = useServiceNames(dep, template);
  return (
    <section className="card" aria-labelledby="svc">
      <h2 id="svc">Services</h2>
      {names.length === 0 ? (
        <Empty title="No services reported yet" />
      ) : (
        <ul className="services">
          {names.map((n) => {
            const st = dep.services.find((s) => s.name === n);
            const image = dep.imageOverrides[n] ?? template?.services.find((s) => s.name === n)?.image;
            const ok = st && (st.replicas === 0 || st.readyReplicas >= st.replicas);
            return (
              <li key={n} data-testid={`service-${n}`}>
                <div className="card-row">
                  <strong>{n}</strong>
                  {st ? (
                    <Badge tone={ok ? "ok" : st.reason ? "error" : "progress"} title={st.message ?? undefined}>
                      {st.readyReplicas}/{st.replicas} ready{st.reason ? ` · ${st.reason}` : ""}
                    </Badge>
                  ) : (
                    <Badge tone="muted">unknown</Badge>
                  )}
                </div>
                {image && (
                  <p className="small">
                    <code className="break">{image}</code>
                    {dep.imageOverrides[n] && <span className="muted"> (overridden)</span>}
                  </p>
                )}
                {!canWrite ? null : editing === n ? (
                  <ImageForm name={dep.name} service={n} current={image ?? ""} onDone={() => setEditing(null)} />
                ) : (
                  <button type="button" className="btn btn-small" onClick={() => setEditing(n)}>
                    Deploy a new image
                  </button>
                )}
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

function ImageForm({ name, service, current, onDone }: { name: string; service: string; current: string; onDone: () => void }) {
  const { image } = useDeploymentActions(name);
  const toast = useToast();
  const [value, setValue] = useState(current);
  const [error, setError] = useState<string | null>(null);
  const id = `image-${service}`;
  return (
    <form
      className="inline-form"
      onSubmit={(e) => {
        e.preventDefault();
        const v = value.trim();
        if (!v || /\s/.test(v)) {
          setError("an image reference such as ghcr.io/acme/web:1.4, without spaces");
          return;
        }
        setError(null);
        image.mutate(
          { service, image: v },
          {
            onSuccess: () => {
              toast(`${service} is rolling out ${v}.`);
              onDone();
            },
          },
        );
      }}
    >
      <div className={`field${error ? " field-invalid" : ""}`}>
        <label htmlFor={id}>New image for {service}</label>
        <input
          id={id}
          data-autofocus
          value={value}
          spellCheck={false}
          autoComplete="off"
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? `${id}-error` : undefined}
          onChange={(e) => setValue(e.target.value)}
        />
        {error && (
          <p className="field-error" id={`${id}-error`}>
            {error}
          </p>
        )}
      </div>
      <InlineError error={image.error} />
      <div className="form-actions">
        <button type="button" className="btn" onClick={onDone}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary" disabled={image.isPending}>
          {image.isPending ? "Deploying…" : "Deploy image"}
        </button>
      </div>
    </form>
  );
}

/** The configuration for a viewer: what is set, nothing to edit. */
function ConfigurationView({ dep }: { dep: Detail }) {
  const params = Object.entries(dep.parameters).sort(([a], [b]) => a.localeCompare(b));
  return (
    <section className="section" aria-labelledby="config">
      <h2 id="config">Configuration</h2>
      <div className="card">
        <dl className="props">
          {params.map(([k, v]) => (
            <Fragment key={k}>
              <dt>
                <code>{k}</code>
              </dt>
              <dd>{v === "" ? <span className="muted">empty</span> : v}</dd>
            </Fragment>
          ))}
          {dep.secretRefs.length > 0 && (
            <>
              <dt>Secret parameters</dt>
              <dd>
                {dep.secretRefs.map((s) => (
                  <code key={s} className="secret-ref">
                    {s}
                  </code>
                ))}
              </dd>
            </>
          )}
          <dt>Visibility</dt>
          <dd>{dep.visibility}</dd>
          <dt>Pods per service</dt>
          <dd>{dep.replicas === null ? <span className="muted">template default</span> : dep.replicas}</dd>
          <dt>Suspended</dt>
          <dd>{dep.suspend ? "yes (scaled to zero)" : "no"}</dd>
        </dl>
      </div>
    </section>
  );
}

function Configuration({ dep, template, templateState }: { dep: Detail; template: Template | null; templateState: { isPending: boolean; error: unknown } }) {
  const { update } = useDeploymentActions(dep.name);
  const toast = useToast();
  const params = useMemo(() => (template?.parameters ?? []).filter((p) => !p.secret), [template]);
  const secretParams = (template?.parameters ?? []).filter((p) => p.secret);
  const [values, setValues] = useState<Record<string, string> | null>(null);
  const [visibility, setVisibility] = useState<"public" | "internal" | null>(null);
  const [replicas, setReplicas] = useState<string | null>(null);
  const [suspend, setSuspend] = useState<boolean | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});

  const current = values ?? initialValues(params, dep.parameters);
  const vis = visibility ?? (dep.visibility === "internal" ? "internal" : "public");
  const reps = replicas ?? (dep.replicas === null ? "" : String(dep.replicas));
  const susp = suspend ?? dep.suspend;
  const dirty = values !== null || visibility !== null || replicas !== null || suspend !== null;
  const reset = () => {
    setValues(null);
    setVisibility(null);
    setReplicas(null);
    setSuspend(null);
    setErrors({});
  };

  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    const errs = validateAll(params, current);
    if (reps !== "" && !(/^\d+$/.test(reps) && Number(reps) <= 20)) errs.__replicas = "a whole number from 0 to 20";
    setErrors(errs);
    if (Object.keys(errs).length > 0) return;
    const parameters: Record<string, string> = {};
    for (const p of params) if (current[p.name] !== "") parameters[p.name] = current[p.name];
    // Keep values of parameters the template no longer lists out of the way: send only known ones.
    update.mutate(
      { parameters, visibility: vis, suspend: susp, ...(reps !== "" ? { replicas: Number(reps) } : {}) },
      {
        onSuccess: () => {
          toast("Configuration saved; the app is rolling out the change.");
          reset();
        },
      },
    );
  };

  return (
    <section className="section" aria-labelledby="config">
      <h2 id="config">Configuration</h2>
      {dep.template && templateState.isPending ? (
        <Loading label="Loading the template…" />
      ) : dep.template && !template ? (
        <ErrorState error={templateState.error ?? new Error(`template ${dep.template} not found`)} title="The parameters cannot be edited" />
      ) : (
        <form className="form card" onSubmit={submit} noValidate aria-label="Configuration">
          <ParameterFields
            parameters={params}
            values={current}
            errors={errors}
            idPrefix="config"
            onChange={(k, v) => setValues({ ...current, [k]: v })}
          />
          {secretParams.length > 0 && (
            <div className="field">
              <span className="label">Secret parameters</span>
              <p className="hint">
                {secretParams.map((p) => (
                  <code key={p.name} className="secret-ref">
                    {p.name}
                    {dep.secretRefs.includes(p.name) ? " ✓" : " (not set)"}
                  </code>
                ))}{" "}
                Change their values on the <Link to="/secrets">Secrets</Link> page; restart to apply.
              </p>
            </div>
          )}
          <div className="grid grid-3 compact">
            <div className="field">
              <label htmlFor="config-visibility">Visibility</label>
              <select id="config-visibility" value={vis} onChange={(e) => setVisibility(e.target.value as "public" | "internal")}>
                <option value="public">public</option>
                <option value="internal">internal</option>
              </select>
            </div>
            <div className={`field${errors.__replicas ? " field-invalid" : ""}`}>
              <label htmlFor="config-replicas">Pods per service</label>
              <input
                id="config-replicas"
                inputMode="numeric"
                placeholder="template default"
                value={reps}
                aria-invalid={errors.__replicas ? true : undefined}
                aria-describedby={errors.__replicas ? "config-replicas-error" : undefined}
                onChange={(e) => setReplicas(e.target.value)}
              />
              {errors.__replicas && (
                <p className="field-error" id="config-replicas-error">
                  {errors.__replicas}
                </p>
              )}
            </div>
            <div className="field checkbox-field">
              <input id="config-suspend" type="checkbox" checked={susp} onChange={(e) => setSuspend(e.target.checked)} />
              <label htmlFor="config-suspend">Suspended (scaled to zero)</label>
            </div>
          </div>
          <InlineError error={update.error} />
          <div className="form-actions">
            <button type="button" className="btn" disabled={!dirty || update.isPending} onClick={reset}>
              Discard changes
            </button>
            <button type="submit" className="btn btn-primary" disabled={!dirty || update.isPending}>
              {update.isPending ? "Saving…" : "Save configuration"}
            </button>
          </div>
        </form>
      )}
    </section>
  );
}
