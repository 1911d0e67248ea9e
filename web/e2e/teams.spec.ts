// Teams end to end (issue 16): an admin creates an organization and a team, deploys an app in the
// team's sandbox and invites a second person by email; in a second browser context that person
// follows the link from the received message, signs in, accepts, switches to the team and sees its
// deployments; made a viewer, they see no Deploy button and the API refuses a deployment (403).
//
// It needs a server that is NOT in DEV_MODE (two people must sign in), so it runs apart from
// ui.spec.ts. What the harness provides:
// - BASE_URL: the server (its BASE_URL too, so the link in the email points at it).
// - MAILPIT_API: Mailpit's HTTP address (e.g. http://127.0.0.1:8025), which the server's SMTP
//   delivers to. Invitation links are read from it by `invitationLink`.
// - Sign-in: by default through the server's /login and the test OpenID provider of hack/oidc
//   (its page has one field, `login`; any login is an account whose verified email is the login when
//   it contains "@"). Set SIGNIN_URL_FOR to a URL template with {email} and {redirect} to sign in
//   another way (see `signIn`).
// - The organization the test creates must allow 1 team with 2 members (admin + invitee) plus a
//   pending invitation; the free plan allows 1 member per team, so the server must give new
//   organizations a bigger plan in this run, or the invitation is refused with the plan's message.
// - Optional: TEAMS_RUN_ID (default: the time in base 36) makes names and emails unique per run.
import { expect, test, type Browser, type Page } from "@playwright/test";
import path from "node:path";

const shots = process.env.SCREENSHOT_DIR ?? path.join(import.meta.dirname, "..", "test-results", "screenshots");
const run = process.env.TEAMS_RUN_ID ?? Date.now().toString(36);
const ADMIN = `teams-admin-${run}@example.com`;
const MEMBER = `teams-member-${run}@example.com`;
const ORG = `Acme ${run}`;
const TEAM = `Web ${run}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Signs `page` in as `email` and waits until it is back on `redirect` (a path of the app).
 *
 * Default: the app's own sign-in, `${BASE_URL}/login?redirect=…`, which sends the browser to the
 * OpenID provider; the test provider (hack/oidc/provider.mjs) shows a form with one field, `login`,
 * and signs in whoever is typed there, with that address as a verified email.
 *
 * With SIGNIN_URL_FOR set (e.g. `http://127.0.0.1:8081/test/login?email={email}&redirect={redirect}`),
 * the browser goes to that URL instead, with {email} and {redirect} URL-encoded, and must end up
 * signed in on `redirect`.
 */
async function signIn(page: Page, email: string, redirect: string) {
  const template = process.env.SIGNIN_URL_FOR;
  if (template) {
    await page.goto(template.replaceAll("{email}", encodeURIComponent(email)).replaceAll("{redirect}", encodeURIComponent(redirect)));
  } else {
    await page.goto(`/login?redirect=${encodeURIComponent(redirect)}`);
    const login = page.locator('input[name="login"]');
    await expect(login, "the test OpenID provider's sign-in form (hack/oidc) should be shown").toBeVisible();
    await login.fill(email);
    await page.getByRole("button", { name: "Sign in" }).click();
  }
  await expect(page).toHaveURL((u) => u.pathname === redirect.split("?")[0]);
  // Signed in as that person (not DEV_MODE's dev@localhost).
  await expect(page.getByRole("link", { name: `Account of ${email}` })).toBeVisible();
}

interface MailpitSummary {
  ID: string;
  To: { Address: string }[] | null;
  Created: string;
}

/**
 * The invitation link of the newest message to `email` in Mailpit: its list of messages
 * (GET /api/v1/messages, newest first), then each message to that address
 * (GET /api/v1/message/{ID}) until one's plain-text part holds a URL with /invitations/. Waits for
 * the outbox to deliver; fails naming what it saw.
 */
