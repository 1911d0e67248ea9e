// How a deployment's status is shown: one badge (text and colour) from its phase, readiness and
// conditions.
import type { Condition, Deployment } from "../api/types";

export type Tone = "ok" | "progress" | "warn" | "error" | "muted";

export interface StatusView {
  label: string;
  tone: Tone;
  /** One line of explanation, when there is one. */
  detail: string | null;
}

type StatusInput = Pick<Deployment, "phase" | "ready" | "conditions"> &
  Partial<Pick<Deployment, "reason" | "message" | "suspend" | "services" | "generation" | "observedGeneration">>;

const cond = (cs: Condition[] | undefined, type: string) => cs?.find((c) => c.type === type);

function explain(reason?: string | null, message?: string | null): string | null {
  if (message && reason) return `${reason}: ${message}`;
  return message || reason || null;
}

/** Services ready, e.g. "1/2 services ready", or null when unknown. */
export function readiness(d: Pick<Deployment, "services">): string | null {
  if (!d.services || d.services.length === 0) return null;
  const ready = d.services.filter((s) => s.replicas === 0 || s.readyReplicas >= s.replicas).length;
  return `${ready}/${d.services.length} service${d.services.length === 1 ? "" : "s"} ready`;
}

export function statusOf(d: StatusInput): StatusView {
  const degraded = cond(d.conditions, "Degraded");
  const readyCond = cond(d.conditions, "Ready");
  const progressing = cond(d.conditions, "Progressing");
  if (d.phase === "Deleting") return { label: "Deleting", tone: "muted", detail: null };
  // Scaled to zero because the plan allows fewer apps (also Degraded): said before the error.
  const planSuspended = cond(d.conditions, "Suspended");
  if (d.phase === "Suspended" || planSuspended?.status === "True") {
    return { label: "Suspended", tone: "warn", detail: planSuspended?.message ?? d.message ?? null };
  }
  if (d.phase === "Error" || degraded?.status === "True") {
    return {
      label: "Error",
      tone: "error",
      detail: explain(degraded?.reason ?? d.reason, degraded?.message ?? d.message),
    };
  }
  if (d.ready) return { label: "Ready", tone: "ok", detail: null };
  if (d.suspend) return { label: "Suspended", tone: "muted", detail: "scaled to zero" };
  if (d.phase === "Ready") {
    // Ready for an older generation, or the Ready condition is not (yet) True.
    return { label: "Updating", tone: "progress", detail: explain(readyCond?.reason, readyCond?.message) };
  }
  if (d.phase === "Provisioning" || progressing?.status === "True") {
    return {
      label: "Provisioning",
      tone: "progress",
      detail: (d.services && readiness({ services: d.services })) || explain(progressing?.reason, progressing?.message),
    };
  }
  if (d.phase === "Pending") {
    if (d.reason === "KubernetesDisabled") {
      return { label: "Not running", tone: "muted", detail: d.message ?? "Kubernetes is disabled on this server" };
    }
    return { label: "Pending", tone: "warn", detail: explain(d.reason, d.message) };
  }
  return { label: d.phase || "Unknown", tone: "muted", detail: explain(d.reason, d.message) };
}

/** Colour of a condition's status: True is good for Ready, bad for Degraded. */
export function conditionTone(c: Condition): Tone {
  if (c.status === "Unknown") return "muted";
  // Progressing is neither good nor bad: True while a change rolls out, False once done.
  if (c.type === "Progressing") return c.status === "True" ? "progress" : "muted";
  // Degraded and Suspended are conditions whose True is the problem.
  const good = c.type === "Degraded" || c.type === "Suspended" ? c.status === "False" : c.status === "True";
  if (good) return "ok";
  return c.type === "Degraded" || c.type === "Ready" ? "error" : "warn";
}
