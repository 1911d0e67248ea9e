import type {
  Deployment,
  DeploymentMetrics,
  Invitation,
  Me,
  Org,
  OrgDetail,
  ServiceUsage,
  Team,
  TeamRef,
  Template,
  UsageSample,
} from "../api/types";

/** The guestbook example (examples/21-template-guestbook.yaml) plus a number and a pattern. */
export const guestbook: Template = {
  name: "guestbook",
  namespace: "k8s-scheduler",
  system: true,
  displayName: "Guestbook",
  description: "A web front end storing entries in Redis.",
  category: "web",
  visibility: "public",
  valid: true,
  problems: [],
  parameters: [
    { name: "TITLE", description: "Page title.", required: true, secret: false, default: null, type: "string", enum: null, pattern: null },
    { name: "LOG_LEVEL", description: "", required: false, secret: false, default: "info", type: "enum", enum: ["debug", "info", "warn"], pattern: null },
    { name: "WORKERS", description: "Worker processes.", required: false, secret: false, default: "2", type: "number", enum: null, pattern: null },
    { name: "REGION", description: "Where.", required: false, secret: false, default: null, type: "string", enum: null, pattern: "[a-z]{2}-[a-z]+" },
    { name: "REDIS_PASSWORD", description: "Password of the Redis service.", required: true, secret: true, default: null, type: "string", enum: null, pattern: null },
  ],
  services: [
    { name: "web", image: "ghcr.io/k8s-scheduler/guestbook:2.0", port: 3000 },
    { name: "redis", image: "docker.io/library/redis:7.4", port: 6379 },
  ],
};

export function deployment(over: Partial<Deployment> = {}): Deployment {
  return {
    name: "guestbook-ab12",
    namespace: "sandbox-dev",
    template: "guestbook",
    phase: "Pending",
    reason: null,
    message: null,
    url: null,
    ready: false,
    visibility: "public",
    parameters: {},
    secretRefs: [],
    imageOverrides: {},
    replicas: null,
    suspend: false,
    services: [],
    conditions: [],
    generation: 1,
    observedGeneration: null,
    createdAt: "2025-01-01T00:00:00Z",
    ...over,
  };
}

/** `cpu.length` samples `interval` seconds apart, the last at `end`; memory in MiB. */
export function samples(cpu: number[], memoryMiB: number[], { end = "2026-11-30T12:00:00Z", interval = 60 } = {}): UsageSample[] {
  const last = Date.parse(end);
  return cpu.map((c, i) => ({
    at: new Date(last - (cpu.length - 1 - i) * interval * 1000).toISOString(),
    cpuMillicores: c,
    memoryBytes: (memoryMiB[i] ?? 0) * 1024 * 1024,
  }));
}

export function serviceUsage(over: Partial<ServiceUsage> = {}): ServiceUsage {
  return {
    name: "web",
    pods: 1,
    restarts: 0,
    cpuLimitMillicores: 500,
    memoryLimitBytes: 64 * 1024 * 1024,
    samples: samples([10, 20, 100, 50, 250], [30, 32, 40, 44, 48]),
    ...over,
  };
}

/** An answer of GET /api/deployments/{name}/metrics. */
export function metrics(over: Partial<DeploymentMetrics> = {}): DeploymentMetrics {
  return {
    available: true,
    message: null,
    intervalSeconds: 60,
    windowSeconds: 3600,
    services: [serviceUsage()],
    ...over,
  };
}

// Teams (issue 16): the answers of /api/me, /api/orgs and /api/teams as the contract states them.

export function teamRef(over: Partial<TeamRef> = {}): TeamRef {
  return { id: "t-web", name: "Web", orgId: "o-acme", orgName: "Acme", role: "developer", ...over };
}

/** GET /api/me; `team` given: that team is current and `role` is the role in it. */
export function me(over: Partial<Me> = {}): Me {
  const team = over.team ?? null;
  return {
    user: { id: "u-ada", email: "ada@example.com", name: "Ada" },
    sandbox: {
      name: team ? `team-${team.id}` : "ada",
      namespace: team ? `sandbox-team-${team.id}` : "sandbox-ada",
      plan: "free",
      ready: true,
      deploymentLimit: 1,
    },
    authenticatedBy: "session",
    scopes: null,
    team,
    teams: team ? [team] : [],
    role: team ? team.role : "owner",
    ...over,
  };
}

export function org(over: Partial<Org> = {}): Org {
  return { id: "o-acme", name: "Acme", plan: "free", role: "owner", ...over };
}

export function orgDetail(over: Partial<OrgDetail> = {}): OrgDetail {
  return {
    ...org(),
    limits: { teams: 1, membersPerTeam: 1 },
    members: [{ userId: "u-ada", email: "ada@example.com", name: "Ada", role: "owner" }],
    teams: [{ id: "t-web", name: "Web", members: 1 }],
    ...over,
  };
}

export function invitation(over: Partial<Invitation> = {}): Invitation {
  const now = Date.now();
  return {
    id: "i-1",
    email: "bob@example.com",
    role: "developer",
    createdAt: new Date(now - 3600_000).toISOString(),
    expiresAt: new Date(now + 6 * 86400_000 + 3600_000).toISOString(),
    lastSentAt: new Date(now - 3600_000).toISOString(),
    invitedBy: "ada@example.com",
    ...over,
  };
}

/** GET /api/teams/{team} as its admin Ada sees it. */
export function team(over: Partial<Team> = {}): Team {
  return {
    id: "t-web",
    name: "Web",
    orgId: "o-acme",
    orgName: "Acme",
    role: "admin",
    namespace: "sandbox-team-t-web",
    members: [
      { userId: "u-ada", email: "ada@example.com", name: "Ada", role: "admin" },
      { userId: "u-bob", email: "bob@example.com", name: "Bob", role: "developer" },
    ],
    invitations: [invitation({ id: "i-1", email: "cy@example.com", role: "viewer" })],
    ...over,
  };
}
