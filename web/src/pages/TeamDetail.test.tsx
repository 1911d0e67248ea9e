import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { Route, Routes } from "react-router";
import { describe, expect, it } from "vitest";
import { until } from "../api/teams";
import type { Me, OrgRole, Team } from "../api/types";
import { me, org, team, teamRef } from "../test/fixtures";
import { mockFetch, renderWithProviders } from "../test/render";
import { TeamDetail } from "./TeamDetail";

const T = "/api/teams/t-web";

type Options = { routes?: Parameters<typeof mockFetch>[0]; meBody?: Me; orgRole?: OrgRole };

function page(view: Partial<Team> = {}, { routes = {}, meBody = me({ teams: [teamRef({ role: "admin" })] }), orgRole = "owner" }: Options = {}) {
  const mock = mockFetch({
    "GET /api/me": () => ({ body: meBody }),
    "GET /api/orgs": () => ({ body: [org({ role: orgRole })] }),
    [`GET ${T}`]: () => ({ body: team(view) }),
    ...routes,
  });
  renderWithProviders(
    <Routes>
      <Route path="/teams/:team" element={<TeamDetail />} />
      <Route path="/teams" element={<h1>All teams</h1>} />
    </Routes>,
    { route: "/teams/t-web" },
  );
  return { ...mock, user: userEvent.setup() };
}

const members = () => screen.getByRole("region", { name: "Members" });

