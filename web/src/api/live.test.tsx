import { act, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { Deployments } from "../pages/Deployments";
import { deployment } from "../test/fixtures";
import { mockFetch, renderWithProviders } from "../test/render";
import { LiveUpdates } from "./live";

/** A stand-in for the browser's EventSource that the test drives. */
class FakeEventSource {
  static last: FakeEventSource | null = null;
  static readonly CLOSED = 2;
  readyState = 1;
  url: string;
  onopen: (() => void) | null = null;
  onerror: (() => void) | null = null;
  private listeners: Record<string, ((e: MessageEvent<string>) => void)[]> = {};
  constructor(url: string) {
    this.url = url;
    FakeEventSource.last = this;
  }
  addEventListener(type: string, f: (e: MessageEvent<string>) => void) {
    (this.listeners[type] ??= []).push(f);
  }
  close() {
    this.readyState = 2;
  }
  emit(type: string, data: unknown) {
    for (const f of this.listeners[type] ?? []) f(new MessageEvent(type, { data: JSON.stringify(data) }));
  }
}

describe("live updates over /api/events", () => {
  it("apply snapshot, applied and deleted events to the list without refetching", async () => {
    vi.stubGlobal("EventSource", FakeEventSource);
    const { fn } = mockFetch({ "GET /api/deployments": () => ({ body: [] }) });
    renderWithProviders(
      <LiveUpdates>
        <Deployments />
      </LiveUpdates>,
    );
    expect(await screen.findByText("No deployments yet")).toBeInTheDocument();
    const es = FakeEventSource.last!;
    expect(es.url).toBe("/api/events");

    act(() => {
      es.onopen?.();
      es.emit("snapshot", { deployments: [deployment({ name: "web", phase: "Provisioning" })] });
    });
    const row = await screen.findByTestId("deployment-row-web");
    expect(row).toHaveTextContent("Provisioning");

    act(() =>
      es.emit("deployment", {
        type: "applied",
        name: "web",
        deployment: deployment({ name: "web", phase: "Ready", ready: true, url: "https://dev-web.apps.test" }),
      }),
    );
    expect(await screen.findByText("Ready")).toHaveClass("badge-ok");
    expect(screen.getByRole("link", { name: "dev-web.apps.test" })).toBeInTheDocument();

    act(() => es.emit("deployment", { type: "deleted", name: "web" }));
    expect(await screen.findByText("No deployments yet")).toBeInTheDocument();
    // One GET at the start; everything else came over the stream.
    expect(fn.mock.calls.filter(([u]) => u === "/api/deployments")).toHaveLength(1);
  });
});
