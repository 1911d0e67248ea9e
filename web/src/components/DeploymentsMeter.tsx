// How many deployments the plan's limit allows and how many are used, as a bar (role "meter"):
// the Dashboard's plan card and the Billing page's usage show the same one.

/** Whether `used` reached a limit (null: unlimited). */
export function limitReached(used: number, limit: number | null): boolean {
  return limit !== null && used >= limit;
}

export function DeploymentsMeter({ used, limit }: { used: number; limit: number | null }) {
  if (limit === null) return null;
  const pct = limit ? Math.min(100, Math.round((used / limit) * 100)) : 0;
  return (
    <div
      className={`meter${limitReached(used, limit) ? " meter-full" : ""}`}
      role="meter"
      aria-label="Deployments used"
      aria-valuemin={0}
      aria-valuemax={limit}
      aria-valuenow={used}
    >
      <span style={{ width: `${pct}%` }} />
    </div>
  );
}
