// The one way the UI talks to the server: same-origin credentials, JSON bodies (the server's
// CSRF rule: state-changing requests must be application/json from the same origin, which the
// browser states in its Origin header), and errors carrying the server's `{"error": "..."}`.

export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

export interface RequestOptions {
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  body?: unknown;
  /** How to read a successful answer. */
  as?: "json" | "text" | "none";
  signal?: AbortSignal;
}

/** The [`ApiError`] of a non-2xx answer, with the server's message when it sent one. */
export async function errorOf(resp: Response): Promise<ApiError> {
  let message = `${resp.status} ${resp.statusText}`.trim();
  try {
    const text = await resp.text();
    try {
      const body = JSON.parse(text) as { error?: unknown };
      if (body && typeof body.error === "string" && body.error) message = body.error;
      else if (text) message = text;
    } catch {
      if (text && text.length < 500) message = text;
    }
  } catch {
    // The body could not be read: keep the status line.
  }
  return new ApiError(resp.status, message);
}

/** Calls the API; throws [`ApiError`] with the server's message on a non-2xx answer. */
export async function api<T = unknown>(path: string, opts: RequestOptions = {}): Promise<T> {
  const method = opts.method ?? "GET";
  const headers: Record<string, string> = { Accept: opts.as === "text" ? "*/*" : "application/json" };
  let body: string | undefined;
  if (method !== "GET") {
    // Every state-changing request is JSON, with or without a body.
    headers["Content-Type"] = "application/json";
    if (opts.body !== undefined) body = JSON.stringify(opts.body);
  }
  let resp: Response;
  try {
    resp = await fetch(path, { method, headers, body, credentials: "same-origin", signal: opts.signal });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new ApiError(0, "the server cannot be reached; check your connection and retry");
  }
  if (!resp.ok) throw await errorOf(resp);
  if (opts.as === "none" || resp.status === 204) return undefined as T;
  if (opts.as === "text") return (await resp.text()) as T;
  return (await resp.json()) as T;
}

/** The message to show for any error. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Retries `f` while the server answers 503 (e.g. "your sandbox is still being prepared"), up to
 * `attempts` times.
 */
export async function retryUnavailable<T>(f: () => Promise<T>, attempts = 20, delayMs = 1500): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await f();
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 503 || i >= attempts) throw e;
      await sleep(delayMs);
    }
  }
}
