// The catalog's search and category filter, kept in the address.
import { act, fireEvent, screen, within } from "@testing-library/react";
import { Route, Routes, useLocation } from "react-router";
import { describe, expect, it } from "vitest";
import { guestbook, me } from "../test/fixtures";
import { mockFetch, renderWithProviders } from "../test/render";
import { Templates } from "./Templates";

const hello = { ...guestbook, name: "hello-web", displayName: "Hello web", description: "A page that says hello." };

function Address() {
  const l = useLocation();
  return <output data-testid="address">{l.search}</output>;
}

describe("the catalog's filters", () => {
  it("clearing the search and then picking a category keeps the search cleared", async () => {
    mockFetch({ "GET /api/me": () => ({ body: me() }), "GET /api/templates": () => ({ body: [guestbook, hello] }) });
    renderWithProviders(
      <Routes>
        <Route
          path="/templates"
          element={
            <>
              <Templates />
              <Address />
            </>
          }
        />
      </Routes>,
      { route: "/templates?q=redis" },
    );
    const list = await screen.findByRole("list", { name: "Templates" });
    expect(within(list).getAllByRole("listitem")).toHaveLength(1);
    // Two changes before React renders again, as a fast user (or Playwright) makes them.
    act(() => {
      fireEvent.change(screen.getByLabelText("Search templates"), { target: { value: "" } });
      fireEvent.change(screen.getByLabelText("Category"), { target: { value: "web" } });
    });
    expect(screen.getByLabelText("Search templates")).toHaveValue("");
    expect(await within(list).findAllByRole("listitem")).toHaveLength(2);
    expect(screen.getByTestId("address")).toHaveTextContent("?category=web");
  });
});
