import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { Route, Routes } from "react-router";
import { deployment, guestbook } from "../test/fixtures";
import { mockFetch, renderWithProviders } from "../test/render";
import { DeploymentDetail } from "./DeploymentDetail";

const logs = "GET /api/deployments/guestbook-ab12/logs?service=web&previous=false&tail=500&follow=false";

function page(over: Parameters<typeof deployment>[0]) {
  const calls = mockFetch({
    "GET /api/deployments/guestbook-ab12": () => ({ body: { ...deployment(over), events: [], manifests: null } }),
    "GET /api/templates/guestbook": () => ({ body: guestbook }),
    "GET /api/config": () => ({ body: { kubernetesEnabled: true } }),
    [logs]: () => ({ body: "listening on :3000" }),
  });
  const r = renderWithProviders(
    <Routes>
      <Route path="/deployments/:name" element={<DeploymentDetail />} />
    </Routes>,
    { route: "/deployments/guestbook-ab12" },
  );
  return { ...r, ...calls };
}

describe("the deployment page", () => {
  it("opens with the failure, in plain words with the hint, and offers the failing service's logs", async () => {
    const { container, calls } = page({
      phase: "Error",
      reason: "CrashLooping",
      message: "web: container web exited with code 3, restarted 4 times",
      hint: "Read the logs of the previous container to see why it exits.",
      services: [
        { name: "web", replicas: 1, readyReplicas: 0, reason: "CrashLooping", message: "container web exited with code 3, restarted 4 times", hint: "Read the logs of the previous container to see why it exits." },
        { name: "redis", replicas: 1, readyReplicas: 1 },
      ],
    });
    const banner = await screen.findByRole("alert", { name: "web: The app keeps crashing" });
    expect(container.firstElementChild).toBe(banner);
    expect(banner).toHaveTextContent("Container web exited with code 3, restarted 4 times");
    expect(banner).toHaveTextContent("What to do: Read the logs of the previous container");
    expect(within(screen.getByTestId("service-web")).getByText(/CrashLooping/)).toBeInTheDocument();

    const viewer = screen.getByRole("region", { name: "Logs" });
    expect(within(viewer).getByLabelText("Service")).toHaveValue("web");
    expect(await within(viewer).findByText('"listening on :3000"')).toBeInTheDocument();
    expect(calls.some((c) => `${c.method} ${c.path}` === logs)).toBe(true);
  });

  it("shows no banner while the app is healthy", async () => {
    page({ phase: "Ready", ready: true, reason: "Available", message: "all services ready", services: [{ name: "web", replicas: 1, readyReplicas: 1 }] });
    expect(await screen.findByRole("heading", { name: "guestbook-ab12", level: 1 })).toBeInTheDocument();
    expect(screen.queryByTestId("failure-banner")).toBeNull();
  });
});