describe("a team's page, for its admin", () => {
  it("lists the members with a role select each, and changes a role with PUT", async () => {
    const { calls, user } = page({}, {
      routes: {
        [`PUT ${T}/members/u-bob`]: (b) => ({
          body: team({ members: [team().members[0], { ...team().members[1], role: (b as { role: "viewer" }).role }] }),
        }),
      },
    });
    expect(await screen.findByRole("heading", { name: "Web", level: 1 })).toBeInTheDocument();
    const bob = within(members()).getByTestId("member-bob@example.com");
    const role = within(bob).getByRole("combobox", { name: "Role of bob@example.com" });
    expect(role).toHaveValue("developer");
    expect(within(role).getAllByRole("option").map((o) => o.textContent)).toEqual(["admin", "developer", "viewer"]);
    await user.selectOptions(role, "viewer");
    await waitFor(() => expect(calls.find((c) => c.method === "PUT")).toMatchObject({ path: `${T}/members/u-bob`, body: { role: "viewer" } }));
    await waitFor(() => expect(within(members()).getByRole("combobox", { name: "Role of bob@example.com" })).toHaveValue("viewer"));
    expect(await screen.findByText("bob@example.com is now viewer.")).toBeInTheDocument();
    // No one removes themselves here (that is Leave).
    expect(within(members()).queryByRole("button", { name: "Remove ada@example.com" })).toBeNull();
  });

  it("shows the server's refusal to leave the team without an admin", async () => {
    const lastAdmin = "the team Web needs at least one admin";
    const { user } = page({}, { routes: { [`PUT ${T}/members/u-ada`]: () => ({ status: 409, body: { error: lastAdmin } }) } });
    await screen.findByRole("heading", { name: "Web", level: 1 });
    await user.selectOptions(within(members()).getByRole("combobox", { name: "Role of ada@example.com" }), "developer");
    expect(await within(members()).findByRole("alert")).toHaveTextContent(lastAdmin);
  });

  it("removes a member after confirming", async () => {
    const { calls, user } = page({}, { routes: { [`DELETE ${T}/members/u-bob`]: () => ({ status: 204 }) } });
    await screen.findByRole("heading", { name: "Web", level: 1 });
    await user.click(within(members()).getByRole("button", { name: "Remove bob@example.com" }));
    const dialog = screen.getByRole("dialog", { name: "Remove bob@example.com from Web?" });
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);
    await user.click(within(dialog).getByRole("button", { name: "Remove member" }));
    await waitFor(() => expect(calls.some((c) => c.method === "DELETE" && c.path === `${T}/members/u-bob`)).toBe(true));
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    // The team is read again.
    await waitFor(() => expect(calls.filter((c) => c.method === "GET" && c.path === T)).toHaveLength(2));
  });

  it("invites by email with a role, and checks the address before sending", async () => {
    const { calls, user } = page({}, {
      routes: {
        [`POST ${T}/invitations`]: (b) => ({ status: 201, body: { id: "i-2", ...(b as object), createdAt: "", expiresAt: "", lastSentAt: "", invitedBy: "ada@example.com" } }),
      },
    });
    await screen.findByRole("heading", { name: "Web", level: 1 });
    const form = screen.getByRole("form", { name: "Invite someone" });
    await user.type(within(form).getByLabelText("Email"), "not-an-address");
    await user.click(within(form).getByRole("button", { name: "Send invitation" }));
    expect(within(form).getByLabelText("Email")).toHaveAccessibleDescription("an email address such as ada@example.com");
    expect(calls.some((c) => c.method === "POST")).toBe(false);

    await user.clear(within(form).getByLabelText("Email"));
    await user.type(within(form).getByLabelText("Email"), " dan@example.com ");
    expect(within(form).getByLabelText("Role")).toHaveValue("developer");
    await user.selectOptions(within(form).getByLabelText("Role"), "viewer");
    expect(within(form).getByLabelText("Role")).toHaveAccessibleDescription("A viewer reads only.");
    await user.click(within(form).getByRole("button", { name: "Send invitation" }));
    await waitFor(() => expect(calls.find((c) => c.method === "POST")?.body).toEqual({ email: "dan@example.com", role: "viewer" }));
    expect(await screen.findByText("Invitation sent to dan@example.com.")).toBeInTheDocument();
    expect(within(form).getByLabelText("Email")).toHaveValue("");
  });

  it.each([
    [403, "the free plan allows 1 member per team"],
    [409, "dan@example.com already has a pending invitation"],
  ])("shows an invitation refused with %i as the server words it", async (status, error) => {
    const { user } = page({}, { routes: { [`POST ${T}/invitations`]: () => ({ status, body: { error } }) } });
    await screen.findByRole("heading", { name: "Web", level: 1 });
    const form = screen.getByRole("form", { name: "Invite someone" });
    await user.type(within(form).getByLabelText("Email"), "dan@example.com");
    await user.click(within(form).getByRole("button", { name: "Send invitation" }));
    expect(await within(form).findByRole("alert")).toHaveTextContent(error);
  });

  it("lists pending invitations with their expiry; a resend too soon shows the server's 429 message; revoke confirms", async () => {
    const soon = "resent less than 5 minutes ago; try again at 12:05";
    const { calls, user } = page({}, {
      routes: {
        [`POST ${T}/invitations/i-1/resend`]: () => ({ status: 429, body: { error: soon } }),
        [`DELETE ${T}/invitations/i-1`]: () => ({ status: 204 }),
      },
    });
    await screen.findByRole("heading", { name: "Web", level: 1 });
    const pending = screen.getByRole("region", { name: "Pending invitations" });
    const row = within(pending).getByTestId("invitation-cy@example.com");
    expect(row).toHaveTextContent("viewer");
    expect(row).toHaveTextContent("ada@example.com");
    expect(row).toHaveTextContent("in 6 days");

    await user.click(within(row).getByRole("button", { name: "Resend the invitation to cy@example.com" }));
    expect(await within(pending).findByRole("alert")).toHaveTextContent(soon);

    await user.click(within(row).getByRole("button", { name: "Revoke the invitation to cy@example.com" }));
    await user.click(within(screen.getByRole("dialog", { name: "Revoke the invitation to cy@example.com?" })).getByRole("button", { name: "Revoke invitation" }));
    await waitFor(() => expect(calls.some((c) => c.method === "DELETE" && c.path === `${T}/invitations/i-1`)).toBe(true));
  });

  it("renames the team", async () => {
    const { calls, user } = page({}, { routes: { [`PATCH ${T}`]: (b) => ({ body: team({ name: (b as { name: string }).name }) }) } });
    await screen.findByRole("heading", { name: "Web", level: 1 });
    await user.click(screen.getByRole("button", { name: "Rename" }));
    const dialog = screen.getByRole("dialog", { name: "Rename Web" });
    const name = within(dialog).getByLabelText("Team name");
    await user.clear(name);
    await user.type(name, "Frontend");
    await user.click(within(dialog).getByRole("button", { name: "Save name" }));
    await waitFor(() => expect(calls.find((c) => c.method === "PATCH")?.body).toEqual({ name: "Frontend" }));
    expect(await screen.findByRole("heading", { name: "Frontend", level: 1 })).toBeInTheDocument();
  });

  it("deletes the team only after its name is typed, then goes to the teams list", async () => {
    const { calls, user } = page({}, { routes: { [`DELETE ${T}`]: () => ({ status: 204 }) } });
    await screen.findByRole("heading", { name: "Web", level: 1 });
    await user.click(await screen.findByRole("button", { name: "Delete team" }));
    const dialog = screen.getByRole("dialog", { name: "Delete team Web?" });
    expect(within(dialog).getByRole("button", { name: "Delete team" })).toBeDisabled();
    await user.type(within(dialog).getByLabelText(/Type .* to confirm/), "Web");
    await user.click(within(dialog).getByRole("button", { name: "Delete team" }));
    expect(await screen.findByRole("heading", { name: "All teams" })).toBeInTheDocument();
    expect(calls.some((c) => c.method === "DELETE" && c.path === T)).toBe(true);
  });
});

