import { Link, useParams } from "react-router";
import { useTemplate } from "../api/hooks";
import { useCanWrite } from "../api/teams";
import type { ResourceList } from "../api/types";
import { PageHeader } from "../components/Layout";
import { Badge } from "../components/StatusBadge";
import { Empty, ErrorState, Loading } from "../components/States";
import { ViewerNote } from "../components/ViewerNote";

const res = (r?: ResourceList) => (r ? [r.cpu && `${r.cpu} CPU`, r.memory && `${r.memory} memory`].filter(Boolean).join(", ") : "");

export function TemplateDetail() {
  const { name = "" } = useParams();
  const t = useTemplate(name);
  const canWrite = useCanWrite();
  if (t.isPending) return <Loading />;
  if (t.error) return <ErrorState error={t.error} retry={() => void t.refetch()} title={`Template ${name}`} />;
  const tpl = t.data;
  const hasResources = tpl.services.some((s) => s.resources);
  return (
    <>
      <nav aria-label="Breadcrumb" className="breadcrumb">
        <Link to="/templates">Templates</Link> <span aria-hidden="true">/</span> <span aria-current="page">{tpl.name}</span>
      </nav>
      <PageHeader title={tpl.displayName || tpl.name} subtitle={tpl.description}>
        {!canWrite ? null : tpl.valid === false ? (
          <button type="button" className="btn btn-primary" disabled title="This template is not valid">
            Deploy
          </button>
        ) : (
          <Link className="btn btn-primary" to={`/templates/${encodeURIComponent(tpl.name)}/deploy`}>
            Deploy
          </Link>
        )}
      </PageHeader>
      <ViewerNote />
      <p className="tags">
        {tpl.category && <Badge tone="muted">{tpl.category}</Badge>}
        <Badge tone="muted">{tpl.system ? "system template" : "your template"}</Badge>
        <Badge tone="muted">{tpl.visibility}</Badge>
        {tpl.valid === true && <Badge tone="ok">valid</Badge>}
        {tpl.valid === false && <Badge tone="error">invalid</Badge>}
      </p>
      {tpl.problems.length > 0 && (
        <div className="callout callout-error" role="alert">
          <strong>This template cannot be deployed:</strong>
          <ul>
            {tpl.problems.map((p) => (
              <li key={p}>{p}</li>
            ))}
          </ul>
        </div>
      )}

      <section className="section" aria-labelledby="services">
        <h2 id="services">Services</h2>
        {tpl.services.length === 0 ? (
          <Empty title="No services" />
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Service</th>
                  <th scope="col">Image</th>
                  <th scope="col">Port</th>
                  {hasResources && <th scope="col">Resources</th>}
                </tr>
              </thead>
              <tbody>
                {tpl.services.map((s) => (
                  <tr key={s.name}>
                    <th scope="row">{s.name}</th>
                    <td>
                      <code className="break">{s.image}</code>
                    </td>
                    <td>{s.port ?? <span className="muted">none (worker)</span>}</td>
                    {hasResources && (
                      <td className="small">
                        {s.resources ? (
                          <>
                            {s.resources.requests && <div>requests {res(s.resources.requests)}</div>}
                            {s.resources.limits && <div>limits {res(s.resources.limits)}</div>}
                          </>
                        ) : (
                          <span className="muted">platform defaults</span>
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

      <section className="section" aria-labelledby="parameters">
        <h2 id="parameters">Parameters</h2>
        {tpl.parameters.length === 0 ? (
          <Empty title="No parameters">This app runs as it is.</Empty>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Type</th>
                  <th scope="col">Default</th>
                  <th scope="col">Description</th>
                </tr>
              </thead>
              <tbody>
                {tpl.parameters.map((p) => (
                  <tr key={p.name}>
                    <th scope="row">
                      <code>{p.name}</code>
                      {p.required && <Badge tone="warn">required</Badge>}
                      {p.secret && <Badge tone="muted">secret</Badge>}
                    </th>
                    <td>
                      {p.type}
                      {p.enum && <div className="small muted">{p.enum.join(" | ")}</div>}
                      {p.pattern && (
                        <div className="small muted">
                          matches <code>{p.pattern}</code>
                        </div>
                      )}
                    </td>
                    <td>{p.default ? <code>{p.default}</code> : <span className="muted">—</span>}</td>
                    <td>{p.description || <span className="muted">—</span>}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}
