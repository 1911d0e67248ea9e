import { act, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { formatBytes, formatCpu, parseMetrics, pollMs, windowLabel } from "../api/metrics";
import { metrics, samples, serviceUsage } from "../test/fixtures";
import { mockFetch, renderWithProviders } from "../test/render";
import { UsageCharts } from "./UsageCharts";

const path = "GET /api/deployments/shop/metrics";
const MiB = 1024 * 1024;

function show(answer: () => { status?: number; body?: unknown }) {
  const calls = mockFetch({ [path]: answer });
  const r = renderWithProviders(<UsageCharts deployment="shop" />);
  const count = () => calls.calls.filter((c) => `${c.method} ${c.path}` === path).length;
  return { ...r, ...calls, count };
}

const card = (service: string) => within(screen.getByTestId(`usage-${service}`));
const restartsBadge = (service: string) => card(service).getByTestId("usage-restarts").firstElementChild as HTMLElement;

afterEach(() => {
  vi.useRealTimers();
});

describe("the usage charts", () => {
  it("draw each service's samples to scale with its limit, and say the current values", async () => {
    show(() => ({
      body: metrics({
        services: [
          serviceUsage({ name: "web", restarts: 3, pods: 2 }),
          serviceUsage({ name: "redis", cpuLimitMillicores: null, memoryLimitBytes: null, samples: samples([1500, 2250], [900, 1536]) }),
        ],
      }),
    }));
    const cpu = await screen.findByRole("img", { name: "CPU of web over the last hour" });
    const web = card("web");
    expect(web.getByTestId("usage-cpu-now")).toHaveTextContent(/^250m$/);
    expect(web.getByTestId("usage-memory-now")).toHaveTextContent(/^48 MiB$/);
    expect(web.getByTestId("usage-memory-now")).toHaveAttribute("data-value", String(48 * MiB));
    expect(web.getByTestId("usage-pods")).toHaveTextContent("2");
    expect(web.getByTestId("usage-cpu-limit")).toHaveTextContent(/^limit 500m$/);
    expect(web.getByTestId("usage-memory-limit")).toHaveTextContent(/^limit 64 MiB$/);
    // Restarts stand out when there are any.
    expect(restartsBadge("web")).toHaveTextContent("3");
    expect(restartsBadge("web")).toHaveClass("badge-warn");
    expect(restartsBadge("redis")).toHaveClass("badge-muted");

    // Five samples a minute apart at the right end of an hour-wide chart (300 wide); the limit
    // (500m) is the top of the scale (y 8 of 72), so 250m sits halfway down the drawing.
    expect(cpu).toHaveAttribute("data-samples", "5");
    expect(within(cpu).getByTestId("chart-line")).toHaveAttribute("d", "M280.0,70.7L285.0,69.4L290.0,59.2L295.0,65.6L300.0,40.0");
    expect(within(cpu).getByTestId("chart-area").getAttribute("d")).toMatch(/^M280\.0,72L280\.0,70\.7.*L300\.0,72Z$/);
    const limit = within(cpu).getByTestId("chart-limit");
    expect(limit).toHaveAttribute("data-value", "500");
    expect(limit).toHaveAttribute("y1", "8");
    expect(cpu).toHaveAccessibleDescription(/^5 samples from .+ to .+; now 250m, peak 250m, limit 500m\.$/);
    // Each sample answers a hover with its value.
    const tips = Array.from(cpu.querySelectorAll("rect.chart-hit title")).map((t) => t.textContent);
    expect(tips).toHaveLength(5);
    expect(tips[4]).toMatch(/: 250m$/);

    const memory = screen.getByRole("img", { name: "Memory of web over the last hour" });
    expect(memory).toHaveAttribute("data-samples", "5");
    expect(within(memory).getByTestId("chart-line").getAttribute("d")).toMatch(/L300\.0,24\.0$/);

    // Without limits: no reference line, the peak is the top of the scale; cores and GiB.
    const redis = card("redis");
    expect(redis.getByTestId("usage-cpu-now")).toHaveTextContent(/^2\.25 cores$/);
    expect(redis.getByTestId("usage-memory-now")).toHaveTextContent(/^1\.5 GiB$/);
    expect(redis.getByTestId("usage-cpu-limit")).toHaveTextContent(/^no limit$/);
    expect(redis.getByTestId("usage-memory-limit")).toHaveTextContent(/^no limit$/);
    const redisCpu = redis.getByRole("img", { name: "CPU of redis over the last hour" });
    expect(within(redisCpu).queryByTestId("chart-limit")).toBeNull();
    expect(within(redisCpu).getByTestId("chart-line").getAttribute("d")).toMatch(/L300\.0,8\.0$/);
  });

  it("break the line where samples are missing", async () => {
    const s = samples([10, 20, 30, 40], [1, 2, 3, 4]);
    // The third sample came ten minutes after the second.
    const shifted = s.map((x, i) => (i < 2 ? { ...x, at: new Date(Date.parse(x.at) - 10 * 60_000).toISOString() } : x));
    show(() => ({ body: metrics({ services: [serviceUsage({ samples: shifted })] }) }));
    const cpu = await screen.findByRole("img", { name: "CPU of web over the last hour" });
    const d = within(cpu).getByTestId("chart-line").getAttribute("d") ?? "";
    expect(d.match(/M/g)).toHaveLength(2);
    expect(cpu).toHaveAttribute("data-samples", "4");
  });

  it("show the reason instead of charts when the cluster has no metrics, and the restarts all the same", async () => {
    const message = "the cluster serves no metrics API (metrics.k8s.io); install metrics-server to see CPU and memory";
    show(() => ({ body: metrics({ available: false, message, services: [serviceUsage({ restarts: 5, samples: [] })] }) }));
    expect(await screen.findByTestId("usage-unavailable")).toHaveTextContent(message);
    expect(restartsBadge("web")).toHaveTextContent("5");
    expect(restartsBadge("web")).toHaveClass("badge-warn");
    expect(card("web").getByTestId("usage-cpu-limit")).toHaveTextContent(/^limit 500m$/);
    expect(screen.queryByRole("img")).toBeNull();
    expect(screen.queryByTestId("usage-cpu-now")).toBeNull();
    expect(screen.queryByTestId("usage-no-samples")).toBeNull();
  });

  it("say when the first sample will come while there is none", async () => {
    show(() => ({ body: metrics({ intervalSeconds: 30, services: [serviceUsage({ samples: [] })] }) }));
    expect(await screen.findByTestId("usage-no-samples")).toHaveTextContent("No samples yet; the first arrives within 30 s");
    expect(screen.queryByRole("img")).toBeNull();
    expect(restartsBadge("web")).toHaveClass("badge-muted");
  });

  it("read again every interval (at least 10 s) while shown, and stop when unmounted", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    let n = 0;
    const { count, unmount } = show(() => {
      n += 1;
      // The server samples every 2 s: the UI still asks only every 10 s.
      return { body: metrics({ intervalSeconds: 2, services: [serviceUsage({ restarts: n })] }) };
    });
    await waitFor(() => expect(restartsBadge("web")).toHaveTextContent("1"));
    expect(count()).toBe(1);
    await act(() => vi.advanceTimersByTimeAsync(8_000));
    expect(count()).toBe(1);
    await act(() => vi.advanceTimersByTimeAsync(2_500));
    await waitFor(() => expect(restartsBadge("web")).toHaveTextContent("2"));
    expect(count()).toBe(2);
    await act(() => vi.advanceTimersByTimeAsync(10_000));
    await waitFor(() => expect(count()).toBe(3));
    unmount();
    await act(() => vi.advanceTimersByTimeAsync(60_000));
    expect(count()).toBe(3);
  });

  it("follow the server's interval when it is longer", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const { count } = show(() => ({ body: metrics({ intervalSeconds: 30 }) }));
    await screen.findByTestId("usage-web");
    await act(() => vi.advanceTimersByTimeAsync(20_000));
    expect(count()).toBe(1);
    await act(() => vi.advanceTimersByTimeAsync(11_000));
    await waitFor(() => expect(count()).toBe(2));
  });

  it("say what the server answered for an unknown deployment, and stop asking", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const { count } = show(() => ({ status: 404, body: { error: "deployment shop not found" } }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("No usage to show");
    expect(alert).toHaveTextContent("deployment shop not found");
    expect(within(alert).queryByRole("button", { name: "Retry" })).toBeNull();
    await act(() => vi.advanceTimersByTimeAsync(120_000));
    expect(count()).toBe(1);
  });

  it("offer a retry when reading failed, and show the readings once it works", async () => {
    let fail = true;
    show(() => (fail ? { status: 502, body: { error: "the metrics API did not answer" } } : { body: metrics() }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("CPU and memory use could not be read");
    expect(alert).toHaveTextContent("the metrics API did not answer");
    fail = false;
    await userEvent.setup().click(within(alert).getByRole("button", { name: "Retry" }));
    expect(await screen.findByRole("img", { name: "CPU of web over the last hour" })).toHaveAttribute("data-samples", "5");
  });

  it("keep the last readings when a refresh fails, and say so", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    let fail = false;
    show(() => (fail ? { status: 500, body: { error: "boom" } } : { body: metrics({ intervalSeconds: 10 }) }));
    await screen.findByRole("img", { name: "CPU of web over the last hour" });
    fail = true;
    await act(() => vi.advanceTimersByTimeAsync(10_500));
    expect(await screen.findByRole("alert")).toHaveTextContent(/The last refresh failed \(boom\); showing the readings of /);
    expect(screen.getByRole("img", { name: "CPU of web over the last hour" })).toBeInTheDocument();
  });

  it("name the field of an answer that does not follow the contract", async () => {
    const snake = { ...metrics(), intervalSeconds: undefined, interval_seconds: 60 };
    show(() => ({ body: snake }));
    expect(await screen.findByRole("alert")).toHaveTextContent("the server's metrics answer is not understood: intervalSeconds should be a number");
  });
});

describe("the metrics answer", () => {
  it("is checked field by field; unreadable samples are dropped, the rest kept", () => {
    const good = samples([1, 2], [1, 2]);
    const m = parseMetrics({
      ...metrics(),
      services: [{ ...serviceUsage(), samples: [good[0], { at: "yesterday", cpuMillicores: 1, memoryBytes: 1 }, { ...good[1], memoryBytes: null }, good[1]] }],
    });
    expect(m.services[0].samples).toEqual([good[0], good[1]]);
    expect(() => parseMetrics({ ...metrics(), services: [{ ...serviceUsage(), restarts: "3" }] })).toThrow(
      "services[0].restarts should be a number",
    );
    expect(() => parseMetrics({ ...metrics(), services: [{ ...serviceUsage(), cpuLimitMillicores: "500m" }] })).toThrow(
      "services[0].cpuLimitMillicores should be a number or null",
    );
    expect(() => parseMetrics([])).toThrow("the body should be a JSON object");
    expect(parseMetrics({ ...metrics(), services: [{ ...serviceUsage(), cpuLimitMillicores: undefined }] }).services[0].cpuLimitMillicores).toBeNull();
  });

  it("sets the polling period: the server's interval, at least 10 s, none after a 404", async () => {
    const { ApiError } = await import("../api/client");
    expect(pollMs(metrics({ intervalSeconds: 60 }), null)).toBe(60_000);
    expect(pollMs(metrics({ intervalSeconds: 1 }), null)).toBe(10_000);
    expect(pollMs(metrics({ intervalSeconds: 0 }), null)).toBe(60_000);
    expect(pollMs(undefined, new ApiError(502, "bad gateway"))).toBe(60_000);
    expect(pollMs(metrics(), new ApiError(404, "not found"))).toBe(false);
  });
});

describe("amounts", () => {
  it("write CPU in millicores below a core and in cores above", () => {
    expect([0, 0.04, 1.54, 9.96, 250.4, 999, 1000, 1500, 2250, 12_340].map(formatCpu)).toEqual([
      "0m",
      "< 0.1m",
      "1.5m",
      "10m",
      "250m",
      "999m",
      "1 core",
      "1.5 cores",
      "2.25 cores",
      "12.3 cores",
    ]);
    expect(formatCpu(Number.NaN)).toBe("—");
  });

  it("write memory in KiB, MiB and GiB", () => {
    expect([0, 300, 512 * 1024, 1.25 * MiB, 64 * MiB, 1023.4 * MiB, 1536 * MiB, 20 * 1024 * MiB].map(formatBytes)).toEqual([
      "0 MiB",
      "1 KiB",
      "512 KiB",
      "1.3 MiB",
      "64 MiB",
      "1023 MiB",
      "1.5 GiB",
      "20 GiB",
    ]);
    expect(formatBytes(-1)).toBe("—");
  });

  it("name the window", () => {
    expect([3600, 7200, 1800, 60].map(windowLabel)).toEqual(["the last hour", "the last 2 hours", "the last 30 minutes", "the last minute"]);
  });
});
