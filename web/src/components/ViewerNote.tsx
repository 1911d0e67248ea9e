// Why a team viewer sees no Deploy, Edit, Restart or Delete: said once per page, in place of the
// actions (the server refuses them with 403 anyway).
import { useMe } from "../api/hooks";

/** Shown only to a viewer of the current team. `to` ends the sentence: what the role would allow. */
export function ViewerNote({ to = "deploy" }: { to?: string }) {
  const me = useMe();
  if (me.data?.role !== "viewer") return null;
  const team = me.data.team?.name ?? "this team";
  return (
    <p className="callout" role="note" data-testid="viewer-note">
      You are a viewer in team {team}: ask an admin for the developer role to {to}.
    </p>
  );
}
