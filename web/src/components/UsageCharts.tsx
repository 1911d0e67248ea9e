// Restarts, pods and CPU/memory use of each service of a deployment, with two small charts over the
// last hour. The charts are a few lines of inline SVG (a line over a filled area, the limit as a
// dashed reference line): a chart library would add far more to the bundle than this needs, and
// web/package.json has none.
import { useId } from "react";
import { ApiError, messageOf } from "../api/client";
import { formatBytes, formatCpu, useMetrics, windowLabel } from "../api/metrics";
import type { ServiceUsage } from "../api/types";
import { Badge } from "./StatusBadge";
import { ErrorState, Loading } from "./States";

/** The chart's drawing box; the SVG scales it to the width it gets, keeping the proportions. */
const W = 300;
const H = 72;
/** Room above the highest value (or the limit), so that the line does not touch the top edge. */
const TOP = 8;

const clock = (ms: number) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

interface Point {
  t: number;
  v: number;
}

interface ChartProps {
  /** The accessible name, e.g. "CPU of web over the last hour". */
  label: string;
  /** "CPU" or "Memory": the caption. */
  title: string;
  testId: string;
  points: Point[];
  limit: number | null;
  format: (v: number) => string;
  windowSeconds: number;
  intervalSeconds: number;
}

/** A sparkline: `points` (oldest first) over the window that ends at the latest one. */
export function Sparkline({ label, title, testId, points, limit, format, windowSeconds, intervalSeconds }: ChartProps) {
  const descId = useId();
  // The window ends at the latest sample, not at this browser's clock: a clock that is off by
  // minutes must not push the samples out of the picture.
  const end = points.length > 0 ? points[points.length - 1].t : Date.now();
  const span = Math.max(1, windowSeconds) * 1000;
  const start = end - span;
  const shown = points.filter((p) => p.t >= start);
  const peak = shown.reduce((m, p) => Math.max(m, p.v), 0);
  // The limit is part of the scale: how close the use comes to it is what the chart is for.
  const top = Math.max(peak, limit ?? 0) || 1;
  const x = (t: number) => ((t - start) / span) * W;
  const y = (v: number) => H - (v / top) * (H - TOP);

  // A gap of more than a couple of intervals (the metrics API missed samples, or no pod ran) breaks
  // the line rather than drawing a slope across it.
  const gap = Math.max(1, intervalSeconds) * 1000 * 2.5;
  const segments: Point[][] = [];
  for (const p of shown) {
    const seg = segments[segments.length - 1];
    if (seg && p.t - seg[seg.length - 1].t <= gap) seg.push(p);
    else segments.push([p]);
  }
  const f = (n: number) => n.toFixed(1);
  const line = segments.map((s) => s.map((p, i) => `${i === 0 ? "M" : "L"}${f(x(p.t))},${f(y(p.v))}`).join("")).join("");
  const area = segments
    .filter((s) => s.length > 1)
    .map((s) => `M${f(x(s[0].t))},${H}${s.map((p) => `L${f(x(p.t))},${f(y(p.v))}`).join("")}L${f(x(s[s.length - 1].t))},${H}Z`)
    .join("");
  const last = shown[shown.length - 1];
  // Each sample's column answers a hover with its time and value.
  const hitWidth = Math.max(2, (Math.max(1, intervalSeconds) * 1000 * W) / span);
  const limitY = limit !== null ? y(limit) : null;

  const description =
    shown.length === 0
      ? `No samples in ${windowLabel(windowSeconds)}.`
      : `${shown.length} ${shown.length === 1 ? "sample" : "samples"} from ${clock(shown[0].t)} to ${clock(end)}; ` +
        `now ${format(last.v)}, peak ${format(peak)}, ${limit !== null ? `limit ${format(limit)}` : "no limit"}.`;

  return (
    <figure className="chart">
      <figcaption className="chart-caption" aria-hidden="true">
        <span>{title}</span>
        <span className="muted">
          peak {format(peak)}
          {limit !== null && <span className="chart-limit-label"> · limit {format(limit)}</span>}
        </span>
      </figcaption>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-label={label}
        aria-describedby={descId}
        data-testid={testId}
        data-samples={shown.length}
      >
        <title>{label}</title>
        <line className="chart-base" x1={0} x2={W} y1={H - 0.5} y2={H - 0.5} />
        {area && <path className="chart-area" d={area} data-testid="chart-area" />}
        {line && <path className="chart-line" d={line} data-testid="chart-line" />}
        {last && <circle className="chart-dot" cx={x(last.t)} cy={y(last.v)} r={2.5} />}
        {limitY !== null && limit !== null && (
          // Labelled in the caption: text inside the SVG would shrink with the chart.
          <line className="chart-limit" data-testid="chart-limit" data-value={limit} x1={0} x2={W} y1={limitY} y2={limitY}>
            <title>{`Limit: ${format(limit)}`}</title>
          </line>
        )}
        {shown.map((p, i) => (
          <rect key={i} className="chart-hit" x={x(p.t) - hitWidth / 2} y={0} width={hitWidth} height={H}>
            <title>{`${clock(p.t)}: ${format(p.v)}`}</title>
          </rect>
        ))}
      </svg>
      <div className="chart-axis" aria-hidden="true">
        <span>{clock(start)}</span>
        <span>{clock(end)}</span>
      </div>
      <p id={descId} className="sr-only">
        {description}
      </p>
    </figure>
  );
}

