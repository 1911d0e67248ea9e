import { QueryClientProvider } from "@tanstack/react-query";
import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter } from "react-router";
import { describe, expect, it } from "vitest";
import { AppRoutes, makeQueryClient } from "../App";
import type { Me } from "../api/types";
import { deployment, me, teamRef } from "../test/fixtures";
import { mockFetch } from "../test/render";
import { pathAfterSwitch } from "./TeamSwitcher";
import { Toasts } from "./Toasts";

/** /api/events, held open: each stream the app opens is recorded. */
class FakeEventSource {
  static opened: FakeEventSource[] = [];
  static readonly CLOSED = 2;
  readyState = 1;
  onopen: (() => void) | null = null;
  onerror: (() => void) | null = null;
  constructor(readonly url: string) {
    FakeEventSource.opened.push(this);
  }
  addEventListener() {}
  close() {
    this.readyState = 2;
  }
}

const web = teamRef({ id: "t-web", name: "Web", orgName: "Acme", role: "developer" });
const ops = teamRef({ id: "t-ops", name: "Ops", orgName: "Acme", role: "viewer" });

/**
 * The whole app with a server whose session has a current team: PUT /api/me/team changes it, and
 * GET /api/deployments answers with the current sandbox's apps.
 */
function app(route: string, { fail }: { fail?: { status: number; error: string } } = {}) {
  let current: string | null = null;
  const meNow = (): Me => {
    const team = [web, ops].find((t) => t.id === current) ?? null;
    return me({ team, teams: [web, ops] });
  };
  const apps: Record<string, ReturnType<typeof deployment>[]> = {
    personal: [deployment({ name: "mine" })],
    "t-web": [deployment({ name: "team-web-app", namespace: "sandbox-team-t-web" })],
    "t-ops": [],
  };
  const mock = mockFetch({
    "GET /api/config": () => ({ body: { devMode: false } }),
    "GET /api/me": () => ({ body: meNow() }),
    "PUT /api/me/team": (b) => {
      if (fail) return { status: fail.status, body: { error: fail.error } };
      current = (b as { team: string | null }).team;
      return { body: meNow() };
    },
    "GET /api/deployments": () => ({ body: apps[current ?? "personal"] }),
    "GET /api/deployments/mine": () => ({ body: { ...deployment({ name: "mine" }), events: [], manifests: null } }),
    "GET /api/templates/guestbook": () => ({ status: 404, body: { error: "not found" } }),
  });
  FakeEventSource.opened = [];
  vi.stubGlobal("EventSource", FakeEventSource);
  // The app's own query client: its staleTime (5 s) would keep the old sandbox's lists "fresh"
  // after a switch if they were not dropped.
  render(
    <QueryClientProvider client={makeQueryClient()}>
      <Toasts>
        <MemoryRouter initialEntries={[route]}>
          <AppRoutes />
        </MemoryRouter>
      </Toasts>
    </QueryClientProvider>,
  );
  return { ...mock, user: userEvent.setup() };
}

describe("the team switcher", () => {
  it("offers Personal and each team with its organization and role, the current one chosen", async () => {
    app("/deployments");
    const select = await screen.findByRole("combobox", { name: "Current sandbox" });
    expect(select).toHaveValue("");
    expect(within(select).getAllByRole("option").map((o) => o.textContent)).toEqual([
      "Personal",
      "Acme / Web (developer)",
      "Acme / Ops (viewer)",
    ]);
  });

  it("switches the sandbox with PUT /api/me/team and shows the team's deployments, not the old ones", async () => {
    const { calls, user } = app("/deployments");
    expect(await screen.findByTestId("deployment-row-mine")).toBeInTheDocument();

    await user.selectOptions(screen.getByRole("combobox", { name: "Current sandbox" }), "Acme / Web (developer)");
    expect(await screen.findByTestId("deployment-row-team-web-app")).toBeInTheDocument();
    expect(screen.queryByTestId("deployment-row-mine")).toBeNull();
    expect(calls.find((c) => c.method === "PUT")).toMatchObject({ path: "/api/me/team", body: { team: "t-web" } });
    // The list was read again in the new sandbox, not patched from the old one.
    expect(calls.filter((c) => c.method === "GET" && c.path === "/api/deployments")).toHaveLength(2);
    expect(screen.getByRole("combobox", { name: "Current sandbox" })).toHaveValue("t-web");
    expect(await screen.findByText("Now in team Acme / Web.")).toBeInTheDocument();
    // The live stream of the old sandbox is closed and one is opened in the new one.
    expect(FakeEventSource.opened).toHaveLength(2);
    expect(FakeEventSource.opened[0].readyState).toBe(FakeEventSource.CLOSED);
    expect(FakeEventSource.opened[1].readyState).not.toBe(FakeEventSource.CLOSED);

    // And back: null is the personal sandbox.
    await user.selectOptions(screen.getByRole("combobox", { name: "Current sandbox" }), "Personal");
    expect(await screen.findByTestId("deployment-row-mine")).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "PUT").map((c) => c.body)).toEqual([{ team: "t-web" }, { team: null }]);
  });

  it("leaves a deployment's page, which belongs to the old sandbox, for the list", async () => {
    const { calls, user } = app("/deployments/mine");
    expect(await screen.findByRole("heading", { name: "mine", level: 1 })).toBeInTheDocument();
    await user.selectOptions(screen.getByRole("combobox", { name: "Current sandbox" }), "Acme / Web (developer)");
    expect(await screen.findByRole("heading", { name: "Deployments", level: 1 })).toBeInTheDocument();
    expect(await screen.findByTestId("deployment-row-team-web-app")).toBeInTheDocument();
    // The page was left before the switch took effect: it never asked the new sandbox for "mine".
    expect(calls.filter((c) => c.path === "/api/deployments/mine")).toHaveLength(1);
  });

  it("says why a switch failed and stays in the sandbox it was in", async () => {
    const { user } = app("/deployments", { fail: { status: 404, error: "team not found" } });
    expect(await screen.findByTestId("deployment-row-mine")).toBeInTheDocument();
    await user.selectOptions(screen.getByRole("combobox", { name: "Current sandbox" }), "Acme / Web (developer)");
    expect(await screen.findByText("Switching failed: team not found")).toBeInTheDocument();
    await waitFor(() => expect(screen.getByRole("combobox", { name: "Current sandbox" })).toHaveValue(""));
    expect(screen.getByTestId("deployment-row-mine")).toBeInTheDocument();
  });

  it("keeps the deployment list's address and leaves only deployment pages", () => {
    expect(pathAfterSwitch("/deployments/guestbook-ab12")).toBe("/deployments");
    expect(pathAfterSwitch("/deployments")).toBeNull();
    expect(pathAfterSwitch("/teams/t-web")).toBeNull();
  });

  it("puts Teams in the navigation", async () => {
    app("/deployments");
    const nav = await screen.findByRole("navigation", { name: "Main" });
    expect(within(nav).getByRole("link", { name: "Teams" })).toHaveAttribute("href", "/teams");
  });
});
