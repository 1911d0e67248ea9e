import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { Route, Routes } from "react-router";
import { deployment, guestbook, metrics, serviceUsage } from "../test/fixtures";
import { mockFetch, renderWithProviders } from "../test/render";
import { DeploymentDetail } from "./DeploymentDetail";

const logs = "GET /api/deployments/guestbook-ab12/logs?service=web&previous=false&tail=500&follow=false";
const usage = "GET /api/deployments/guestbook-ab12/metrics";

function page(over: Parameters<typeof deployment>[0], { kubernetesEnabled = true, usageOf = metrics() } = {}) {
  const calls = mockFetch({
    "GET /api/deployments/guestbook-ab12": () => ({ body: { ...deployment(over), events: [], manifests: null } }),
    "GET /api/templates/guestbook": () => ({ body: guestbook }),
    "GET /api/config": () => ({ body: { kubernetesEnabled } }),
    [logs]: () => ({ body: "listening on :3000" }),
    [usage]: () => ({ body: usageOf }),
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

  it("shows each service's restarts and CPU/memory charts in the Usage region", async () => {
    page(
      { phase: "Ready", ready: true, services: [{ name: "web", replicas: 1, readyReplicas: 1 }] },
      { usageOf: metrics({ services: [serviceUsage({ name: "web", restarts: 2 }), serviceUsage({ name: "redis", samples: [] })] }) },
    );
    const region = await screen.findByRole("region", { name: "Usage" });
    const web = within(await within(region).findByTestId("usage-web"));
    expect(web.getByTestId("usage-restarts")).toHaveTextContent("2");
    expect(web.getByRole("img", { name: "CPU of web over the last hour" })).toHaveAttribute("data-samples", "5");
    expect(web.getByRole("img", { name: "Memory of web over the last hour" })).toHaveAttribute("data-samples", "5");
    expect(within(within(region).getByTestId("usage-redis")).getByTestId("usage-no-samples")).toHaveTextContent(
      "No samples yet; the first arrives within 60 s",
    );
  });

  it("reads no usage when Kubernetes is disabled", async () => {
    const { calls } = page({ phase: "Ready" }, { kubernetesEnabled: false });
    const region = await screen.findByRole("region", { name: "Usage" });
    expect(await within(region).findByText("No usage")).toBeInTheDocument();
    expect(calls.some((c) => `${c.method} ${c.path}` === usage)).toBe(false);
  });
});
