import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { Condition } from "../api/types";
import { deployment } from "../test/fixtures";
import { FailureBanner, failuresOf } from "./FailureBanner";

const degraded = (reason: string, message: string): Condition => ({
  type: "Degraded",
  status: "True",
  reason,
  message,
  lastTransitionTime: "2025-01-01T00:00:00Z",
});

const quota = {
  reason: "QuotaExceeded",
  message: "the sandbox's quota refuses a pod: requests.cpu (asked 1000, 0 of 1 left)",
  hint: "Lower the service's resources or replicas, remove apps you no longer need, or move the sandbox to a plan with a larger quota.",
};

describe("the failure banner", () => {
  it("says what is wrong and what to do for a failing deployment", () => {
    render(
      <FailureBanner
        deployment={deployment({
          phase: "Error",
          reason: quota.reason,
          message: `web: ${quota.message}`,
          hint: quota.hint,
          conditions: [degraded(quota.reason, `web: ${quota.message}`)],
          services: [{ name: "web", replicas: 1, readyReplicas: 0, ...quota }],
        })}
      />,
    );
    const banner = screen.getByRole("alert");
    expect(banner).toHaveAccessibleName("web: Your sandbox's quota is used up");
    expect(within(banner).getByTestId("failure-message")).toHaveTextContent(/^The sandbox's quota refuses a pod: requests\.cpu/);
    expect(within(banner).getByTestId("failure-hint")).toHaveTextContent(`What to do: ${quota.hint}`);
    expect(within(banner).getByTestId("failure-reason")).toHaveTextContent("QuotaExceeded");
    // The deployment's message repeats the service's: said once.
    expect(within(banner).getAllByTestId("failure-message")).toHaveLength(1);
  });

  it("lists each failing service with its own hint", () => {
    render(
      <FailureBanner
        deployment={deployment({
          phase: "Provisioning",
          services: [
            { name: "web", replicas: 1, readyReplicas: 0, reason: "ImagePullFailed", message: "container web: ErrImagePull (image ghcr.io/x/nope:1)", hint: "Check the image name." },
            { name: "redis", replicas: 1, readyReplicas: 0, reason: "OOMKilled", message: "container redis was killed at its memory limit 64Mi", hint: "Raise the memory limit." },
            { name: "ok", replicas: 1, readyReplicas: 1 },
          ],
        })}
      />,
    );
    const banner = screen.getByRole("alert");
    expect(banner).toHaveAccessibleName("guestbook-ab12 has 2 problems");
    const items = within(banner).getAllByRole("listitem");
    expect(items).toHaveLength(2);
    expect(items[0]).toHaveTextContent("web: The image cannot be pulled");
    expect(items[0]).toHaveTextContent("ghcr.io/x/nope:1");
    expect(items[0]).toHaveTextContent("What to do: Check the image name.");
    expect(items[1]).toHaveTextContent("redis: The app ran out of memory");
    expect(items[1]).toHaveTextContent("What to do: Raise the memory limit.");
    expect(banner).not.toHaveTextContent(/\bok\b/);
  });

  it("explains a failure of the whole deployment (no service at fault)", () => {
    const d = deployment({
      phase: "Error",
      reason: "TemplateNotFound",
      message: "no template named guestbook",
      hint: "Pick a template that exists.",
      conditions: [degraded("TemplateNotFound", "no template named guestbook")],
    });
    expect(failuresOf(d)).toEqual([
      { service: null, reason: "TemplateNotFound", message: "no template named guestbook", hint: "Pick a template that exists." },
    ]);
    render(<FailureBanner deployment={d} />);
    expect(screen.getByRole("alert")).toHaveTextContent("No template named guestbook");
  });

  it.each([
    ["healthy", deployment({ phase: "Ready", ready: true, services: [{ name: "web", replicas: 1, readyReplicas: 1 }] })],
    ["starting normally", deployment({ phase: "Provisioning", services: [{ name: "web", replicas: 1, readyReplicas: 0, reason: null }] })],
    ["being deleted", deployment({ phase: "Deleting", conditions: [degraded("CrashLooping", "x")] })],
  ])("shows nothing while %s", (_, d) => {
    const { container } = render(<FailureBanner deployment={d} />);
    expect(container).toBeEmptyDOMElement();
    expect(screen.queryByRole("alert")).toBeNull();
  });
});
