import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { Tokens } from "./Tokens";
import { mockFetch, renderWithProviders } from "../test/render";

const now = Math.floor(Date.now() / 1000);
const listed = [
  { id: "a", name: "ci", scopes: ["deployments:read"], createdAt: now - 100, lastUsedAt: null, expiresAt: now + 30 * 86400 },
  { id: "b", name: "old", scopes: ["deployments:read"], createdAt: now - 9000, lastUsedAt: null, expiresAt: now - 60 },
  { id: "c", name: "forever", scopes: ["deployments:read"], createdAt: now - 50, lastUsedAt: null, expiresAt: null },
];

describe("the API tokens page", () => {
  it("shows each token's expiry: a date, expired, or never", async () => {
    mockFetch({ "GET /api/tokens": () => ({ body: listed }) });
    renderWithProviders(<Tokens />);
    const ci = await screen.findByTestId("token-ci");
    expect(within(ci).getByText(new Date((now + 30 * 86400) * 1000).toLocaleDateString())).toBeInTheDocument();
    expect(within(screen.getByTestId("token-old")).getByText(/^expired /)).toBeInTheDocument();
    expect(within(screen.getByTestId("token-forever")).getAllByText("never")).toHaveLength(2);
  });

  it("sends the chosen lifetime as expiresInDays, and none for Never", async () => {
    const { calls } = mockFetch({
      "GET /api/tokens": () => ({ body: [] }),
      "POST /api/tokens": (b) => ({ status: 201, body: { ...(b as object), id: "n", token: "kst_x", createdAt: now, lastUsedAt: null, expiresAt: null } }),
    });
    renderWithProviders(<Tokens />);
    const user = userEvent.setup();
    const expiry = screen.getByLabelText("Expires after");
    expect(expiry).toHaveValue("90");
    await user.type(screen.getByLabelText("Name"), "deploy");
    await user.click(screen.getByRole("button", { name: "Create token" }));
    await waitFor(() => expect(calls.some((c) => c.method === "POST")).toBe(true));
    expect(calls.find((c) => c.method === "POST")?.body).toMatchObject({ name: "deploy", expiresInDays: 90 });

    await user.selectOptions(expiry, "Never");
    await user.type(screen.getByLabelText("Name"), "forever");
    await user.click(screen.getByRole("button", { name: "Create token" }));
    await waitFor(() => expect(calls.filter((c) => c.method === "POST")).toHaveLength(2));
    const second = calls.filter((c) => c.method === "POST")[1].body as Record<string, unknown>;
    expect(second.name).toBe("forever");
    expect("expiresInDays" in second).toBe(false);
  });
});
