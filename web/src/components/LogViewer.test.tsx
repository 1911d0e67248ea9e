import { act, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { LineSplitter, logsPath, MAX_LOG_LINES } from "../api/logs";
import { LogViewer } from "./LogViewer";

const enc = new TextEncoder();

/** A response body the test feeds chunk by chunk; it errors when the request is aborted. */
function controlledBody(signal?: AbortSignal | null) {
  let ctrl!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      ctrl = c;
    },
  });
  signal?.addEventListener("abort", () => {
    try {
      ctrl.error(new DOMException("aborted", "AbortError"));
    } catch {
      // Already closed.
    }
  });
  return {
    body,
    send: (b: Uint8Array | string) => ctrl.enqueue(typeof b === "string" ? enc.encode(b) : b),
    close: () => ctrl.close(),
  };
}

const textResponse = (body: BodyInit, pod = "web-7d9f-abcde") =>
  new Response(body, { status: 200, headers: { "Content-Type": "text/plain; charset=utf-8", "X-Pod-Name": pod } });

interface Call {
  url: URL;
  signal: AbortSignal | null | undefined;
}

/** Stubs fetch: `answer` gets each request's URL (parsed) and signal. */
function stubFetch(answer: (c: Call) => Response | Promise<Response>) {
  const calls: Call[] = [];
  vi.stubGlobal(
    "fetch",
    vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
      const c = { url: new URL(String(input), "http://ui.test"), signal: init?.signal };
      calls.push(c);
      return answer(c);
    }),
  );
  return calls;
}

const shownLines = () => Array.from(screen.getByTestId("log-lines").querySelectorAll("[data-line]")).map((e) => e.textContent?.replace(/\n$/, ""));

describe("LineSplitter", () => {
  it("keeps a line cut by a chunk boundary until its end arrives, and handles CRLF", () => {
    const s = new LineSplitter();
    expect(s.push("one\ntw")).toEqual(["one"]);
    expect(s.push("o\r\nthr")).toEqual(["two"]);
    expect(s.push("ee")).toEqual([]);
    expect(s.flush()).toEqual(["three"]);
    expect(s.flush()).toEqual([]);
  });

  it("builds the query the server reads; previous only without follow", () => {
    const q = (p: string) => new URL(p, "http://x").searchParams;
    const base = { deployment: "my app", service: "web", previous: true, tail: 500 };
    expect(logsPath({ ...base, follow: false })).toMatch(/^\/api\/deployments\/my%20app\/logs\?/);
    expect(Object.fromEntries(q(logsPath({ ...base, follow: false })))).toEqual({ service: "web", previous: "true", tail: "500", follow: "false" });
    expect(q(logsPath({ ...base, follow: true })).get("previous")).toBe("false");
  });
});

