import { Link } from "react-router";
import { useDeployments } from "../api/hooks";
import { useLiveState } from "../api/live";
import { useCanWrite } from "../api/teams";
import { PageHeader } from "../components/Layout";
import { StatusBadge } from "../components/StatusBadge";
import { Empty, ErrorState, Loading } from "../components/States";
import { ViewerNote } from "../components/ViewerNote";
import { ago, exact } from "../lib/format";
import { readiness } from "../lib/status";

export function Deployments() {
  const deployments = useDeployments();
  const live = useLiveState();
  const canWrite = useCanWrite();
  return (
    <>
      <PageHeader
        title="Deployments"
        subtitle={live === "live" ? "Statuses update live." : "Live updates are reconnecting; the list may be behind."}
      >
        {canWrite && (
          <Link className="btn btn-primary" to="/templates">
            New deployment
          </Link>
        )}
      </PageHeader>
      <ViewerNote />
      {deployments.isPending ? (
        <Loading />
      ) : deployments.error ? (
        <ErrorState error={deployments.error} retry={() => void deployments.refetch()} />
      ) : deployments.data.length === 0 ? (
        canWrite ? (
          <Empty title="No deployments yet" action={<Link className="btn btn-primary" to="/templates">Browse templates</Link>}>
            Deploy an app from the template catalog.
          </Empty>
        ) : (
          <Empty title="No deployments yet">Apps the team's developers deploy show up here.</Empty>
        )
      ) : (
        <div className="table-wrap">
          <table className="responsive">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">Services</th>
                <th scope="col">Template</th>
                <th scope="col">URL</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {[...deployments.data]
                .sort((a, b) => a.name.localeCompare(b.name))
                .map((d) => (
                  <tr key={d.name} data-testid={`deployment-row-${d.name}`}>
                    <th scope="row" data-label="Name">
                      <Link to={`/deployments/${encodeURIComponent(d.name)}`}>{d.name}</Link>
                    </th>
                    <td data-label="Status">
                      <StatusBadge deployment={d} withDetail />
                    </td>
                    <td data-label="Services">{readiness(d) ?? <span className="muted">—</span>}</td>
                    <td data-label="Template">{d.template ?? <span className="muted">custom</span>}</td>
                    <td data-label="URL">
                      {d.url ? (
                        <a href={d.url} target="_blank" rel="noreferrer" className="url">
                          {d.url.replace(/^https?:\/\//, "")}
                        </a>
                      ) : (
                        <span className="muted">{d.visibility === "internal" ? "internal" : "—"}</span>
                      )}
                    </td>
                    <td data-label="Created">
                      <time dateTime={d.createdAt ?? undefined} title={exact(d.createdAt)}>
                        {ago(d.createdAt)}
                      </time>
                    </td>
                  </tr>
                ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
