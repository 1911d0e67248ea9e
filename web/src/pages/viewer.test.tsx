// A team viewer reads and is offered nothing the server would refuse: no Deploy, edit, restart,
// delete or secret writes, and one note saying which role would allow them. A developer of the same
// team keeps every action (so that each check here can fail).
import { screen, within } from "@testing-library/react";
import type { ReactElement } from "react";
import { Route, Routes } from "react-router";
import { describe, expect, it } from "vitest";
import type { SecretInfo, TeamRole } from "../api/types";
import { deployment, guestbook, me, metrics, teamRef } from "../test/fixtures";
import { mockFetch, renderWithProviders } from "../test/render";
import { Dashboard } from "./Dashboard";
import { Deploy } from "./Deploy";
import { DeploymentDetail } from "./DeploymentDetail";
import { Deployments } from "./Deployments";
import { Secrets } from "./Secrets";
import { TemplateDetail } from "./TemplateDetail";
import { Templates } from "./Templates";

const NOTE = "You are a viewer in team Web: ask an admin for the developer role to";
const secret: SecretInfo = { scope: "user", template: null, deployment: null, service: null, name: "API_KEY", description: "", updatedAt: "2026-11-30T12:00:00Z" };

function as(role: TeamRole, ui: ReactElement, route = "/") {
  mockFetch({
    "GET /api/me": () => ({ body: me({ team: teamRef({ name: "Web", role }) }) }),
    "GET /api/config": () => ({ body: { kubernetesEnabled: false } }),
    "GET /api/deployments": () => ({ body: [deployment({ name: "shop" })] }),
    "GET /api/deployments/shop": () => ({
      body: { ...deployment({ name: "shop", parameters: { TITLE: "Shop" }, services: [{ name: "web", replicas: 1, readyReplicas: 1 }] }), events: [], manifests: null },
    }),
    "GET /api/deployments/shop/metrics": () => ({ body: metrics() }),
    "GET /api/templates": () => ({ body: [guestbook] }),
    "GET /api/templates/guestbook": () => ({ body: guestbook }),
    "GET /api/secrets": () => ({ body: [secret] }),
  });
  renderWithProviders(
    <Routes>
      <Route path="/" element={ui} />
      <Route path="/deployments/:name" element={ui} />
      <Route path="/templates/:name" element={ui} />
      <Route path="/templates/:name/deploy" element={ui} />
    </Routes>,
    { route },
  );
}

/** The viewer's note, once /api/me has answered. */
const note = () => screen.findByTestId("viewer-note");

describe("a team viewer", () => {
  it("sees the deployments without New deployment", async () => {
    as("viewer", <Deployments />);
    expect(await note()).toHaveTextContent(`${NOTE} deploy.`);
    expect(await screen.findByTestId("deployment-row-shop")).toBeInTheDocument();
    expect(screen.queryByRole("link", { name: "New deployment" })).toBeNull();
  });

  it("sees the dashboard without New deployment", async () => {
    as("viewer", <Dashboard />);
    expect(await note()).toBeInTheDocument();
    expect(screen.getByTestId("sandbox-owner")).toHaveTextContent("Team Acme / Web · you are viewer");
    expect(screen.queryByRole("link", { name: "New deployment" })).toBeNull();
  });

  it("sees a template without Deploy, and the deploy address without the form", async () => {
    as("viewer", <TemplateDetail />, "/templates/guestbook");
    expect(await screen.findByRole("heading", { name: "Guestbook", level: 1 })).toBeInTheDocument();
    expect(await note()).toBeInTheDocument();
    expect(screen.queryByRole("link", { name: "Deploy" })).toBeNull();
    expect(screen.queryByRole("button", { name: "Deploy" })).toBeNull();
  });

  it("reaching the deploy page by its address gets the note, not a form the server would refuse", async () => {
    as("viewer", <Deploy />, "/templates/guestbook/deploy");
    expect(await note()).toBeInTheDocument();
    expect(screen.queryByRole("form")).toBeNull();
    expect(screen.queryByRole("button", { name: "Deploy" })).toBeNull();
    expect(screen.getByRole("link", { name: "Back to the template" })).toHaveAttribute("href", "/templates/guestbook");
  });

  it("sees a deployment without Restart, Delete, new images or configuration changes, but with its YAML", async () => {
    as("viewer", <DeploymentDetail />, "/deployments/shop");
    expect(await screen.findByRole("heading", { name: "shop", level: 1 })).toBeInTheDocument();
    expect(await note()).toHaveTextContent(`${NOTE} deploy or change this app.`);
    for (const name of ["Restart", "Delete", "Deploy a new image", "Save configuration", "Discard changes"]) {
      expect(screen.queryAllByRole("button", { name })).toEqual([]);
    }
    expect(screen.getByRole("button", { name: "View as YAML" })).toBeInTheDocument();
    // The configuration is shown, read only.
    const config = screen.getByRole("region", { name: "Configuration" });
    expect(within(config).getByText("TITLE")).toBeInTheDocument();
    expect(within(config).getByText("Shop")).toBeInTheDocument();
    expect(within(config).queryByRole("textbox")).toBeNull();
  });

  it("sees which secrets exist but cannot store, replace or delete one", async () => {
    as("viewer", <Secrets />);
    expect(await screen.findByTestId("secret-API_KEY")).toBeInTheDocument();
    expect(await note()).toHaveTextContent(`${NOTE} change secrets.`);
    expect(screen.queryByRole("button", { name: "New secret" })).toBeNull();
    expect(screen.queryByRole("button", { name: /^Replace the value of/ })).toBeNull();
    expect(screen.queryByRole("button", { name: /^Delete / })).toBeNull();
  });

  it("sees the catalog with the note", async () => {
    as("viewer", <Templates />);
    expect(await note()).toBeInTheDocument();
  });
});

describe("a team developer", () => {
  it("keeps every action and sees no note", async () => {
    as("developer", <Deployments />);
    expect(await screen.findByRole("link", { name: "New deployment" })).toBeInTheDocument();
    expect(screen.queryByTestId("viewer-note")).toBeNull();
  });

  it("keeps Restart, Delete, new images and the configuration form", async () => {
    as("developer", <DeploymentDetail />, "/deployments/shop");
    expect(await screen.findByRole("heading", { name: "shop", level: 1 })).toBeInTheDocument();
    expect(await screen.findByRole("button", { name: "Restart" })).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Delete" })).toBeInTheDocument();
    // One per service of the guestbook (web, redis).
    expect(screen.getAllByRole("button", { name: "Deploy a new image" })).toHaveLength(2);
    expect(await screen.findByRole("button", { name: "Save configuration" })).toBeInTheDocument();
    expect(screen.queryByTestId("viewer-note")).toBeNull();
  });

  it("keeps Deploy on a template", async () => {
    as("developer", <TemplateDetail />, "/templates/guestbook");
    expect(await screen.findByRole("link", { name: "Deploy" })).toBeInTheDocument();
  });

  it("keeps the secrets' actions", async () => {
    as("developer", <Secrets />);
    expect(await screen.findByRole("button", { name: "New secret" })).toBeInTheDocument();
    expect(await screen.findByRole("button", { name: "Delete API_KEY (account)" })).toBeInTheDocument();
  });
});
