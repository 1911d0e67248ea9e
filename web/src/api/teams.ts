// Organizations, teams and the current sandbox (issue 16): query hooks, the sandbox switch, and
// what a role may do. The plain calls are in ./endpoints.ts.
import { useMutation, useQuery, useQueryClient, type QueryClient } from "@tanstack/react-query";
import * as ep from "./endpoints";
import { keys, useMe } from "./hooks";
import type { Me, Org, Team, TeamRef, TeamRole } from "./types";

export const teamKeys = {
  orgs: ["orgs"] as const,
  org: (id: string) => ["orgs", id] as const,
  audit: (id: string) => ["orgs", id, "audit"] as const,
  team: (id: string) => ["teams", id] as const,
  invitation: (token: string) => ["invitation", token] as const,
};

/**
 * Query keys whose data does not depend on the current sandbox. Everything else (deployments,
 * templates, secrets, tokens, logs, metrics, …) was read in one sandbox and is dropped on a switch.
 */
const SANDBOX_INDEPENDENT = new Set<unknown>([keys.config[0], keys.me[0], teamKeys.orgs[0], "teams", "invitation"]);

/**
 * After the session's current sandbox changed: drops what was read in the old one, then stores
 * (or, without `me`, refetches) /api/me. The data is removed rather than refetched in place so
 * that no page shows the old sandbox's deployments under the new team's name, not even for the
 * moment a refetch takes; App's SandboxScope remounts the pages (and the /api/events stream) when
 * `me.team` changes, and they read afresh.
 */
export async function enterSandbox(qc: QueryClient, me?: Me): Promise<void> {
  qc.removeQueries({ predicate: (q) => !SANDBOX_INDEPENDENT.has(q.queryKey[0]) });
  if (me) qc.setQueryData(keys.me, me);
  else await qc.invalidateQueries({ queryKey: keys.me });
}

/**
 * PUT /api/me/team, then the switch of every cached view (see [`enterSandbox`]). `before` runs
 * between the two, e.g. to leave a page that names something of the old sandbox before the pages
 * remount.
 */
export function useSwitchTeam() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: async ({ team, before }: { team: string | null; before?: (me: Me) => void | Promise<void> }) => {
      const me = await ep.setCurrentTeam(team);
      await before?.(me);
      await enterSandbox(qc, me);
      return me;
    },
  });
}

/** How a sandbox is named to people: "Personal" or "Org / Team". */
export function sandboxLabel(team: Pick<TeamRef, "name" | "orgName"> | null | undefined): string {
  return team ? `${team.orgName} / ${team.name}` : "Personal";
}

/**
 * Whether the caller may change things in the current sandbox: deploy, edit, restart, delete,
 * write secrets. Only a team viewer may not; a server without roles (no `role` in /api/me) and a
 * page rendered before /api/me answered keep today's behaviour (the server still refuses).
 */
export function useCanWrite(): boolean {
  const me = useMe();
  return me.data?.role !== "viewer";
}

/** The server's rule for organization and team names (trimmed). */
export function validateTeamName(name: string): string | null {
  const n = name.trim();
  // Characters, not UTF-16 units: "Équipe 🚀" is 8 long for the server too.
  const length = [...n].length;
  if (length < 1 || length > 64) return "a name of 1 to 64 characters";
  if (/[\p{Cc}]/u.test(n)) return "printable characters only";
  return null;
}

/** Owners and admins manage an organization and act as admin in each of its teams. */
export const canManageOrg = (org: Pick<Org, "role">) => org.role === "owner" || org.role === "admin";

/** "in 6 days", "in 3 hours", or "expired": when an invitation stops working. */
export function until(t: string, now = Date.now()): string {
  const ms = Date.parse(t);
  if (Number.isNaN(ms)) return t;
  const s = Math.round((ms - now) / 1000);
  if (s <= 0) return "expired";
  const unit = (v: number, u: string) => `in ${v} ${u}${v === 1 ? "" : "s"}`;
  if (s < 3600) return unit(Math.max(1, Math.floor(s / 60)), "minute");
  if (s < 86400) return unit(Math.floor(s / 3600), "hour");
  return unit(Math.floor(s / 86400), "day");
}

