// The top of a deployment's page when the app fails: what is wrong, in plain words, per failing
// service, and what to do about it (the server's diagnosis: reason, message, hint).
import type { Deployment } from "../api/types";

/** Plain titles of the reasons the server reports (controller/src/diagnose.rs). */
const TITLES: Record<string, string> = {
  ImagePullFailed: "The image cannot be pulled",
  CrashLooping: "The app keeps crashing",
  OOMKilled: "The app ran out of memory",
  QuotaExceeded: "Your sandbox's quota is used up",
  Unschedulable: "No node can run the app",
  ProbeFailing: "The app fails its readiness check",
  PodRejected: "Kubernetes refused to start the app",
  ContainerRefused: "A container was refused at start",
  RolloutStalled: "The rollout is stuck",
};

export interface Failure {
  /** The service, or null for a problem of the whole deployment (e.g. a missing template). */
  service: string | null;
  reason: string | null;
  message: string | null;
  hint: string | null;
}

type Input = Pick<Deployment, "phase" | "reason" | "message" | "conditions" | "services"> & Partial<Pick<Deployment, "hint">>;

/** What is wrong with a deployment; empty while it is healthy (or still starting normally). */
export function failuresOf(d: Input): Failure[] {
  if (d.phase === "Deleting") return [];
  const degraded = d.conditions.find((c) => c.type === "Degraded" && c.status === "True");
  const services: Failure[] = d.services
    .filter((s) => s.reason)
    .map((s) => ({ service: s.name, reason: s.reason ?? null, message: s.message ?? null, hint: s.hint ?? null }));
  // The deployment's own reason counts only when it is a failure: while it merely provisions, it
  // comes from the Ready condition ("waiting for pods").
  const failed = d.phase === "Error" || degraded !== undefined;
  if (!failed && services.length === 0) return [];
  const reason = failed ? degraded?.reason || d.reason || null : null;
  const message = failed ? degraded?.message || d.message || null : null;
  // It usually repeats a service's (the first failing one's): said once.
  const repeated =
    (reason === null && message === null) ||
    services.some((s) => s.reason === reason) ||
    (message !== null && services.some((s) => s.message && message.includes(s.message)));
  if (services.length > 0 && repeated) {
    // The deployment's hint is the first failing service's: it fills in for a service without one
    // only when there is a single service to give it to.
    if (services.length === 1 && !services[0].hint) services[0].hint = d.hint ?? null;
    return services;
  }
  const app: Failure = { service: null, reason, message, hint: services.length === 0 ? (d.hint ?? null) : null };
  return [app, ...services];
}

const titleOf = (f: Failure) => (f.reason && TITLES[f.reason]) || "The app is not working";

function FailureText({ f, withTitle }: { f: Failure; withTitle: boolean }) {
  return (
    <>
      <p>
        {withTitle && (
          <>
            <strong>
              {f.service ? `${f.service}: ` : ""}
              {titleOf(f)}
            </strong>{" "}
          </>
        )}
        {f.reason && (
          <code className="small" data-testid="failure-reason">
            {f.reason}
          </code>
        )}
      </p>
      {f.message && <p data-testid="failure-message">{capitalize(f.message)}</p>}
      {f.hint && (
        <p data-testid="failure-hint">
          <strong>What to do:</strong> {f.hint}
        </p>
      )}
    </>
  );
}

const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** Nothing while the deployment is healthy. */
export function FailureBanner({ deployment }: { deployment: Input & Pick<Deployment, "name"> }) {
  const failures = failuresOf(deployment);
  if (failures.length === 0) return null;
  const single = failures.length === 1 ? failures[0] : null;
  const title = single
    ? `${single.service ? `${single.service}: ` : ""}${titleOf(single)}`
    : `${deployment.name} has ${failures.length} problems`;
  return (
    <div className="callout callout-error" role="alert" aria-labelledby="failure-title" data-testid="failure-banner">
      <h2 id="failure-title">{title}</h2>
      {single ? (
        <FailureText f={single} withTitle={false} />
      ) : (
        <ul>
          {failures.map((f) => (
            <li key={f.service ?? ""}>
              <FailureText f={f} withTitle />
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
