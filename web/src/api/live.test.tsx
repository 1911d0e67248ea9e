import { act, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { Deployments } from "../pages/Deployments";
import { deployment, me } from "../test/fixtures";
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

  it("a list read answered before a deletion does not bring the deleted app back", async () => {
    vi.stubGlobal("EventSource", FakeEventSource);
    // The first list answers at once; the second (the refetch after a delete) only when released.
    const answers = [[deployment({ name: "web" })], [deployment({ name: "web", phase: "Deleting" })], []];
    let release: (() => void) | null = null;
    const gets: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (input: RequestInfo | URL) => {
        const url = String(input);
        if (url !== "/api/deployments") {
          const other = url === "/api/me" ? me() : {};
          return new Response(JSON.stringify(other), { status: 200, headers: { "Content-Type": "application/json" } });
        }
        gets.push(url);
        const body = answers[Math.min(gets.length - 1, answers.length - 1)];
        if (gets.length === 2) await new Promise<void>((r) => (release = r));
        return new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" } });
      }),
    );
    const { client } = renderWithProviders(
      <LiveUpdates>
        <Deployments />
      </LiveUpdates>,
    );
    expect(await screen.findByTestId("deployment-row-web")).toBeInTheDocument();
    const es = FakeEventSource.last!;
    act(() => es.onopen?.());
    // The page deletes the app and reads the list again; the server's deletion event comes first.
    act(() => void client.invalidateQueries({ queryKey: ["deployments"] }));
    await vi.waitFor(() => expect(gets).toHaveLength(2));
    act(() => es.emit("deployment", { type: "deleted", name: "web" }));
    await act(async () => release?.());
    expect(await screen.findByText("No deployments yet")).toBeInTheDocument();
    await vi.waitFor(() => expect(gets).toHaveLength(3));
    expect(screen.queryByTestId("deployment-row-web")).toBeNull();
  });
});