export const useOrgs = () => useQuery({ queryKey: teamKeys.orgs, queryFn: ep.listOrgs });
export const useOrg = (id: string) => useQuery({ queryKey: teamKeys.org(id), queryFn: () => ep.getOrg(id) });
export const useOrgAudit = (id: string, enabled: boolean) =>
  useQuery({ queryKey: teamKeys.audit(id), queryFn: () => ep.getOrgAudit(id), enabled, staleTime: 0 });
export const useTeam = (id: string) => useQuery({ queryKey: teamKeys.team(id), queryFn: () => ep.getTeam(id) });
export const useInvitation = (token: string) =>
  useQuery({ queryKey: teamKeys.invitation(token), queryFn: () => ep.getInvitation(token), staleTime: Infinity });

export function useOrgActions() {
  const qc = useQueryClient();
  return {
    createOrg: useMutation({
      mutationFn: ep.createOrg,
      onSuccess: () => qc.invalidateQueries({ queryKey: teamKeys.orgs }),
    }),
    createTeam: useMutation({
      mutationFn: (v: { org: string; name: string }) => ep.createTeam(v.org, v.name),
      onSuccess: (_t, v) => {
        void qc.invalidateQueries({ queryKey: teamKeys.org(v.org) });
        // The new team joins the switcher's list.
        void qc.invalidateQueries({ queryKey: keys.me });
      },
    }),
  };
}

/** Everything a team page changes. Answers that carry the team replace the cached one. */
export function useTeamActions(id: string) {
  const qc = useQueryClient();
  const store = (t: Team) => qc.setQueryData(teamKeys.team(id), t);
  const refresh = () => qc.invalidateQueries({ queryKey: teamKeys.team(id) });
  // Names and member counts show on the Teams page; names and roles in the switcher.
  const refreshLists = () => {
    void qc.invalidateQueries({ queryKey: teamKeys.orgs });
    void qc.invalidateQueries({ queryKey: keys.me });
  };
  return {
    rename: useMutation({
      mutationFn: (name: string) => ep.renameTeam(id, name),
      onSuccess: (t) => {
        store(t);
        refreshLists();
      },
    }),
    setRole: useMutation({
      mutationFn: (v: { userId: string; role: TeamRole }) => ep.setMemberRole(id, v.userId, v.role),
      onSuccess: (t) => {
        store(t);
        refreshLists();
      },
    }),
    removeMember: useMutation({
      mutationFn: (userId: string) => ep.removeMember(id, userId),
      onSuccess: () => {
        void refresh();
        refreshLists();
      },
    }),
    invite: useMutation({
      mutationFn: (v: { email: string; role: TeamRole }) => ep.inviteMember(id, v.email, v.role),
      onSuccess: () => void refresh(),
    }),
    resend: useMutation({ mutationFn: (inv: string) => ep.resendInvitation(id, inv), onSuccess: () => void refresh() }),
    revoke: useMutation({ mutationFn: (inv: string) => ep.revokeInvitation(id, inv), onSuccess: () => void refresh() }),
    // Leaving and deleting end the caller's access: the page moves away first, then calls
    // [`afterLosingTeam`] (refetching the team here would only show its 404).
    leave: useMutation({ mutationFn: (myUserId: string) => ep.removeMember(id, myUserId) }),
    remove: useMutation({ mutationFn: () => ep.deleteTeam(id) }),
  };
}

/**
 * After the caller left or deleted a team (the page showing it is gone): forgets it, and when it
 * was the current sandbox, switches the views to whatever the server now says is current.
 */
export async function afterLosingTeam(qc: QueryClient, id: string, wasCurrent: boolean): Promise<void> {
  qc.removeQueries({ queryKey: teamKeys.team(id) });
  void qc.invalidateQueries({ queryKey: teamKeys.orgs });
  if (wasCurrent) await enterSandbox(qc);
  else await qc.invalidateQueries({ queryKey: keys.me });
}