function Service({ s, available, intervalSeconds, windowSeconds }: { s: ServiceUsage; available: boolean; intervalSeconds: number; windowSeconds: number }) {
  const latest = s.samples[s.samples.length - 1];
  const within = windowLabel(windowSeconds);
  const cpu = s.samples.map((p) => ({ t: Date.parse(p.at), v: p.cpuMillicores }));
  const memory = s.samples.map((p) => ({ t: Date.parse(p.at), v: p.memoryBytes }));
  return (
    <li className="card usage" data-testid={`usage-${s.name}`}>
      <h3>{s.name}</h3>
      <dl className="usage-stats">
        <div>
          <dt>Restarts</dt>
          <dd>
            <span data-testid="usage-restarts" data-value={s.restarts}>
              <Badge
                tone={s.restarts > 0 ? "warn" : "muted"}
                title={s.restarts > 0 ? "Container restarts summed over the service's pods: the previous container's logs say why." : undefined}
              >
                {s.restarts}
              </Badge>
            </span>
          </dd>
        </div>
        <div>
          <dt>Pods</dt>
          <dd data-testid="usage-pods">{s.pods}</dd>
        </div>
        <Reading
          label="CPU"
          kind="cpu"
          now={available && latest ? latest.cpuMillicores : null}
          nowTitle={(v) => `${v} millicores`}
          limit={s.cpuLimitMillicores}
          format={formatCpu}
        />
        <Reading
          label="Memory"
          kind="memory"
          now={available && latest ? latest.memoryBytes : null}
          nowTitle={(v) => `${v.toLocaleString("en")} bytes`}
          limit={s.memoryLimitBytes}
          format={formatBytes}
        />
      </dl>
      {available &&
        (s.samples.length === 0 ? (
          <p className="muted small" data-testid="usage-no-samples">
            No samples yet; the first arrives within {intervalSeconds} s
          </p>
        ) : (
          <div className="usage-charts">
            <Sparkline
              label={`CPU of ${s.name} over ${within}`}
              title="CPU"
              testId="usage-cpu"
              points={cpu}
              limit={s.cpuLimitMillicores}
              format={formatCpu}
              windowSeconds={windowSeconds}
              intervalSeconds={intervalSeconds}
            />
            <Sparkline
              label={`Memory of ${s.name} over ${within}`}
              title="Memory"
              testId="usage-memory"
              points={memory}
              limit={s.memoryLimitBytes}
              format={formatBytes}
              windowSeconds={windowSeconds}
              intervalSeconds={intervalSeconds}
            />
          </div>
        ))}
    </li>
  );
}

/** The usage of a deployment's services, read from the server and refreshed every interval. */
export function UsageCharts({ deployment }: { deployment: string }) {
  const m = useMetrics(deployment);
  if (m.isPending) return <Loading label="Reading CPU and memory use…" />;
  if (!m.data) {
    const gone = m.error instanceof ApiError && m.error.status === 404;
    return (
      <ErrorState
        error={m.error}
        title={gone ? "No usage to show" : "CPU and memory use could not be read"}
        retry={gone ? undefined : () => void m.refetch()}
      />
    );
  }
  const d = m.data;
  return (
    <div data-testid="usage" data-available={d.available}>
      {!d.available && (
        <div className="callout callout-warn" data-testid="usage-unavailable">
          <strong>No CPU and memory readings</strong>
          <p>{d.message || "This cluster serves no CPU and memory readings."}</p>
        </div>
      )}
      {m.error ? (
        // A failed refresh keeps what was read before: say how old it is.
        <p className="inline-error" role="alert">
          The last refresh failed ({messageOf(m.error)}); showing the readings of {clock(m.dataUpdatedAt)}.
        </p>
      ) : null}
      {d.services.length === 0 ? (
        <p className="muted">No pods yet: restarts and use appear once the app runs.</p>
      ) : (
        <ul className="usage-list">
          {d.services.map((s) => (
            <Service key={s.name} s={s} available={d.available} intervalSeconds={d.intervalSeconds} windowSeconds={d.windowSeconds} />
          ))}
        </ul>
      )}
      {d.available && (
        <p className="muted small">
          Summed over each service's pods, one sample every {d.intervalSeconds} s over {windowLabel(d.windowSeconds)}.
        </p>
      )}
    </div>
  );
}

const limitOf = (v: number | null, format: (n: number) => string) => (v !== null ? `limit ${format(v)}` : "no limit");

/** One reading of a service card: the current value (when sampled) and the limit. */
function Reading(props: {
  label: string;
  kind: "cpu" | "memory";
  now: number | null;
  nowTitle: (v: number) => string;
  limit: number | null;
  format: (v: number) => string;
}) {
  const { label, kind, now, nowTitle, limit, format } = props;
  return (
    <div>
      <dt>{label}</dt>
      <dd>
        {now !== null && (
          <span className="usage-now" data-testid={`usage-${kind}-now`} data-value={now} title={nowTitle(now)}>
            {format(now)}
          </span>
        )}
        <span className="usage-limit muted small" data-testid={`usage-${kind}-limit`}>
          {limitOf(limit, format)}
        </span>
      </dd>
    </div>
  );
}
