// Every API call the UI makes, as plain functions (hooks in ./hooks.ts wrap them).
import { api, ApiError, retryUnavailable } from "./client";
import type {
  CreateDeployment,
  CreatedToken,
  Deployment,
  DeploymentDetail,
  FeatureFlags,
  Invitation,
  InvitationPreview,
  Me,
  Org,
  OrgDetail,
  AuditEntry,
  Team,
  TeamRef,
  TeamRole,
  Parameter,
  SecretInfo,
  SecretTarget,
  Template,
  TokenInfo,
  UpdateDeployment,
} from "./types";

const seg = encodeURIComponent;

export const getConfig = () => api<FeatureFlags>("/api/config");
export const getMe = () => api<Me>("/api/me");
export const logout = () => api<void>("/logout", { method: "POST", as: "none" });
/** Makes a team (or, with null, the user's own sandbox) the session's current sandbox. */
export const setCurrentTeam = (team: string | null) => api<Me>("/api/me/team", { method: "PUT", body: { team } });

export const listTemplates = () => api<Template[]>("/api/templates");
export const getTemplate = (name: string) => api<Template>(`/api/templates/${seg(name)}`);

export const listDeployments = () => api<Deployment[]>("/api/deployments");
export const getDeployment = (name: string) => api<DeploymentDetail>(`/api/deployments/${seg(name)}`);
export const getManifest = (name: string) =>
  api<string>(`/api/deployments/${seg(name)}/manifest`, { as: "text" });
export const createDeployment = (body: CreateDeployment) =>
  api<Deployment>("/api/deployments", { method: "POST", body });
export const updateDeployment = (name: string, body: UpdateDeployment) =>
  api<Deployment>(`/api/deployments/${seg(name)}`, { method: "PATCH", body });
export const restartDeployment = (name: string) =>
  api<Deployment>(`/api/deployments/${seg(name)}/restart`, { method: "POST" });
export const setImage = (name: string, service: string, image: string) =>
  api<Deployment>(`/api/deployments/${seg(name)}/image`, { method: "POST", body: { service, image } });
export const deleteDeployment = (name: string) =>
  api<void>(`/api/deployments/${seg(name)}`, { method: "DELETE", as: "none" });

export const listTokens = () => api<TokenInfo[]>("/api/tokens");
export const createToken = (name: string, scopes: string[], expiresInDays?: number) =>
  api<CreatedToken>("/api/tokens", {
    method: "POST",
    body: expiresInDays === undefined ? { name, scopes } : { name, scopes, expiresInDays },
  });
export const revokeToken = (id: string) => api<void>(`/api/tokens/${seg(id)}`, { method: "DELETE", as: "none" });

/** The path of a secret under /api/secrets. */
export function secretPath(t: SecretTarget): string {
  switch (t.scope) {
    case "user":
      return `/api/secrets/user/${seg(t.name)}`;
    case "template":
      return `/api/secrets/templates/${seg(t.template ?? "")}/${seg(t.name)}`;
    case "deployment":
      return `/api/secrets/deployments/${seg(t.deployment ?? "")}/${seg(t.name)}`;
    case "service":
      return `/api/secrets/deployments/${seg(t.deployment ?? "")}/services/${seg(t.service ?? "")}/${seg(t.name)}`;
  }
}

export const listSecrets = () => api<SecretInfo[]>("/api/secrets");
export const putSecret = (t: SecretTarget, value: string, description: string) =>
  api<SecretInfo>(secretPath(t), { method: "PUT", body: { value, description } });
export const deleteSecret = (t: SecretTarget) => api<void>(secretPath(t), { method: "DELETE", as: "none" });

export interface DeployRequest {
  template: string;
  name: string;
  parameters: Parameter[];
  /** Values by parameter name, secret ones included (they never reach the deployment). */
  values: Record<string, string>;
  visibility: "public" | "internal";
}

