import { Link, useNavigate, useParams } from "react-router";
import { useDeployments, useMe, useTemplate } from "../api/hooks";
import { useCanWrite } from "../api/teams";
import { DeployForm } from "../components/DeployForm";
import { PageHeader } from "../components/Layout";
import { ErrorState, Loading } from "../components/States";
import { ViewerNote } from "../components/ViewerNote";
import { deploymentLimit } from "../api/types";

export function Deploy() {
  const { name = "" } = useParams();
  const t = useTemplate(name);
  const me = useMe();
  const deployments = useDeployments();
  const navigate = useNavigate();
  const canWrite = useCanWrite();
  if (t.isPending) return <Loading />;
  if (t.error) return <ErrorState error={t.error} retry={() => void t.refetch()} title={`Template ${name}`} />;
  const limit = me.data ? deploymentLimit(me.data.sandbox) : undefined;
  const full = limit !== null && limit !== undefined && deployments.data !== undefined && deployments.data.length >= limit;
  return (
    <>
      <nav aria-label="Breadcrumb" className="breadcrumb">
        <Link to="/templates">Templates</Link> <span aria-hidden="true">/</span>{" "}
        <Link to={`/templates/${encodeURIComponent(t.data.name)}`}>{t.data.name}</Link> <span aria-hidden="true">/</span>{" "}
        <span aria-current="page">deploy</span>
      </nav>
      <PageHeader title={`Deploy ${t.data.displayName || t.data.name}`} subtitle={t.data.description} />
      {canWrite ? (
        <>
          {full && (
            <div className="callout callout-warn" role="note">
              Your {me.data?.sandbox.plan} plan allows {limit} deployment{limit === 1 ? "" : "s"} and you have{" "}
              {deployments.data?.length}: the server will refuse a new one. <Link to="/deployments">Delete one</Link> first, or{" "}
              <Link to="/billing">see plans and billing</Link>.
            </div>
          )}
          {me.data && !me.data.sandbox.ready && (
            <div className="callout" role="status">
              Your sandbox is still being prepared; deploying waits for it.
            </div>
          )}
          <DeployForm template={t.data} onDeployed={(d) => navigate(`/deployments/${encodeURIComponent(d.name)}`)} />
        </>
      ) : (
        // Reached by its address: no form that the server would refuse anyway.
        <>
          <ViewerNote />
          <Link className="btn" to={`/templates/${encodeURIComponent(t.data.name)}`}>
            Back to the template
          </Link>
        </>
      )}
    </>
  );
}
