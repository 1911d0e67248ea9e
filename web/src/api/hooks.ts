// TanStack Query hooks: server state lives in the query cache; /api/events keeps the deployment
// entries current (see ./live.tsx).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { ApiError } from "./client";
import * as ep from "./endpoints";
import type { Deployment, DeploymentDetail, SecretTarget, UpdateDeployment } from "./types";

export const keys = {
  config: ["config"] as const,
  me: ["me"] as const,
  templates: ["templates"] as const,
  template: (name: string) => ["templates", name] as const,
  deployments: ["deployments"] as const,
  deployment: (name: string) => ["deployment", name] as const,
  manifest: (name: string) => ["deployment", name, "manifest"] as const,
  tokens: ["tokens"] as const,
  secrets: ["secrets"] as const,
};

/** Don't retry what retrying cannot fix (4xx). */
export function shouldRetry(failures: number, error: unknown): boolean {
  if (error instanceof ApiError && error.status >= 400 && error.status < 500) return false;
  return failures < 2;
}

export const useConfig = () => useQuery({ queryKey: keys.config, queryFn: ep.getConfig, staleTime: Infinity });
export const useMe = () =>
  useQuery({
    queryKey: keys.me,
    queryFn: ep.getMe,
    staleTime: 30_000,
    // A new sandbox is prepared by the controller: look again until it is ready.
    refetchInterval: (q) => (q.state.data && !q.state.data.sandbox.ready ? 3000 : false),
  });

export const useTemplates = () => useQuery({ queryKey: keys.templates, queryFn: ep.listTemplates });
export const useTemplate = (name: string) =>
  useQuery({ queryKey: keys.template(name), queryFn: () => ep.getTemplate(name), enabled: name !== "" });

export const useDeployments = () => useQuery({ queryKey: keys.deployments, queryFn: ep.listDeployments });
export const useDeployment = (name: string) =>
  useQuery({ queryKey: keys.deployment(name), queryFn: () => ep.getDeployment(name) });
export const useManifest = (name: string, enabled: boolean) =>
  useQuery({ queryKey: keys.manifest(name), queryFn: () => ep.getManifest(name), enabled, staleTime: 0 });

export const useTokens = () => useQuery({ queryKey: keys.tokens, queryFn: ep.listTokens });
export const useSecrets = () => useQuery({ queryKey: keys.secrets, queryFn: ep.listSecrets });

/** Puts a fresh deployment view into the list and the detail caches. */
export function storeDeployment(qc: ReturnType<typeof useQueryClient>, d: Deployment) {
  qc.setQueryData<Deployment[]>(keys.deployments, (list) => {
    if (!list) return list;
    const i = list.findIndex((x) => x.name === d.name);
    if (i < 0) return [...list, d];
    const next = list.slice();
    next[i] = d;
    return next;
  });
  qc.setQueryData<DeploymentDetail>(keys.deployment(d.name), (old) => (old ? { ...old, ...d } : old));
}

export function useDeploymentActions(name: string) {
  const qc = useQueryClient();
  const onSaved = (d: Deployment) => {
    storeDeployment(qc, d);
    void qc.invalidateQueries({ queryKey: keys.deployment(name) });
  };
  return {
    update: useMutation({ mutationFn: (b: UpdateDeployment) => ep.updateDeployment(name, b), onSuccess: onSaved }),
    restart: useMutation({ mutationFn: () => ep.restartDeployment(name), onSuccess: onSaved }),
    image: useMutation({
      mutationFn: (v: { service: string; image: string }) => ep.setImage(name, v.service, v.image),
      onSuccess: onSaved,
    }),
    remove: useMutation({
      mutationFn: () => ep.deleteDeployment(name),
      onSuccess: () => {
        void qc.invalidateQueries({ queryKey: keys.deployments });
        void qc.invalidateQueries({ queryKey: keys.me });
      },
    }),
  };
}

export function useDeploy() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: ep.deployTemplate,
    onSuccess: (d) => {
      storeDeployment(qc, d);
      void qc.invalidateQueries({ queryKey: keys.deployments });
      void qc.invalidateQueries({ queryKey: keys.secrets });
    },
  });
}

export function useTokenActions() {
  const qc = useQueryClient();
  const refresh = () => qc.invalidateQueries({ queryKey: keys.tokens });
  return {
    create: useMutation({
      mutationFn: (v: { name: string; scopes: string[]; expiresInDays?: number }) =>
        ep.createToken(v.name, v.scopes, v.expiresInDays),
      onSuccess: refresh,
    }),
    revoke: useMutation({ mutationFn: ep.revokeToken, onSuccess: refresh }),
  };
}

export function useSecretActions() {
  const qc = useQueryClient();
  const refresh = () => qc.invalidateQueries({ queryKey: keys.secrets });
  return {
    put: useMutation({
      mutationFn: (v: { target: SecretTarget; value: string; description: string }) =>
        ep.putSecret(v.target, v.value, v.description),
      onSuccess: refresh,
    }),
    remove: useMutation({ mutationFn: ep.deleteSecret, onSuccess: refresh }),
  };
}
