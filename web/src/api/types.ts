// Shapes of the k8s-scheduler API (apiserver/src/views.rs, apiserver/src/http/*.rs).

export interface FeatureFlags {
  devMode: boolean;
  kubernetesEnabled: boolean;
  reactUi: boolean;
  billingEnabled: boolean;
  emailEnabled: boolean;
  aiEnabled: boolean;
  deploymentDomain: string;
  baseUrl: string;
}

export interface User {
  id: string;
  email: string;
  name: string;
}

export interface SandboxInfo {
  name: string;
  namespace: string;
  plan: string;
  ready: boolean;
  /** null: unlimited. */
  deploymentLimit: number | null;
}

/** Deployments a plan allows (crds/src/plan.rs), for servers that do not state the limit. */
const PLAN_LIMITS: Record<string, number | null> = { free: 1, business: 10, enterprise: null };

/** The most deployments the sandbox may hold; null: unlimited. */
export function deploymentLimit(s: SandboxInfo): number | null {
  if (s.deploymentLimit !== undefined) return s.deploymentLimit;
  return PLAN_LIMITS[s.plan] ?? null;
}

export interface Me {
  user: User;
  /** The current sandbox: the user's own, or the current team's. */
  sandbox: SandboxInfo;
  authenticatedBy: "session" | "token" | "dev-mode" | string;
  scopes: string[] | null;
  /**
   * The current team; null: the user's own sandbox. The three team fields are optional because a
   * server without teams (and older test fixtures) leaves them out: the UI then behaves as before.
   */
  team?: TeamRef | null;
  /** Every team the user is in (org owners/admins: every team of their organizations, as admin). */
  teams?: TeamRef[];
  /** The caller's role in the current sandbox. */
  role?: SandboxRole;
}

/** Roles in an organization: owners and admins manage it and act as admin in each of its teams. */
export type OrgRole = "owner" | "admin" | "member";
/** Roles in a team: viewers read, developers also deploy and write secrets, admins also manage members. */
export type TeamRole = "admin" | "developer" | "viewer";
/** The caller's role in the current sandbox: "owner" of their own sandbox, or their team role. */
export type SandboxRole = "owner" | TeamRole;

export const TEAM_ROLES: readonly TeamRole[] = ["admin", "developer", "viewer"];

/** A team as GET /api/me lists it. */
export interface TeamRef {
  id: string;
  name: string;
  orgId: string;
  orgName: string;
  role: TeamRole;
}

/** GET /api/orgs. */
export interface Org {
  id: string;
  name: string;
  plan: string;
  role: OrgRole;
}

export interface OrgMember {
  userId: string;
  email: string;
  name: string;
  role: OrgRole;
}

/** GET /api/orgs/{org}. */
export interface OrgDetail extends Org {
  /** From the plan; null: unlimited. */
  limits: { teams: number | null; membersPerTeam: number | null };
  members: OrgMember[];
  teams: { id: string; name: string; members: number }[];
}

export interface TeamMember {
  userId: string;
  email: string;
  name: string;
  role: TeamRole;
}

/** A pending invitation (neither accepted, revoked nor expired). Times are RFC 3339. */
export interface Invitation {
  id: string;
  email: string;
  role: TeamRole;
  createdAt: string;
  expiresAt: string;
  lastSentAt: string;
  /** The inviting admin's email. */
  invitedBy: string;
}

/** GET /api/teams/{team}. */
export interface Team {
  id: string;
  name: string;
  orgId: string;
  orgName: string;
  role: TeamRole;
  namespace: string;
  members: TeamMember[];
  /** Only for admins; [] for everyone else. */
  invitations: Invitation[];
}

export type AuditAction =
  | "team.created"
  | "team.renamed"
  | "team.deleted"
  | "member.added"
  | "member.role_changed"
  | "member.removed"
  | "member.left"
  | "invitation.sent"
  | "invitation.resent"
  | "invitation.revoked"
  | "invitation.accepted";

/** GET /api/orgs/{org}/audit, newest first. */
export interface AuditEntry {
  at: string;
  /** Email of who did it. */
  actor: string;
  action: AuditAction | string;
  team: string | null;
  /** Email of whom it was done to. */
  subject: string | null;
  detail: string | null;
}

/** GET /api/invitations/{token}: what accepting joins. */
export interface InvitationPreview {
  teamName: string;
  orgName: string;
  role: TeamRole;
  /** The invited address: only a sign-in with this verified email can accept. */
  email: string;
  invitedBy: string;
  expiresAt: string;
}

export type ParameterType = "string" | "number" | "boolean" | "enum";

export interface Parameter {
  name: string;
  description: string;
  required: boolean;
  secret: boolean;
  default: string | null;
  type: ParameterType | string;
  enum: string[] | null;
  pattern: string | null;
}

