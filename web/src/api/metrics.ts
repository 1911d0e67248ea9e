// GET /api/deployments/{name}/metrics: restarts and CPU/memory use per service over the last
// hour, polled while the deployment page is open. Also how the UI writes CPU and memory amounts.
import { useQuery } from "@tanstack/react-query";
import { api, ApiError } from "./client";
import { keys } from "./hooks";
import type { DeploymentMetrics, ServiceUsage, UsageSample } from "./types";

export const metricsPath = (name: string) => `/api/deployments/${encodeURIComponent(name)}/metrics`;

/** Polling faster than this gains nothing (the metrics API itself samples every 15 s or so). */
export const MIN_POLL_SECONDS = 10;
/** Until the server has said its interval (or after it failed before saying it). */
const DEFAULT_POLL_SECONDS = 60;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** Thrown for an answer that does not have the shape of the contract: says which field. */
function shapeError(field: string, want: string): Error {
  return new Error(`the server's metrics answer is not understood: ${field} should be ${want}`);
}

function num(o: Record<string, unknown>, field: string, where: string): number {
  const v = o[field];
  if (!isNumber(v)) throw shapeError(`${where}${field}`, "a number");
  return v;
}

function numOrNull(o: Record<string, unknown>, field: string, where: string): number | null {
  const v = o[field];
  if (v === null || v === undefined) return null;
  if (!isNumber(v)) throw shapeError(`${where}${field}`, "a number or null");
  return v;
}

/**
 * Checks an answer against the contract. A field missing or renamed (say, snake_case) would
 * otherwise show as "NaN" and empty charts; this names it instead. Samples whose values are not
 * numbers or whose time does not parse are dropped: one bad reading must not hide the others.
 */
export function parseMetrics(raw: unknown): DeploymentMetrics {
  if (!isObject(raw)) throw shapeError("the body", "a JSON object");
  if (typeof raw.available !== "boolean") throw shapeError("available", "true or false");
  const message = raw.message;
  if (message !== null && message !== undefined && typeof message !== "string") throw shapeError("message", "a string or null");
  const interval = num(raw, "intervalSeconds", "");
  const window = num(raw, "windowSeconds", "");
  if (!Array.isArray(raw.services)) throw shapeError("services", "a list");
  const services = raw.services.map((s, i): ServiceUsage => {
    const where = `services[${i}].`;
    if (!isObject(s)) throw shapeError(`services[${i}]`, "an object");
    if (typeof s.name !== "string") throw shapeError(`${where}name`, "a string");
    const samples = s.samples ?? [];
    if (!Array.isArray(samples)) throw shapeError(`${where}samples`, "a list");
    return {
      name: s.name,
      pods: num(s, "pods", where),
      restarts: num(s, "restarts", where),
      cpuLimitMillicores: numOrNull(s, "cpuLimitMillicores", where),
      memoryLimitBytes: numOrNull(s, "memoryLimitBytes", where),
      samples: samples.filter(
        (x): x is UsageSample =>
          isObject(x) && typeof x.at === "string" && !Number.isNaN(Date.parse(x.at)) && isNumber(x.cpuMillicores) && isNumber(x.memoryBytes),
      ),
    };
  });
  return { available: raw.available, message: message ?? null, intervalSeconds: interval, windowSeconds: window, services };
}

export const getMetrics = async (name: string, signal?: AbortSignal) => parseMetrics(await api<unknown>(metricsPath(name), { signal }));

/**
 * Milliseconds until the next poll: the server's sample interval, at least [`MIN_POLL_SECONDS`];
 * none after a 404 (the deployment is gone, or the server has no metrics route: asking again
 * will not change that; the page's own query notices a deletion).
 */
export function pollMs(data: DeploymentMetrics | undefined, error: unknown): number | false {
  if (error instanceof ApiError && error.status === 404) return false;
  const s = data && data.intervalSeconds > 0 ? data.intervalSeconds : DEFAULT_POLL_SECONDS;
  return Math.max(MIN_POLL_SECONDS, s) * 1000;
}

/**
 * The metrics of a deployment, refreshed every interval while a component uses them; the query
 * (and its timer) stops when the last one unmounts. Under the deployment's key, so that a restart
 * or a new image (which invalidate it) reads them again at once.
 */
export const useMetrics = (name: string, enabled = true) =>
  useQuery({
    queryKey: [...keys.deployment(name), "metrics"] as const,
    queryFn: ({ signal }) => getMetrics(name, signal),
    enabled: enabled && name !== "",
    refetchInterval: (q) => pollMs(q.state.data, q.state.error),
  });

/** A number with at most `digits` decimals, without trailing zeros: 1.5, 2, 0.25. */
const short = (v: number, digits: number) => String(Number(v.toFixed(digits)));

/** CPU as Kubernetes writes it: "250m" (millicores) below one core, "1.5 cores" above. */
export function formatCpu(millicores: number): string {
  if (!Number.isFinite(millicores) || millicores < 0) return "—";
  if (millicores === 0) return "0m";
  if (millicores < 0.1) return "< 0.1m";
  if (millicores < 10) return `${short(millicores, 1)}m`;
  if (millicores < 1000) return `${Math.round(millicores)}m`;
  const cores = millicores / 1000;
  const text = short(cores, cores < 10 ? 2 : 1);
  return `${text} ${text === "1" ? "core" : "cores"}`;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Memory in binary units, as limits are usually written: "64 MiB", "1.5 GiB", "512 KiB". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "—";
  if (bytes === 0) return "0 MiB";
  if (bytes < MiB) return `${Math.max(1, Math.round(bytes / KiB))} KiB`;
  if (bytes < GiB) {
    const m = bytes / MiB;
    return `${short(m, m < 10 ? 1 : 0)} MiB`;
  }
  const g = bytes / GiB;
  return `${short(g, g < 10 ? 2 : 1)} GiB`;
}

/** "the last hour", "the last 30 minutes", "the last 2 hours". */
export function windowLabel(seconds: number): string {
  if (seconds === 3600) return "the last hour";
  if (seconds > 0 && seconds % 3600 === 0) return `the last ${seconds / 3600} hours`;
  const m = Math.max(1, Math.round(seconds / 60));
  return m === 1 ? "the last minute" : `the last ${m} minutes`;
}
