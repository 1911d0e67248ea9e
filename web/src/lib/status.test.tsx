import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { StatusBadge } from "../components/StatusBadge";
import { deployment } from "../test/fixtures";
import type { Condition, Deployment } from "../api/types";
import { conditionTone, readiness, statusOf } from "./status";

const c = (type: string, status: string, reason = "", message = ""): Condition => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: "2025-01-01T00:00:00Z",
});

function badge(d: Partial<Deployment>) {
  render(<StatusBadge deployment={deployment(d)} withDetail />);
  return screen.getByTestId("status-badge");
}

describe("status rendering", () => {
  it.each([
    [{ phase: "Ready", ready: true, conditions: [c("Ready", "True", "Available")] }, "Ready", "badge-ok"],
    [{ phase: "Pending" }, "Pending", "badge-warn"],
    [{ phase: "Provisioning", conditions: [c("Progressing", "True", "RollingOut")] }, "Provisioning", "badge-progress"],
    [{ phase: "Error", conditions: [c("Degraded", "True", "TemplateNotFound", "no template guestbook")] }, "Error", "badge-error"],
    // Degraded wins over a stale phase.
    [{ phase: "Provisioning", conditions: [c("Degraded", "True", "RegistryNotAllowed")] }, "Error", "badge-error"],
    // Ready for an older generation: being updated.
    [{ phase: "Ready", ready: false, generation: 2, observedGeneration: 1 }, "Updating", "badge-progress"],
    [{ phase: "Deleting" }, "Deleting", "badge-muted"],
    [{ phase: "Pending", reason: "KubernetesDisabled", message: "KUBERNETES_ENABLED=false" }, "Not running", "badge-muted"],
    [{ phase: "Provisioning", suspend: true }, "Suspended", "badge-muted"],
    // Over the plan's limit: suspended (warn), though also Degraded.
    [
      {
        phase: "Suspended",
        conditions: [c("Degraded", "True", "PlanLimitExceeded"), c("Suspended", "True", "PlanLimitExceeded", "the free plan allows 1 deployment")],
      },
      "Suspended",
      "badge-warn",
    ],
  ] as [Partial<Deployment>, string, string][])("%o → %s (%s)", (d, label, cls) => {
    const el = badge(d);
    expect(el).toHaveTextContent(label);
    expect(el).toHaveClass("badge", cls);
  });

  it("says why an app over the plan's limit is suspended, and colours its condition as a problem", () => {
    const v = statusOf({
      phase: "Suspended",
      ready: false,
      conditions: [c("Suspended", "True", "PlanLimitExceeded", "the free plan allows 1 deployment and this is the newest of 2")],
    });
    expect(v).toEqual({ label: "Suspended", tone: "warn", detail: "the free plan allows 1 deployment and this is the newest of 2" });
    expect(conditionTone(c("Suspended", "True"))).toBe("warn");
    expect(conditionTone(c("Suspended", "False", "WithinPlanLimit"))).toBe("ok");
  });

  it("explains an error with the Degraded reason and message", () => {
    badge({ phase: "Error", conditions: [c("Degraded", "True", "MissingParameter", "TITLE is required")] });
    expect(screen.getByText("MissingParameter: TITLE is required")).toBeInTheDocument();
  });

  it("shows per-service readiness while provisioning", () => {
    const s = statusOf(
      deployment({
        phase: "Provisioning",
        services: [
          { name: "web", replicas: 1, readyReplicas: 1 },
          { name: "redis", replicas: 1, readyReplicas: 0 },
        ],
      }),
    );
    expect(s.detail).toBe("1/2 services ready");
    expect(readiness({ services: [{ name: "web", replicas: 2, readyReplicas: 2 }] })).toBe("1/1 service ready");
  });

  it("colours conditions: Degraded=True is bad, Ready=True is good, Progressing is neutral", () => {
    expect(conditionTone(c("Ready", "True"))).toBe("ok");
    expect(conditionTone(c("Ready", "False"))).toBe("error");
    expect(conditionTone(c("Degraded", "False"))).toBe("ok");
    expect(conditionTone(c("Degraded", "True"))).toBe("error");
    expect(conditionTone(c("Progressing", "True"))).toBe("progress");
    expect(conditionTone(c("Progressing", "False"))).toBe("muted");
    expect(conditionTone(c("Valid", "False"))).toBe("warn");
    expect(conditionTone(c("Ready", "Unknown"))).toBe("muted");
  });
});
