// The logs of one service of a deployment: a snapshot of the last lines, or followed live; the
// previous (crashed) container's; searched, copied. Lines are rendered as text (React escapes
// them), never as HTML.
import { useDeferredValue, useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import { ApiError, messageOf } from "../api/client";
import { MAX_LOG_LINES, streamLogs } from "../api/logs";
import { CopyButton } from "./CopyButton";
import { Loading } from "./States";

const TAILS = [100, 500, 1000, MAX_LOG_LINES];

/** `ended`: the server closed a followed stream (its duration or size cap). */
type Status = "loading" | "streaming" | "done" | "ended" | "stopped" | "error";

interface Line {
  /** Position in everything received, for stable keys and the count of dropped lines. */
  n: number;
  text: string;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** `text` with each match of `re` (a capturing, global pattern) marked. */
function highlight(text: string, re: RegExp | null) {
  if (!re) return text;
  // split() with a capturing group puts the matches at the odd indices.
  return text.split(re).map((part, i) => (i % 2 === 1 ? <mark key={i}>{part}</mark> : part));
}

function errorTitle(e: unknown): string {
  if (e instanceof ApiError && e.status === 429) return "Too many log streams";
  if (e instanceof ApiError && e.status === 404) return "No logs to show";
  return "The logs could not be read";
}

export function LogViewer({ deployment, services, initialService }: { deployment: string; services: string[]; initialService?: string }) {
  const [chosen, setChosen] = useState(initialService ?? "");
  // A service that left the list (or none chosen yet): the first one.
  const service = services.includes(chosen) ? chosen : (services[0] ?? "");
  // Hold on to it: the list can reorder when the template arrives after the status, and the logs
  // shown must not switch service by themselves.
  useEffect(() => {
    if (!chosen && service) setChosen(service);
  }, [chosen, service]);
  const [follow, setFollow] = useState(false);
  const [previous, setPrevious] = useState(false);
  const [tail, setTail] = useState(500);
  // Bumped to read again with the same settings (Reload, Follow turned on).
  const [nonce, setNonce] = useState(0);
  const [lines, setLines] = useState<Line[]>([]);
  const [first, setFirst] = useState(0);
  const [pod, setPod] = useState<string | null>(null);
  const [status, setStatus] = useState<Status>("loading");
  const [error, setError] = useState<unknown>(null);
  const [query, setQuery] = useState("");
  const search = useDeferredValue(query);

  const seq = useRef(0);
  const abort = useRef<AbortController | null>(null);
  // Read inside the effect without being one of its triggers: turning Follow off stops the stream
  // and keeps what it showed, rather than reading a new snapshot.
  const followRef = useRef(false);
  const setFollowing = (on: boolean) => {
    followRef.current = on;
    setFollow(on);
  };

  useEffect(() => {
    if (!service) return;
    const ac = new AbortController();
    abort.current = ac;
    const following = followRef.current;
    setLines([]);
    setFirst(seq.current);
    setPod(null);
    setError(null);
    setStatus("loading");
    streamLogs(
      { deployment, service, previous, tail, follow: following },
      {
        signal: ac.signal,
        onOpen: (p) => {
          setPod(p);
          if (following) setStatus("streaming");
        },
        onLines: (texts) => {
          // Numbered here, not in the state updater: updaters may run twice.
          const add = texts.map((text) => ({ n: seq.current++, text }));
          setLines((prev) => {
            const all = prev.concat(add);
            return all.length > MAX_LOG_LINES ? all.slice(all.length - MAX_LOG_LINES) : all;
          });
        },
      },
    ).then(
      () => {
        if (ac.signal.aborted) return;
        setStatus(following ? "ended" : "done");
        if (following) setFollowing(false);
      },
      (e: unknown) => {
        if (ac.signal.aborted) return;
        setError(e);
        setStatus("error");
        if (following) setFollowing(false);
      },
    );
    return () => ac.abort();
  }, [deployment, service, previous, tail, nonce]);

  const toggleFollow = (on: boolean) => {
    setFollowing(on);
    if (on) {
      // A previous container prints nothing new: following reads the current one.
      setPrevious(false);
      setNonce((n) => n + 1);
    } else {
      abort.current?.abort();
      setStatus((s) => (s === "streaming" || s === "loading" ? "stopped" : s));
    }
  };

  const re = useMemo(() => (search ? new RegExp(`(${escapeRegExp(search)})`, "gi") : null), [search]);
  const shown = useMemo(() => {
    if (!search) return lines;
    const needle = new RegExp(escapeRegExp(search), "i");
    return lines.filter((l) => needle.test(l.text));
  }, [lines, search]);
  const copyText = useMemo(() => shown.map((l) => l.text).join("\n"), [shown]);
  const dropped = lines.length > 0 ? lines[0].n - first : 0;

  // Stay at the bottom as lines arrive, unless the reader scrolled up to read.
  const pane = useRef<HTMLPreElement>(null);
  const [atBottom, setAtBottom] = useState(true);
  const stick = useRef(true);
  const onScroll = () => {
    const el = pane.current;
    if (!el) return;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
    setAtBottom(stick.current);
  };
  const toBottom = () => {
    const el = pane.current;
    if (el) el.scrollTop = el.scrollHeight;
    stick.current = true;
    setAtBottom(true);
  };
  useLayoutEffect(() => {
    if (stick.current && pane.current) pane.current.scrollTop = pane.current.scrollHeight;
  }, [shown]);

  if (services.length === 0) {
    return <p className="muted">No services reported yet: logs can be read once the app has pods.</p>;
  }

  const id = `logs-${deployment}`;
  return (
    <div className="log-viewer" data-testid="log-viewer">
      <div className="toolbar">
        <div className="field">
          <label htmlFor={`${id}-service`}>Service</label>
          <select id={`${id}-service`} value={service} onChange={(e) => setChosen(e.target.value)}>
            {services.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={`${id}-tail`}>Lines</label>
          <select id={`${id}-tail`} value={tail} onChange={(e) => setTail(Number(e.target.value))}>
            {TAILS.map((t) => (
              <option key={t} value={t}>
                last {t.toLocaleString("en")}
              </option>
            ))}
          </select>
        </div>
        <div className="field grow">
          <label htmlFor={`${id}-search`}>Search logs</label>
          <input
            id={`${id}-search`}
            type="search"
            value={query}
            spellCheck={false}
            autoComplete="off"
            placeholder="Show lines containing…"
            onChange={(e) => setQuery(e.target.value)}
          />
        </div>
      </div>
      <div className="toolbar">
        <label className="check">
          <input type="checkbox" checked={follow} onChange={(e) => toggleFollow(e.target.checked)} />
          Follow
        </label>
        <label className="check" title={follow ? "Only without Follow: a previous container prints nothing new" : undefined}>
          <input type="checkbox" checked={previous} disabled={follow} onChange={(e) => setPrevious(e.target.checked)} />
          Previous container
        </label>
        <button type="button" className="btn btn-small" onClick={() => setNonce((n) => n + 1)} disabled={status === "loading"}>
          Reload
        </button>
        <CopyButton text={copyText} label={search ? `Copy ${shown.length} matching lines` : "Copy lines"} />
        {follow && !atBottom && (
          <button type="button" className="btn btn-small" onClick={toBottom}>
            Jump to the latest line
          </button>
        )}
      </div>
      <p className="muted small" data-testid="log-status" aria-live="polite">
        {pod && (
          <>
            Pod <code data-testid="log-pod">{pod}</code>
            {" · "}
          </>
        )}
        {search ? `${shown.length} of ${lines.length} lines match` : `${lines.length} lines`}
        {dropped > 0 && ` · ${dropped.toLocaleString("en")} older lines dropped (the last ${MAX_LOG_LINES.toLocaleString("en")} are kept)`}
        {status === "streaming" && " · following…"}
        {status === "stopped" && " · stopped following"}
        {status === "ended" && " · the server ended the stream: turn Follow on to resume"}
      </p>
      {status === "error" && (
        <div className="callout callout-error" role="alert" data-testid="log-error">
          <strong>{errorTitle(error)}</strong>
          <p>{messageOf(error)}</p>
        </div>
      )}
      {status === "loading" && lines.length === 0 ? (
        <Loading label="Reading the logs…" />
      ) : (
        (lines.length > 0 || status !== "error") && (
          <pre className="code" ref={pane} onScroll={onScroll} tabIndex={0} role="log" aria-live="off" aria-label={`Logs of ${service}`} data-testid="log-lines">
            {shown.length === 0 ? (
              <span className="muted">{lines.length === 0 ? "No log lines." : "No line matches the search."}</span>
            ) : (
              shown.map((l) => (
                <span key={l.n} data-line="">
                  {highlight(l.text, re)}
                  {"\n"}
                </span>
              ))
            )}
          </pre>
        )
      )}
    </div>
  );
}