describe("the log viewer", () => {
  it("follows a streamed body: lines split across chunks (even inside a UTF-8 character) appear as they arrive", async () => {
    const streams: ReturnType<typeof controlledBody>[] = [];
    const calls = stubFetch((c) => {
      if (c.url.searchParams.get("follow") === "true") {
        const s = controlledBody(c.signal);
        streams.push(s);
        return textResponse(s.body);
      }
      return textResponse("starting\n");
    });
    render(<LogViewer deployment="shop" services={["web", "worker"]} />);
    expect(await screen.findByText("starting")).toBeInTheDocument();
    expect(screen.getByTestId("log-pod")).toHaveTextContent("web-7d9f-abcde");
    expect(calls[0].url.pathname).toBe("/api/deployments/shop/logs");
    expect(Object.fromEntries(calls[0].url.searchParams)).toEqual({ service: "web", previous: "false", tail: "500", follow: "false" });

    const user = userEvent.setup();
    await user.click(screen.getByRole("checkbox", { name: "Follow" }));
    await waitFor(() => expect(streams).toHaveLength(1));
    expect(calls[1].url.searchParams.get("follow")).toBe("true");
    const s = streams[0];
    const e = enc.encode("héllo wörld\n");
    // "é" is two bytes: the first chunk ends between them.
    const cut = enc.encode("h").length + 1;
    await act(async () => {
      s.send("GET / 200\nGET /hea");
    });
    expect(await screen.findByText("GET / 200")).toBeInTheDocument();
    expect(screen.queryByText(/GET \/hea/)).toBeNull(); // not a whole line yet
    await act(async () => {
      s.send("lth 200\n");
      s.send(e.slice(0, cut));
    });
    await act(async () => {
      s.send(e.slice(cut));
    });
    await waitFor(() => expect(shownLines()).toEqual(["GET / 200", "GET /health 200", "héllo wörld"]));
    expect(screen.getByTestId("log-status")).toHaveTextContent("following");

    // Turning Follow off aborts the request and keeps the lines.
    await user.click(screen.getByRole("checkbox", { name: "Follow" }));
    expect(calls[1].signal?.aborted).toBe(true);
    expect(screen.getByTestId("log-status")).toHaveTextContent("stopped following");
    expect(shownLines()).toEqual(["GET / 200", "GET /health 200", "héllo wörld"]);
    expect(calls).toHaveLength(2);
  });

  it("aborts the stream when the page is left", async () => {
    const calls = stubFetch((c) => textResponse(controlledBody(c.signal).body));
    const { unmount } = render(<LogViewer deployment="shop" services={["web"]} />);
    await waitFor(() => expect(calls).toHaveLength(1));
    unmount();
    expect(calls[0].signal?.aborted).toBe(true);
  });

  it("filters on the search and marks the matches; Copy copies what is shown", async () => {
    stubFetch(() => textResponse("GET /a 200\nPOST /b 500 Error: boom\nGET /c 200\nerror again\n"));
    render(<LogViewer deployment="shop" services={["web"]} />);
    await screen.findByText("GET /c 200");
    const user = userEvent.setup();
    await user.type(screen.getByLabelText("Search logs"), "error");
    await waitFor(() => expect(shownLines()).toEqual(["POST /b 500 Error: boom", "error again"]));
    const marks = Array.from(screen.getByTestId("log-lines").querySelectorAll("mark")).map((m) => m.textContent);
    expect(marks).toEqual(["Error", "error"]);
    expect(screen.getByTestId("log-status")).toHaveTextContent("2 of 4 lines match");
    // Copy: what is shown, one line per line (userEvent provides a clipboard).
    await user.click(screen.getByRole("button", { name: "Copy 2 matching lines" }));
    expect(await navigator.clipboard.readText()).toBe("POST /b 500 Error: boom\nerror again");
    // Characters that mean something in a pattern are searched for as themselves.
    await user.clear(screen.getByLabelText("Search logs"));
    await user.type(screen.getByLabelText("Search logs"), "/c (");
    await waitFor(() => expect(screen.getByText("No line matches the search.")).toBeInTheDocument());
  });

  it("renders log lines as text, never as HTML", async () => {
    stubFetch(() => textResponse('<img src=x onerror="alert(1)"><b>bold</b>\n\x1b[32mgreen\x1b[0m\n'));
    render(<LogViewer deployment="shop" services={["web"]} />);
    await waitFor(() => expect(shownLines()).toEqual(['<img src=x onerror="alert(1)"><b>bold</b>', "green"]));
    expect(screen.getByTestId("log-lines").querySelector("img, b")).toBeNull();
  });

  it(`keeps the last ${MAX_LOG_LINES} lines and says how many older ones were dropped`, async () => {
    const all = Array.from({ length: MAX_LOG_LINES + 150 }, (_, i) => `line ${i + 1}`);
    const half = Math.floor(all.length / 2);
    // Two chunks: the cap holds across appends, not only within one.
    const s = controlledBody();
    stubFetch(() => textResponse(s.body));
    render(<LogViewer deployment="shop" services={["web"]} />);
    await act(async () => {
      s.send(all.slice(0, half).join("\n") + "\n");
    });
    await act(async () => {
      s.send(all.slice(half).join("\n") + "\n");
      s.close();
    });
    await waitFor(() => expect(screen.getByTestId("log-status")).toHaveTextContent(`${MAX_LOG_LINES} lines`));
    const lines = shownLines();
    expect(lines).toHaveLength(MAX_LOG_LINES);
    expect(lines[0]).toBe("line 151");
    expect(lines[lines.length - 1]).toBe(`line ${MAX_LOG_LINES + 150}`);
    expect(screen.getByTestId("log-status")).toHaveTextContent("150 older lines dropped");
  });

  it("shows the server's message when it refuses another follow stream (429)", async () => {
    const limit = "at most 3 log streams may be followed at once; stop one (close a tab) and retry";
    stubFetch((c) =>
      c.url.searchParams.get("follow") === "true"
        ? new Response(JSON.stringify({ error: limit }), { status: 429, headers: { "Content-Type": "application/json" } })
        : textResponse("ready\n"),
    );
    render(<LogViewer deployment="shop" services={["web"]} />);
    await screen.findByText("ready");
    const user = userEvent.setup();
    await user.click(screen.getByRole("checkbox", { name: "Follow" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Too many log streams");
    expect(within(alert).getByText(limit)).toBeInTheDocument();
    // Not following after all.
    expect(screen.getByRole("checkbox", { name: "Follow" })).not.toBeChecked();
  });

  it("reads the chosen service, tail and previous container", async () => {
    const calls = stubFetch((c) => textResponse(`${c.url.searchParams.get("service")}\n`));
    render(<LogViewer deployment="shop" services={["web", "worker"]} initialService="worker" />);
    await screen.findByText("worker");
    const user = userEvent.setup();
    await user.selectOptions(screen.getByLabelText("Service"), "web");
    await screen.findByText("web", { selector: "[data-line]" });
    await user.selectOptions(screen.getByLabelText("Lines"), "last 100");
    await user.click(screen.getByRole("checkbox", { name: "Previous container" }));
    await waitFor(() => expect(calls).toHaveLength(4));
    expect(Object.fromEntries(calls[3].url.searchParams)).toEqual({ service: "web", previous: "true", tail: "100", follow: "false" });
  });

  it("says plainly that a service has no pod yet (404)", async () => {
    stubFetch(() => new Response(JSON.stringify({ error: "service web has no pod yet" }), { status: 404 }));
    render(<LogViewer deployment="shop" services={["web"]} />);
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("No logs to show");
    expect(alert).toHaveTextContent("service web has no pod yet");
  });
});
