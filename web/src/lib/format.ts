/** "3 minutes ago" from an RFC 3339 string or Unix seconds. */
export function ago(t: string | number | null | undefined, now = Date.now()): string {
  if (t === null || t === undefined || t === "") return "—";
  const ms = typeof t === "number" ? t * 1000 : Date.parse(t);
  if (Number.isNaN(ms)) return String(t);
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 10) return "just now";
  const plural = (v: number, u: string) => `${v} ${u}${v === 1 ? "" : "s"} ago`;
  if (s < 60) return plural(s, "second");
  const m = Math.floor(s / 60);
  if (m < 60) return plural(m, "minute");
  const h = Math.floor(m / 60);
  if (h < 24) return plural(h, "hour");
  const d = Math.floor(h / 24);
  if (d < 30) return plural(d, "day");
  const mo = Math.floor(d / 30);
  if (mo < 12) return plural(mo, "month");
  return plural(Math.floor(d / 365), "year");
}

/** A full local timestamp for a title attribute. */
export function exact(t: string | number | null | undefined): string | undefined {
  if (t === null || t === undefined || t === "") return undefined;
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return Number.isNaN(d.getTime()) ? undefined : d.toLocaleString();
}