describe("a team's page, for others", () => {
  const dev: Me = me({ user: { id: "u-bob", email: "bob@example.com", name: "Bob" }, teams: [teamRef({ role: "developer" })] });

  it("shows a developer the members without role selects, invitations or deleting, and offers leaving", async () => {
    page({ role: "developer", invitations: [] }, { meBody: dev, orgRole: "member" });
    await screen.findByRole("heading", { name: "Web", level: 1 });
    const bob = within(members()).getByTestId("member-bob@example.com");
    expect(bob).toHaveTextContent("developer");
    expect(bob).toHaveTextContent("(you)");
    expect(within(members()).queryByRole("combobox")).toBeNull();
    expect(within(members()).queryByRole("button", { name: /^Remove/ })).toBeNull();
    expect(screen.queryByRole("form", { name: "Invite someone" })).toBeNull();
    expect(screen.queryByRole("region", { name: "Pending invitations" })).toBeNull();
    expect(screen.queryByRole("button", { name: "Rename" })).toBeNull();
    expect(screen.queryByRole("button", { name: "Delete team" })).toBeNull();
    expect(screen.getByRole("button", { name: "Leave team" })).toBeInTheDocument();
  });

  it("leaves after confirming, and goes to the teams list", async () => {
    const { calls, user } = page({ role: "developer", invitations: [] }, {
      meBody: dev,
      orgRole: "member",
      routes: { [`DELETE ${T}/members/u-bob`]: () => ({ status: 204 }) },
    });
    await screen.findByRole("heading", { name: "Web", level: 1 });
    await user.click(screen.getByRole("button", { name: "Leave team" }));
    await user.click(within(screen.getByRole("dialog", { name: "Leave team Web?" })).getByRole("button", { name: "Leave team" }));
    expect(await screen.findByRole("heading", { name: "All teams" })).toBeInTheDocument();
    expect(calls.some((c) => c.method === "DELETE" && c.path === `${T}/members/u-bob`)).toBe(true);
  });

  it("keeps the dialog open with the server's message when the last admin tries to leave", async () => {
    const lastAdmin = "you are the last admin of Web: make someone else admin first";
    const { user } = page({}, { routes: { [`DELETE ${T}/members/u-ada`]: () => ({ status: 409, body: { error: lastAdmin } }) } });
    await screen.findByRole("heading", { name: "Web", level: 1 });
    await user.click(screen.getByRole("button", { name: "Leave team" }));
    const dialog = screen.getByRole("dialog", { name: "Leave team Web?" });
    await user.click(within(dialog).getByRole("button", { name: "Leave team" }));
    expect(await within(dialog).findByRole("alert")).toHaveTextContent(lastAdmin);
    expect(screen.queryByRole("heading", { name: "All teams" })).toBeNull();
  });

  it("does not tell an outsider whether the team exists", async () => {
    mockFetch({
      "GET /api/me": () => ({ body: me() }),
      "GET /api/orgs": () => ({ body: [] }),
      [`GET ${T}`]: () => ({ status: 404, body: { error: "not found" } }),
    });
    renderWithProviders(
      <Routes>
        <Route path="/teams/:team" element={<TeamDetail />} />
      </Routes>,
      { route: "/teams/t-web" },
    );
    expect(await screen.findByText("This team does not exist, or you are not in it")).toBeInTheDocument();
  });
});

describe("an invitation's expiry in words", () => {
  const now = Date.parse("2026-11-30T12:00:00Z");
  it("counts down in days, hours or minutes, then says expired", () => {
    expect(until("2026-12-07T12:00:00Z", now)).toBe("in 7 days");
    expect(until("2026-11-30T15:30:00Z", now)).toBe("in 3 hours");
    expect(until("2026-11-30T12:00:30Z", now)).toBe("in 1 minute");
    expect(until("2026-11-30T11:59:00Z", now)).toBe("expired");
  });
});
