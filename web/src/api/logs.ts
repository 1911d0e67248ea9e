// GET /api/deployments/{name}/logs: a plain-text body, streamed (with follow=true it stays open and
// lines arrive as the app prints them). Read with fetch and a ReadableStream reader rather than
// EventSource: the endpoint is not an event stream, and fetch gives the status, the JSON error and
// the X-Pod-Name header.
import { ApiError, errorOf } from "./client";

export interface LogRequest {
  deployment: string;
  service: string;
  /** The previous (crashed) container's logs; meaningless when following. */
  previous: boolean;
  /** Lines to read from the end, 1..5000 (the server's range). */
  tail: number;
  follow: boolean;
}

/** The most lines the viewer keeps (the server's tail limit too): older ones are dropped. */
export const MAX_LOG_LINES = 5000;

export function logsPath(r: LogRequest): string {
  const q = new URLSearchParams({
    service: r.service,
    previous: String(r.previous && !r.follow),
    tail: String(r.tail),
    follow: String(r.follow),
  });
  return `/api/deployments/${encodeURIComponent(r.deployment)}/logs?${q}`;
}

/**
 * Cuts a stream of text into lines. A chunk may end mid-line: the rest waits for the next chunk
 * (or for [`flush`] at the end of the stream). `\r\n` ends a line as `\n` does.
 */
export class LineSplitter {
  private rest = "";

  push(text: string): string[] {
    const parts = (this.rest + text).split("\n");
    this.rest = parts.pop() ?? "";
    return parts.map(stripCr);
  }

  /** The last line when the stream ended without a newline. */
  flush(): string[] {
    const last = this.rest;
    this.rest = "";
    return last === "" ? [] : [stripCr(last)];
  }
}

const stripCr = (s: string) => (s.endsWith("\r") ? s.slice(0, -1) : s);

// Colour and style escapes (SGR) that many apps print: shown raw they are noise like "[32m".
const SGR = /\x1b\[[0-9;]*m/g;

/** A log line as shown: without terminal colour codes. */
export const cleanLine = (s: string) => s.replace(SGR, "");

export interface StreamHandlers {
  signal: AbortSignal;
  /** Called once the server answered 200, with the pod it reads (X-Pod-Name). */
  onOpen: (pod: string | null) => void;
  /** Called with each batch of complete lines, in order. */
  onLines: (lines: string[]) => void;
}

/**
 * Reads the logs, calling `onLines` as lines arrive; resolves when the server ends the body.
 * Throws [`ApiError`] with the server's message for a non-2xx answer, and an `AbortError` when
 * `signal` aborts (the request is cancelled with it).
 */
export async function streamLogs(r: LogRequest, h: StreamHandlers): Promise<void> {
  let resp: Response;
  try {
    resp = await fetch(logsPath(r), {
      headers: { Accept: "text/plain" },
      credentials: "same-origin",
      signal: h.signal,
    });
  } catch (e) {
    if (h.signal.aborted) throw e;
    throw new ApiError(0, "the server cannot be reached; check your connection and retry");
  }
  if (!resp.ok) throw await errorOf(resp);
  h.onOpen(resp.headers.get("X-Pod-Name"));
  // `stream: true` keeps a UTF-8 sequence that a chunk boundary cut in two until its end arrives.
  const decoder = new TextDecoder("utf-8");
  const lines = new LineSplitter();
  const emit = (ls: string[]) => {
    if (ls.length > 0) h.onLines(ls.map(cleanLine));
  };
  if (!resp.body) {
    emit(lines.push(await resp.text()));
    emit(lines.flush());
    return;
  }
  const reader = resp.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      emit(lines.push(decoder.decode(value, { stream: true })));
    }
  } catch (e) {
    if (h.signal.aborted) throw e;
    throw new ApiError(0, `the log stream broke off (${e instanceof Error ? e.message : String(e)}); press Reload to read again`);
  }
  emit(lines.push(decoder.decode()));
  emit(lines.flush());
}