export interface ResourceList {
  cpu?: string;
  memory?: string;
}

export interface TemplateService {
  name: string;
  image: string;
  /** Absent for a service nothing connects to (a worker): it gets no Kubernetes Service. */
  port?: number | null;
  /** Not in the API yet; shown when present. */
  resources?: { requests?: ResourceList; limits?: ResourceList } | null;
}

export interface Template {
  name: string;
  namespace: string;
  system: boolean;
  displayName: string;
  description: string;
  category: string;
  visibility: string;
  valid: boolean | null;
  problems: string[];
  parameters: Parameter[];
  services: TemplateService[];
}

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown" | string;
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface ServiceStatus {
  name: string;
  replicas: number;
  readyReplicas: number;
  /**
   * Why its pods do not become ready, while they do not: ImagePullFailed, CrashLooping, OOMKilled,
   * QuotaExceeded, Unschedulable, ProbeFailing, PodRejected, ContainerRefused, RolloutStalled.
   * Optional: views built before the server diagnosed services (and test fixtures) lack them.
   */
  reason?: string | null;
  /** One sentence saying what went wrong. */
  message?: string | null;
  /** What to do about it. */
  hint?: string | null;
}

export type Phase = "Pending" | "Provisioning" | "Ready" | "Error" | "Deleting";

export interface Deployment {
  name: string;
  namespace: string;
  template: string | null;
  phase: Phase | string;
  reason: string | null;
  message: string | null;
  /** What to do about a failure (the hint of the first failing service). */
  hint?: string | null;
  url: string | null;
  ready: boolean;
  visibility: string;
  parameters: Record<string, string>;
  secretRefs: string[];
  imageOverrides: Record<string, string>;
  replicas: number | null;
  suspend: boolean;
  services: ServiceStatus[];
  conditions: Condition[];
  generation: number;
  observedGeneration: number | null;
  createdAt: string | null;
}

export interface KubeEvent {
  type: "Normal" | "Warning" | string;
  reason: string;
  message: string;
  count: number;
  lastSeen: string | null;
}

export interface DeploymentDetail extends Deployment {
  events: KubeEvent[];
  manifests: unknown[] | null;
}

export interface CreateDeployment {
  template: string;
  name?: string;
  parameters: Record<string, string>;
  secretRefs: string[];
  visibility?: "public" | "internal";
  replicas?: number;
}

export interface UpdateDeployment {
  parameters?: Record<string, string>;
  secretRefs?: string[];
  visibility?: "public" | "internal";
  replicas?: number | null;
  suspend?: boolean;
}

export interface TokenInfo {
  id: string;
  name: string;
  scopes: string[];
  /** Unix seconds. */
  createdAt: number;
  lastUsedAt: number | null;
  /** Unix seconds from which the token no longer works; null: it does not expire. */
  expiresAt: number | null;
}

export interface CreatedToken extends TokenInfo {
  token: string;
}

export const SCOPES = [
  "deployments:read",
  "deployments:write",
  "templates:read",
  "templates:write",
  "secrets:read",
  "secrets:write",
] as const;

export type SecretScope = "user" | "template" | "deployment" | "service";

export interface SecretInfo {
  scope: SecretScope;
  template: string | null;
  deployment: string | null;
  service: string | null;
  name: string;
  description: string;
  updatedAt: string;
}

/** Where a secret lives: the parts of its path under /api/secrets. */
export interface SecretTarget {
  scope: SecretScope;
  template?: string | null;
  deployment?: string | null;
  service?: string | null;
  name: string;
}

/** Events of /api/events. */
export type DeploymentChange =
  | { type: "applied"; deployment: Deployment; name?: string }
  | { type: "deleted"; name: string };

/**
 * GET /api/deployments/{name}/metrics: restarts and CPU/memory use per service. Its fields are
 * snake_case, as the server sends them (unlike the camelCase views above).
 */
export interface DeploymentMetrics {
  /** false: the cluster serves no metrics API, or reading it failed (`message` says which). */
  available: boolean;
  /** Why there are no CPU/memory readings, one sentence; null while available. */
  message: string | null;
  /** Seconds between samples. */
  intervalSeconds: number;
  /** How far back the samples go, in seconds. */
  windowSeconds: number;
  services: ServiceUsage[];
}

export interface ServiceUsage {
  name: string;
  /** Pods of the service now. */
  pods: number;
  /** Container restarts summed over its pods now (known even when metrics are not). */
  restarts: number;
  cpuLimitMillicores: number | null;
  memoryLimitBytes: number | null;
  /** Oldest first, summed over the service's pods; may be empty. */
  samples: UsageSample[];
}

export interface UsageSample {
  /** RFC 3339. */
  at: string;
  cpuMillicores: number;
  memoryBytes: number;
}
