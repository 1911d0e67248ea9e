import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { Route, Routes, useLocation } from "react-router";
import { describe, expect, it } from "vitest";
import type { InvitationPreview } from "../api/types";
import { me, teamRef } from "../test/fixtures";
import { mockFetch, renderWithProviders } from "../test/render";
import { AcceptInvitation } from "./AcceptInvitation";

const TOKEN = "tok_3x4mpl3";
const preview: InvitationPreview = {
  teamName: "Web",
  orgName: "Acme",
  role: "developer",
  email: "bob@example.com",
  invitedBy: "ada@example.com",
  expiresAt: new Date(Date.now() + 3 * 86400_000 + 60_000).toISOString(),
};
const bob = me({ user: { id: "u-bob", email: "bob@example.com", name: "Bob" } });

/** Where the page sent the browser. */
function Where() {
  const l = useLocation();
  return <p data-testid="location">{l.pathname + l.search}</p>;
}

function page(routes: Parameters<typeof mockFetch>[0]) {
  const mock = mockFetch({
    "GET /api/me": () => ({ body: bob }),
    [`GET /api/invitations/${TOKEN}`]: () => ({ body: preview }),
    ...routes,
  });
  renderWithProviders(
    <Routes>
      <Route path="/invitations/:token" element={<AcceptInvitation />} />
      <Route path="*" element={<Where />} />
    </Routes>,
    { route: `/invitations/${TOKEN}` },
  );
  return { ...mock, user: userEvent.setup() };
}

describe("the invitation page", () => {
  it("shows what accepting joins, accepts with POST, and goes to the team", async () => {
    const joined = teamRef({ id: "t-web", role: "developer" });
    const { calls, user } = page({ [`POST /api/invitations/${TOKEN}/accept`]: () => ({ body: { team: joined } }) });
    expect(await screen.findByRole("heading", { name: "Join team Web", level: 1 })).toBeInTheDocument();
    expect(screen.getByText("Acme / Web")).toBeInTheDocument();
    expect(screen.getByTestId("invitation-role")).toHaveTextContent("developer");
    expect(screen.getByText("in 3 days")).toBeInTheDocument();
    expect(screen.getByText("ada@example.com")).toBeInTheDocument();
    expect(screen.queryByRole("note")).toBeNull();

    await user.click(screen.getByRole("button", { name: "Accept and join Web" }));
    expect(await screen.findByTestId("location")).toHaveTextContent("/teams/t-web");
    expect(await screen.findByText("You joined team Acme / Web as developer; it is now your current sandbox.")).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "POST").map((c) => c.path)).toEqual([`/api/invitations/${TOKEN}/accept`]);
    // The session's current team changed: /api/me is read again.
    await waitFor(() => expect(calls.filter((c) => c.path === "/api/me")).toHaveLength(2));
  });

  it("shows a wrong account's refusal as the server words it, with a way to sign out and back in", async () => {
    const refusal = "this invitation is for another email address; sign in as that address to accept it";
    const { calls, user } = page({
      [`POST /api/invitations/${TOKEN}/accept`]: () => ({ status: 403, body: { error: refusal } }),
      "POST /logout": () => ({ status: 204 }),
    });
    await user.click(await screen.findByRole("button", { name: "Accept and join Web" }));
    expect(await screen.findByRole("alert")).toHaveTextContent(refusal);
    await user.click(screen.getByRole("button", { name: "Sign out to sign in as bob@example.com" }));
    expect(await screen.findByTestId("location")).toHaveTextContent(
      `/signin?signedOut=1&redirect=${encodeURIComponent(`/invitations/${TOKEN}`)}`,
    );
    expect(calls.some((c) => c.method === "POST" && c.path === "/logout")).toBe(true);
  });

  it("warns before accepting when signed in as another address", async () => {
    mockFetch({
      "GET /api/me": () => ({ body: me({ user: { id: "u-eve", email: "eve@example.com", name: "Eve" } }) }),
      [`GET /api/invitations/${TOKEN}`]: () => ({ body: preview }),
    });
    renderWithProviders(
      <Routes>
        <Route path="/invitations/:token" element={<AcceptInvitation />} />
      </Routes>,
      { route: `/invitations/${TOKEN}` },
    );
    expect(await screen.findByRole("note")).toHaveTextContent(
      "You are signed in as eve@example.com, but this invitation is for bob@example.com: only that address can accept it.",
    );
    expect(screen.getByRole("button", { name: "Sign out to sign in as bob@example.com" })).toBeInTheDocument();
  });

  it("says an unknown, used, revoked or expired invitation is no longer valid, with nothing to accept", async () => {
    const invalid = "this invitation is no longer valid: ask for a new one";
    page({ [`GET /api/invitations/${TOKEN}`]: () => ({ status: 404, body: { error: invalid } }) });
    expect(await screen.findByText("This invitation cannot be used")).toBeInTheDocument();
    expect(screen.getByText(invalid)).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /Accept/ })).toBeNull();
  });

  it("shows an invitation that expired between reading and accepting as the server says", async () => {
    const invalid = "this invitation is no longer valid: ask for a new one";
    const { user } = page({ [`POST /api/invitations/${TOKEN}/accept`]: () => ({ status: 404, body: { error: invalid } }) });
    await user.click(await screen.findByRole("button", { name: "Accept and join Web" }));
    expect(await screen.findByRole("alert")).toHaveTextContent(invalid);
    expect(screen.queryByRole("button", { name: /Sign out/ })).toBeNull();
  });
});
