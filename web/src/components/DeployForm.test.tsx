import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { DeployForm } from "./DeployForm";
import { guestbook } from "../test/fixtures";
import { mockFetch, renderWithProviders } from "../test/render";

function setup() {
  const onDeployed = vi.fn();
  renderWithProviders(<DeployForm template={guestbook} onDeployed={onDeployed} initialName="guestbook-test" />);
  return { onDeployed, user: userEvent.setup() };
}

describe("the deploy form generated from a template's parameters", () => {
  it("renders one labelled field per parameter with its default, type and masking", () => {
    mockFetch({});
    setup();
    const title = screen.getByLabelText(/TITLE/);
    expect(title).toHaveAttribute("type", "text");
    expect(title).toHaveValue("");
    expect(title).toHaveAttribute("aria-required", "true");

    // Enum: a select with the allowed values and the default chosen.
    const level = screen.getByLabelText(/LOG_LEVEL/) as HTMLSelectElement;
    expect(level.tagName).toBe("SELECT");
    expect(level).toHaveValue("info");
    expect(Array.from(level.options).map((o) => o.value)).toEqual(["", "debug", "info", "warn"]);

    expect(screen.getByLabelText(/WORKERS/)).toHaveValue("2");
    expect(screen.getByLabelText(/REGION/)).toHaveAccessibleDescription(/Must match \[a-z\]\{2\}-\[a-z\]\+/);

    // Secret: masked, never autofilled, and its hint says where it goes.
    const secret = screen.getByLabelText(/REDIS_PASSWORD/);
    expect(secret).toHaveAttribute("type", "password");
    expect(secret).toHaveAttribute("autocomplete", "new-password");
    expect(secret).toHaveAccessibleDescription(/secrets API/);
  });

  it("shows a missing required parameter's error next to the field and sends nothing", async () => {
    const { calls, fn } = mockFetch({});
    const { user, onDeployed } = setup();
    await user.type(screen.getByLabelText(/REDIS_PASSWORD/), "s3cret");
    await user.click(screen.getByRole("button", { name: "Deploy" }));

    const title = screen.getByLabelText(/TITLE/);
    expect(title).toHaveAttribute("aria-invalid", "true");
    expect(title).toHaveAccessibleDescription(/TITLE is required/);
    const field = title.closest(".field") as HTMLElement;
    expect(within(field).getByText("TITLE is required")).toBeVisible();
    expect(screen.getByText("One field needs attention.")).toBeInTheDocument();
    await waitFor(() => expect(title).toHaveFocus());
    expect(fn).not.toHaveBeenCalled();
    expect(calls).toHaveLength(0);
    expect(onDeployed).not.toHaveBeenCalled();
  });

  it("checks enum, number and pattern values client-side", async () => {
    const { fn } = mockFetch({});
    const { user } = setup();
    await user.type(screen.getByLabelText(/TITLE/), "Hello");
    await user.type(screen.getByLabelText(/REDIS_PASSWORD/), "pw");
    const workers = screen.getByLabelText(/WORKERS/);
    await user.clear(workers);
    await user.type(workers, "many");
    await user.type(screen.getByLabelText(/REGION/), "Europe");
    await user.selectOptions(screen.getByLabelText(/LOG_LEVEL/), "");
    await user.click(screen.getByRole("button", { name: "Deploy" }));

    expect(screen.getByLabelText(/WORKERS/)).toHaveAccessibleDescription(/WORKERS must be a number/);
    expect(screen.getByLabelText(/REGION/)).toHaveAccessibleDescription(/REGION must match the pattern/);
    // An optional enum may be left unset.
    expect(screen.getByLabelText(/LOG_LEVEL/)).not.toHaveAttribute("aria-invalid");
    expect(screen.getByText("2 fields need attention.")).toBeInTheDocument();
    expect(fn).not.toHaveBeenCalled();

    // Fixing a value clears its error as one types.
    await user.clear(screen.getByLabelText(/REGION/));
    await user.type(screen.getByLabelText(/REGION/), "eu-west");
    expect(screen.getByLabelText(/REGION/)).not.toHaveAttribute("aria-invalid");
  });

  it("refuses a deployment name that is not a DNS label", async () => {
    const { fn } = mockFetch({});
    const { user } = setup();
    await user.type(screen.getByLabelText(/TITLE/), "Hello");
    await user.type(screen.getByLabelText(/REDIS_PASSWORD/), "pw");
    const name = screen.getByLabelText("Name");
    await user.clear(name);
    await user.type(name, "Not_OK");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    expect(name).toHaveAttribute("aria-invalid", "true");
    expect(fn).not.toHaveBeenCalled();
  });

  it("creates the deployment, then stores secret values with the secrets API, never in the deployment", async () => {
    const { calls } = mockFetch({
      "POST /api/deployments": (b) => ({ status: 201, body: { name: (b as { name: string }).name } }),
      "PUT /api/secrets/deployments/guestbook-test/REDIS_PASSWORD": () => ({ status: 201, body: {} }),
    });
    const { user, onDeployed } = setup();
    await user.type(screen.getByLabelText(/TITLE/), "My book");
    await user.type(screen.getByLabelText(/REDIS_PASSWORD/), "hunter2");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    await waitFor(() => expect(onDeployed).toHaveBeenCalled());

    const writes = calls.filter((c) => c.method !== "GET");
    expect(writes.map((c) => `${c.method} ${c.path}`)).toEqual([
      "POST /api/deployments",
      "PUT /api/secrets/deployments/guestbook-test/REDIS_PASSWORD",
    ]);
    expect(writes[0].body).toEqual({
      template: "guestbook",
      name: "guestbook-test",
      parameters: { TITLE: "My book", LOG_LEVEL: "info", WORKERS: "2" },
      secretRefs: ["REDIS_PASSWORD"],
      visibility: "public",
    });
    expect(JSON.stringify(writes[0].body)).not.toContain("hunter2");
    expect(writes[1].body).toEqual({ value: "hunter2", description: "Password of the Redis service." });
    for (const c of writes) {
      expect(c.headers["Content-Type"]).toBe("application/json");
      expect(c.credentials).toBe("same-origin");
    }
  });

  it("stores no secret when the deployment is refused, and shows the server's message", async () => {
    const { calls } = mockFetch({
      "POST /api/deployments": () => ({ status: 403, body: { error: "the free plan allows 1 deployment; delete one or upgrade your plan" } }),
    });
    const { user, onDeployed } = setup();
    await user.type(screen.getByLabelText(/TITLE/), "My book");
    await user.type(screen.getByLabelText(/REDIS_PASSWORD/), "hunter2");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    expect(await screen.findByText(/the free plan allows 1 deployment/)).toBeInTheDocument();
    // A plan limit: the way to change the plan is next to it.
    expect(screen.getByRole("link", { name: "See plans and billing" })).toHaveAttribute("href", "/billing");
    expect(calls.filter((c) => c.method === "PUT")).toHaveLength(0);
    expect(onDeployed).not.toHaveBeenCalled();
  });

  it("deletes the new deployment when a secret cannot be stored", async () => {
    const { calls } = mockFetch({
      "POST /api/deployments": (b) => ({ status: 201, body: { name: (b as { name: string }).name } }),
      "PUT /api/secrets/deployments/guestbook-test/REDIS_PASSWORD": () => ({ status: 413, body: { error: "the value is too large (SECRETS_MAX_VALUE_BYTES)" } }),
      "DELETE /api/deployments/guestbook-test": () => ({ status: 204 }),
    });
    const { user, onDeployed } = setup();
    await user.type(screen.getByLabelText(/TITLE/), "My book");
    await user.type(screen.getByLabelText(/REDIS_PASSWORD/), "hunter2");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    expect(await screen.findByText(/storing the secret REDIS_PASSWORD failed/)).toBeInTheDocument();
    expect(calls.map((c) => `${c.method} ${c.path}`)).toContain("DELETE /api/deployments/guestbook-test");
    expect(onDeployed).not.toHaveBeenCalled();
  });

  it("does not touch the secrets of an existing deployment with the same name", async () => {
    const { calls } = mockFetch({
      "POST /api/deployments": () => ({ status: 409, body: { error: "a deployment named guestbook-test exists already" } }),
    });
    const { user } = setup();
    await user.type(screen.getByLabelText(/TITLE/), "My book");
    await user.type(screen.getByLabelText(/REDIS_PASSWORD/), "hunter2");
    await user.click(screen.getByRole("button", { name: "Deploy" }));
    expect(await screen.findByText(/exists already/)).toBeInTheDocument();
    expect(calls.filter((c) => c.method === "PUT" || c.method === "DELETE")).toHaveLength(0);
  });
});