async function invitationLink(email: string, timeoutMs = 90_000): Promise<string> {
  const api = process.env.MAILPIT_API;
  if (!api) throw new Error("MAILPIT_API is not set: it must be the Mailpit HTTP address the server's SMTP delivers to");
  const deadline = Date.now() + timeoutMs;
  let seen = "no messages";
  for (;;) {
    const list = await fetch(`${api}/api/v1/messages?limit=200`);
    if (!list.ok) throw new Error(`GET ${api}/api/v1/messages: ${list.status} ${await list.text()}`);
    const { messages } = (await list.json()) as { messages: MailpitSummary[] };
    const mine = messages.filter((m) => (m.To ?? []).some((t) => t.Address.toLowerCase() === email.toLowerCase()));
    seen = `${messages.length} message(s), ${mine.length} to ${email}`;
    for (const m of mine) {
      const r = await fetch(`${api}/api/v1/message/${encodeURIComponent(m.ID)}`);
      if (!r.ok) throw new Error(`GET ${api}/api/v1/message/${m.ID}: ${r.status} ${await r.text()}`);
      const { Text } = (await r.json()) as { Text: string };
      const url = /https?:\/\/[^\s<>"')\]]*\/invitations\/[^\s<>"')\]]+/.exec(Text ?? "")?.[0];
      if (url) return url;
      seen += `; message ${m.ID} has no /invitations/ link in its text part`;
    }
    if (Date.now() > deadline) throw new Error(`no invitation link for ${email} in Mailpit within ${timeoutMs / 1000} s (${seen})`);
    await sleep(1000);
  }
}

/** A new browser context (its own cookies: another person) with its problems recorded. */
async function person(browser: Browser, problems: string[], who: string) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`${who}: page error: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 500) problems.push(`${who}: ${r.status()} from ${r.request().method()} ${r.url()}`);
  });
  return { context, page };
}

async function shot(page: Page, name: string) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true, animations: "disabled", style: ".toasts { display: none; }" });
}

test("an admin invites a second person, who accepts, switches to the team and sees its deployments; a viewer cannot deploy", async ({
  browser,
}) => {
  expect(process.env.MAILPIT_API, "MAILPIT_API (Mailpit's HTTP address) must be set").toBeTruthy();
  const problems: string[] = [];
  const admin = await person(browser, problems, "admin");
  const member = await person(browser, problems, "member");
  let teamId = "";
  try {
    // The admin: an organization, a team in it.
    const a = admin.page;
    await signIn(a, ADMIN, "/teams");
    await expect(a.getByRole("heading", { name: "Teams", level: 1 })).toBeVisible();
    await a.getByLabel("Organization name").fill(ORG);
    await a.getByRole("button", { name: "Create organization" }).click();
    const org = a.getByRole("region", { name: ORG });
    await expect(org).toBeVisible();
    const newTeam = org.getByRole("form", { name: `New team in ${ORG}` });
    await newTeam.getByLabel("New team name").fill(TEAM);
    await newTeam.getByRole("button", { name: "Create team" }).click();
    await org.getByRole("list", { name: `Teams of ${ORG}` }).getByRole("link", { name: TEAM }).click();
    await expect(a.getByRole("heading", { name: TEAM, level: 1 })).toBeVisible();
    teamId = decodeURIComponent(new URL(a.url()).pathname.split("/").pop() ?? "");
    expect(teamId).not.toBe("");

    // An app in the team's sandbox, deployed by the admin through the UI.
    const switcher = a.getByRole("combobox", { name: "Current sandbox" });
    await switcher.selectOption({ label: `${ORG} / ${TEAM} (admin)` });
    await expect(switcher).toHaveValue(teamId);
    await a.goto("/templates/hello-web/deploy");
    const app = await a.getByLabel("Name").inputValue();
    await a.getByRole("button", { name: "Deploy", exact: true }).click();
    // The team's sandbox may still be being prepared: deploying waits for it.
    await expect(a).toHaveURL(new RegExp(`/deployments/${app}$`), { timeout: 150_000 });

    // The invitation, by email, as a developer.
    await a.goto(`/teams/${encodeURIComponent(teamId)}`);
    const invite = a.getByRole("form", { name: "Invite someone" });
    await invite.getByLabel("Email").fill(MEMBER);
    await invite.getByLabel("Role").selectOption("developer");
    await invite.getByRole("button", { name: "Send invitation" }).click();
    // Listed as pending, or refused (e.g. the plan's members per team): then the server's words.
    const refusal = invite.getByRole("alert");
    await expect(a.getByTestId(`invitation-${MEMBER}`).or(refusal)).toBeVisible();
    if ((await refusal.count()) > 0) throw new Error(`the server refused the invitation: ${await refusal.innerText()}`);
    await expect(a.getByTestId(`invitation-${MEMBER}`)).toContainText("developer");
    await shot(a, "teams-01-team-admin");

    const link = await invitationLink(MEMBER);
    // The link uses the server's BASE_URL.
    expect(new URL(link).origin).toBe(new URL(process.env.BASE_URL ?? a.url()).origin);
    const invitationPath = new URL(link).pathname;

    // The second person: signs in from the link, sees what they join, accepts.
    const m = member.page;
    await signIn(m, MEMBER, invitationPath);
    await expect(m.getByRole("heading", { name: `Join team ${TEAM}`, level: 1 })).toBeVisible();
    await expect(m.getByTestId("invitation-role")).toHaveText("developer");
    await shot(m, "teams-02-accept");
    await m.getByRole("button", { name: `Accept and join ${TEAM}` }).click();
    await expect(m).toHaveURL(new RegExp(`/teams/${encodeURIComponent(teamId)}$`));
    await expect(m.getByTestId(`member-${MEMBER}`)).toContainText("developer");

    // Switches to the team (away and back, with the header's switcher) and sees its deployments.
    const theirs = m.getByRole("combobox", { name: "Current sandbox" });
    await expect(theirs).toHaveValue(teamId);
    await theirs.selectOption({ label: "Personal" });
    await expect(theirs).toHaveValue("");
    await theirs.selectOption({ label: `${ORG} / ${TEAM} (developer)` });
    await expect(theirs).toHaveValue(teamId);
    await m.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Deployments", exact: true }).click();
    await expect(m.getByTestId(`deployment-row-${app}`)).toBeVisible();
    await expect(m.getByRole("link", { name: "New deployment" })).toBeVisible();
    await shot(m, "teams-03-member-deployments");

    // The admin makes them a viewer; the audit shows the membership changes.
    const row = a.getByTestId(`member-${MEMBER}`);
    await a.reload();
    await row.getByRole("combobox", { name: `Role of ${MEMBER}` }).selectOption("viewer");
    await expect(a.getByText(`${MEMBER} is now viewer.`)).toBeVisible();
    await a.goto("/teams");
    const orgAgain = a.getByRole("region", { name: ORG });
    await orgAgain.getByRole("button", { name: "Show membership changes" }).click();
    const audit = orgAgain.getByRole("table", { name: `Membership changes in ${ORG}` });
    await expect(audit).toContainText(`invited ${MEMBER} to ${TEAM}`);
    await expect(audit).toContainText(`accepted the invitation to ${TEAM}`);
    await expect(audit).toContainText(`changed the role of ${MEMBER} in ${TEAM}`);
    await shot(a, "teams-04-audit");

    // As a viewer: the deployments, but no Deploy anywhere, and the API refuses with 403.
    await m.goto("/deployments");
    await expect(m.getByTestId(`deployment-row-${app}`)).toBeVisible();
    await expect(m.getByTestId("viewer-note")).toContainText(`You are a viewer in team ${TEAM}`);
    await expect(m.getByRole("link", { name: "New deployment" })).toHaveCount(0);
    await m.goto("/templates/hello-web");
    await expect(m.getByRole("heading", { name: "Hello web", level: 1 })).toBeVisible();
    await expect(m.getByRole("link", { name: "Deploy", exact: true })).toHaveCount(0);
    await expect(m.getByRole("button", { name: "Deploy", exact: true })).toHaveCount(0);
    await m.goto(`/deployments/${app}`);
    await expect(m.getByRole("heading", { name: app, level: 1 })).toBeVisible();
    await expect(m.getByRole("button", { name: "Restart", exact: true })).toHaveCount(0);
    await expect(m.getByRole("button", { name: "Delete", exact: true })).toHaveCount(0);
    await shot(m, "teams-05-viewer-deployment");
    const refused = await m.evaluate(async () => {
      // As the UI sends it: JSON from the same origin (the server's CSRF rule).
      const r = await fetch("/api/deployments", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        credentials: "same-origin",
        body: JSON.stringify({ template: "hello-web", name: "viewer-try", parameters: {}, secretRefs: [] }),
      });
      return { status: r.status, text: await r.text() };
    });
    expect(refused.status, refused.text).toBe(403);
    expect(refused.text).toContain("developer");
  } finally {
    // The team's sandbox and its app go with the team; a failed step must not leave them behind.
    if (teamId) {
      await admin.page
        .evaluate(async (id) => {
          await fetch(`/api/teams/${encodeURIComponent(id)}`, { method: "DELETE", headers: { "Content-Type": "application/json" } });
        }, teamId)
        .catch(() => undefined);
    }
    await member.context.close();
    await admin.context.close();
  }
  expect(problems).toEqual([]);
});
