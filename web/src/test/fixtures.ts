import type { Deployment, Template } from "../api/types";

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