/**
 * Deploys a template: the deployment is created first, with the non-secret parameters and the
 * secret names in `secretRefs`; then each secret parameter's value is stored with the secrets API
 * under the deployment's name (the server accepts a deployment's secrets only once it exists, and
 * delivers them to its pods). When storing a secret fails, the new deployment is deleted again
 * (its stored secrets go with it). A name that is taken is refused by the create (409), so the
 * secrets of another deployment are never touched.
 */
export async function deployTemplate(req: DeployRequest): Promise<Deployment> {
  const parameters: Record<string, string> = {};
  const secrets: { name: string; value: string; description: string }[] = [];
  for (const p of req.parameters) {
    const v = req.values[p.name] ?? "";
    if (v === "") continue;
    if (p.secret) secrets.push({ name: p.name, value: v, description: p.description });
    else parameters[p.name] = v;
  }
  const created = await retryUnavailable(
    () =>
      createDeployment({
        template: req.template,
        name: req.name,
        parameters,
        secretRefs: secrets.map((s) => s.name),
        visibility: req.visibility,
      }),
    // A new sandbox can take a while (the quota controller counts it first): up to two minutes.
    60,
    2000,
  );
  for (const s of secrets) {
    const target: SecretTarget = { scope: "deployment", deployment: created.name, name: s.name };
    try {
      await retryUnavailable(() => putSecret(target, s.value, s.description), 5);
    } catch (e) {
      await deleteDeployment(created.name).catch(() => undefined);
      const status = e instanceof ApiError ? e.status : 0;
      throw new ApiError(status, `storing the secret ${s.name} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return created;
}

// Organizations, teams, members and invitations (issue 16).

export const listOrgs = () => api<Org[]>("/api/orgs");
export const createOrg = (name: string) => api<Org>("/api/orgs", { method: "POST", body: { name } });
export const getOrg = (org: string) => api<OrgDetail>(`/api/orgs/${seg(org)}`);
export const getOrgAudit = (org: string) => api<AuditEntry[]>(`/api/orgs/${seg(org)}/audit`);

export const createTeam = (org: string, name: string) =>
  api<Team>(`/api/orgs/${seg(org)}/teams`, { method: "POST", body: { name } });
export const getTeam = (team: string) => api<Team>(`/api/teams/${seg(team)}`);
export const renameTeam = (team: string, name: string) =>
  api<Team>(`/api/teams/${seg(team)}`, { method: "PATCH", body: { name } });
export const deleteTeam = (team: string) => api<void>(`/api/teams/${seg(team)}`, { method: "DELETE", as: "none" });

export const setMemberRole = (team: string, userId: string, role: TeamRole) =>
  api<Team>(`/api/teams/${seg(team)}/members/${seg(userId)}`, { method: "PUT", body: { role } });
/** Removes a member; with one's own id, leaves the team. */
export const removeMember = (team: string, userId: string) =>
  api<void>(`/api/teams/${seg(team)}/members/${seg(userId)}`, { method: "DELETE", as: "none" });

export const inviteMember = (team: string, email: string, role: TeamRole) =>
  api<Invitation>(`/api/teams/${seg(team)}/invitations`, { method: "POST", body: { email, role } });
export const resendInvitation = (team: string, id: string) =>
  api<void>(`/api/teams/${seg(team)}/invitations/${seg(id)}/resend`, { method: "POST", as: "none" });
export const revokeInvitation = (team: string, id: string) =>
  api<void>(`/api/teams/${seg(team)}/invitations/${seg(id)}`, { method: "DELETE", as: "none" });

export const getInvitation = (token: string) => api<InvitationPreview>(`/api/invitations/${seg(token)}`);
/** Joins the team; the session's current sandbox becomes the team's. */
export const acceptInvitation = (token: string) =>
  api<{ team: TeamRef }>(`/api/invitations/${seg(token)}/accept`, { method: "POST" });
