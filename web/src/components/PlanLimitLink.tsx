// Next to a refusal because of the plan's limits (a 403 whose message says "the … plan allows …"):
// the way to the Billing page, where the plan can be changed or whoever can change it is named.
import { Link } from "react-router";
import { isPlanLimit } from "../api/billing";

export function PlanLimitLink({ error }: { error: unknown }) {
  if (!isPlanLimit(error)) return null;
  return (
    <p className="plan-limit-link">
      <Link to="/billing">See plans and billing</Link>
    </p>
  );
}
