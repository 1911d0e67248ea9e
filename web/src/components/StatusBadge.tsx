import type { Deployment } from "../api/types";
import { statusOf, type Tone } from "../lib/status";

export function Badge({ tone, children, title }: { tone: Tone; children: React.ReactNode; title?: string }) {
  return (
    <span className={`badge badge-${tone}`} title={title}>
      {children}
    </span>
  );
}

type Props = {
  deployment: Pick<Deployment, "phase" | "ready" | "conditions"> & Partial<Deployment>;
  /** Also show the one-line explanation under the badge. */
  withDetail?: boolean;
};

/** The status of a deployment as a coloured badge (with a dot that pulses while in progress). */
export function StatusBadge({ deployment, withDetail }: Props) {
  const s = statusOf(deployment);
  return (
    <span className="status">
      <span className={`badge badge-${s.tone}`} data-testid="status-badge" title={s.detail ?? undefined}>
        <span className="dot" aria-hidden="true" />
        {s.label}
      </span>
      {withDetail && s.detail && <span className="status-detail">{s.detail}</span>}
    </span>
  );
}
