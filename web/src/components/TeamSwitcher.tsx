// The current sandbox, in the header: "Personal" or one of the user's teams. Choosing one makes it
// the session's current team (PUT /api/me/team), and every page then shows that sandbox.
import { useEffect, useRef, useState } from "react";
import { useLocation, useNavigate } from "react-router";
import { ApiError, messageOf } from "../api/client";
import { useMe } from "../api/hooks";
import { sandboxLabel, useSwitchTeam } from "../api/teams";
import type { TeamRef } from "../api/types";
import { useToast } from "./Toasts";

/** The page to be on after a switch: a deployment's page names one of the old sandbox. */
export function pathAfterSwitch(pathname: string): string | null {
  if (/^\/deployments\/[^/]+/.test(pathname)) return "/deployments";
  return null;
}

/**
 * Switching the sandbox from anywhere (the header, the Teams pages): says how it went in a toast.
 * Awaited rather than given callbacks: the switch remounts the pages (App's SandboxScope), and a
 * callback of an unmounted component would not run.
 */
export function useSandboxSwitch() {
  const me = useMe();
  const sw = useSwitchTeam();
  const toast = useToast();
  const navigate = useNavigate();
  const location = useLocation();
  // Resolved once a navigation has been committed. React Router navigates in a transition, which
  // the query cache's synchronous update would overtake: the old page would remount in the new
  // sandbox and ask for its deployment there before leaving.
  const arrived = useRef<(() => void) | null>(null);
  useEffect(() => {
    arrived.current?.();
    arrived.current = null;
  }, [location.pathname]);
  const leaveFor = (to: string) =>
    new Promise<void>((resolve) => {
      arrived.current = resolve;
      // Should this component be gone before the location changes, the switch goes on anyway.
      setTimeout(resolve, 1000);
      navigate(to);
    });

  const switchTo = async (team: Pick<TeamRef, "id"> | null): Promise<boolean> => {
    try {
      const next = await sw.mutateAsync({
        team: team?.id ?? null,
        before: async () => {
          const to = pathAfterSwitch(location.pathname);
          if (to) await leaveFor(to);
        },
      });
      toast(next.team ? `Now in team ${sandboxLabel(next.team)}.` : "Now in your personal sandbox.");
      return true;
    } catch (e) {
      // 404: no longer a member; the list is refreshed so that the team leaves it.
      if (e instanceof ApiError && e.status === 404) void me.refetch();
      toast(`Switching failed: ${messageOf(e)}`, "error");
      return false;
    }
  };
  return { switchTo, pending: sw.isPending };
}

export function TeamSwitcher() {
  const me = useMe();
  const { switchTo, pending } = useSandboxSwitch();
  // While the request runs, the select shows what was chosen rather than jumping back.
  const [choosing, setChoosing] = useState<string | null>(null);
  if (!me.data) return null;
  const current = me.data.team ?? null;
  const teams: TeamRef[] = [...(me.data.teams ?? [])];
  // The current team is always offered, even when the list is behind.
  if (current && !teams.some((t) => t.id === current.id)) teams.unshift(current);

  const choose = async (value: string) => {
    if (value === (current?.id ?? "")) return;
    setChoosing(value);
    await switchTo(value === "" ? null : { id: value });
    setChoosing(null);
  };

  return (
    <div className="team-switcher">
      <label htmlFor="team-switcher" className="sr-only">
        Current sandbox
      </label>
      <select
        id="team-switcher"
        value={choosing ?? current?.id ?? ""}
        disabled={pending}
        aria-busy={pending || undefined}
        title={`Sandbox shown: ${sandboxLabel(current)}${me.data.role ? ` (you are ${me.data.role})` : ""}`}
        onChange={(e) => void choose(e.target.value)}
      >
        <option value="">Personal</option>
        {teams.map((t) => (
          <option key={t.id} value={t.id}>
            {sandboxLabel(t)} ({t.role})
          </option>
        ))}
      </select>
    </div>
  );
}
