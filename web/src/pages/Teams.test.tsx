import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { validateTeamName } from "../api/teams";
import type { AuditEntry, Org } from "../api/types";
import { me, org, orgDetail, teamRef } from "../test/fixtures";
import { mockFetch, renderWithProviders } from "../test/render";
import { describeAudit, Teams } from "./Teams";

const web = teamRef({ id: "t-web", name: "Web", role: "admin" });

function page({ orgs = [org()], extra = {} }: { orgs?: Org[]; extra?: Parameters<typeof mockFetch>[0] } = {}) {
  const mock = mockFetch({
    "GET /api/me": () => ({ body: me({ teams: [web] }) }),
    "GET /api/orgs": () => ({ body: orgs }),
    "GET /api/orgs/o-acme": () => ({ body: orgDetail() }),
    ...extra,
  });
  renderWithProviders(<Teams />, { route: "/teams" });
  return { ...mock, user: userEvent.setup() };
}

describe("the Teams page", () => {
  it("lists my teams with my role, and each organization's teams, plan and limits", async () => {
    page();
    const mine = await screen.findByTestId("my-team-t-web");
    expect(within(mine).getByRole("link", { name: "Web" })).toHaveAttribute("href", "/teams/t-web");
    expect(mine).toHaveTextContent("Acme");
    expect(mine).toHaveTextContent("admin");
    expect(within(mine).getByRole("button", { name: "Switch to Acme / Web" })).toBeInTheDocument();

    const acme = await screen.findByRole("region", { name: "Acme" });
    expect(await within(acme).findByText(/allows 1 team and 1 member per team/)).toBeInTheDocument();
    const teams = within(acme).getByRole("list", { name: "Teams of Acme" });
    expect(within(teams).getByRole("link", { name: "Web" })).toHaveAttribute("href", "/teams/t-web");
    expect(teams).toHaveTextContent("1 member");
  });

  it("creates an organization with a trimmed name, and refuses an empty one without asking the server", async () => {
    const { calls, user } = page({
      orgs: [],
      extra: { "POST /api/orgs": (b) => ({ status: 201, body: { id: "o-new", name: (b as { name: string }).name, plan: "free", role: "owner" } }) },
    });
    await screen.findByText("No organizations");
    await user.click(screen.getByRole("button", { name: "Create organization" }));
    expect(screen.getByLabelText("Organization name")).toHaveAccessibleDescription("a name of 1 to 64 characters");
    expect(calls.some((c) => c.method === "POST")).toBe(false);

    await user.type(screen.getByLabelText("Organization name"), "  Initech  ");
    await user.click(screen.getByRole("button", { name: "Create organization" }));
    await waitFor(() => expect(calls.find((c) => c.method === "POST")?.body).toEqual({ name: "Initech" }));
    expect(await screen.findByText("Organization Initech created.")).toBeInTheDocument();
    // The list is read again.
    await waitFor(() => expect(calls.filter((c) => c.method === "GET" && c.path === "/api/orgs")).toHaveLength(2));
  });

  it("shows the plan's team limit exactly as the server words it", async () => {
    const limit = "the free plan allows 1 team per organization";
    const { calls, user } = page({ extra: { "POST /api/orgs/o-acme/teams": () => ({ status: 403, body: { error: limit } }) } });
    const acme = await screen.findByRole("region", { name: "Acme" });
    const form = within(acme).getByRole("form", { name: "New team in Acme" });
    await user.type(within(form).getByLabelText("New team name"), "Mobile");
    await user.click(within(form).getByRole("button", { name: "Create team" }));
    expect(await within(form).findByRole("alert")).toHaveTextContent(limit);
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({ name: "Mobile" });
  });

  it("offers a plain member of an organization neither team creation nor the audit", async () => {
    page({ orgs: [org({ role: "member" })] });
    const acme = await screen.findByRole("region", { name: "Acme" });
    await within(acme).findByRole("list", { name: "Teams of Acme" });
    expect(within(acme).queryByRole("form", { name: "New team in Acme" })).toBeNull();
    expect(within(acme).queryByRole("button", { name: "Show membership changes" })).toBeNull();
  });

  it("shows owners the organization's membership changes in words, newest first as the server sends them", async () => {
    const entries: AuditEntry[] = [
      { at: new Date().toISOString(), actor: "ada@example.com", action: "member.role_changed", team: "Web", subject: "bob@example.com", detail: "developer → viewer" },
      { at: new Date(Date.now() - 60_000).toISOString(), actor: "ada@example.com", action: "invitation.sent", team: "Web", subject: "bob@example.com", detail: null },
    ];
    const { calls, user } = page({ extra: { "GET /api/orgs/o-acme/audit": () => ({ body: entries }) } });
    const acme = await screen.findByRole("region", { name: "Acme" });
    // Read only when asked for.
    expect(calls.some((c) => c.path.endsWith("/audit"))).toBe(false);
    const toggle = within(acme).getByRole("button", { name: "Show membership changes" });
    expect(toggle).toHaveAttribute("aria-expanded", "false");
    await user.click(toggle);
    const table = await within(acme).findByRole("table", { name: "Membership changes in Acme" });
    const rows = within(table).getAllByTestId("audit-entry");
    expect(rows.map((r) => within(r).getAllByRole("cell")[2].textContent)).toEqual([
      "changed the role of bob@example.com in Web",
      "invited bob@example.com to Web",
    ]);
    expect(rows[0]).toHaveTextContent("developer → viewer");
    expect(rows[0]).toHaveTextContent("ada@example.com");
    expect(within(acme).getByRole("button", { name: "Hide membership changes" })).toHaveAttribute("aria-expanded", "true");
  });

  it("says so when I am in no team", async () => {
    mockFetch({
      "GET /api/me": () => ({ body: me() }),
      "GET /api/orgs": () => ({ body: [] }),
    });
    renderWithProviders(<Teams />);
    expect(await screen.findByText("You are in no team yet")).toBeInTheDocument();
  });
});

describe("team and organization names", () => {
  it("are 1 to 64 characters after trimming, counted as characters", () => {
    expect(validateTeamName("  ")).toBe("a name of 1 to 64 characters");
    expect(validateTeamName("x".repeat(65))).toBe("a name of 1 to 64 characters");
    expect(validateTeamName("🚀".repeat(64))).toBeNull();
    expect(validateTeamName("a\u0007b")).toBe("printable characters only");
    expect(validateTeamName(" Web ")).toBeNull();
  });
});

describe("audit entries in words", () => {
  const e = (action: string, over: Partial<AuditEntry> = {}): AuditEntry => ({
    at: "2026-11-30T12:00:00Z",
    actor: "ada@example.com",
    action,
    team: "Web",
    subject: "bob@example.com",
    detail: null,
    ...over,
  });
  it("name the team and the person", () => {
    expect(describeAudit(e("team.created", { subject: null }))).toBe("created team Web");
    expect(describeAudit(e("member.removed"))).toBe("removed bob@example.com from Web");
    expect(describeAudit(e("member.left", { subject: null }))).toBe("left Web");
    expect(describeAudit(e("invitation.revoked"))).toBe("revoked the invitation of bob@example.com to Web");
    expect(describeAudit(e("invitation.accepted"))).toBe("accepted the invitation to Web");
  });
  it("fall back to the action's name for one this UI does not know", () => {
    expect(describeAudit(e("org.renamed", { team: null, subject: null }))).toBe("org.renamed");
  });
});
