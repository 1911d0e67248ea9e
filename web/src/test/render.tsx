import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render } from "@testing-library/react";
import type { ReactElement } from "react";
import { MemoryRouter } from "react-router";
import { Toasts } from "../components/Toasts";

/** Renders `ui` with a fresh query client and a memory router. */
export function renderWithProviders(ui: ReactElement, { route = "/" }: { route?: string } = {}) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false }, mutations: { retry: false } } });
  return {
    client,
    ...render(
      <QueryClientProvider client={client}>
        <Toasts>
          <MemoryRouter initialEntries={[route]}>{ui}</MemoryRouter>
        </Toasts>
      </QueryClientProvider>,
    ),
  };
}

/** A fetch mock answering by "METHOD path" and recording every call. */
export function mockFetch(routes: Record<string, (body: unknown) => { status?: number; body?: unknown }>) {
  const calls: { method: string; path: string; body: unknown; headers: Record<string, string>; credentials?: string }[] = [];
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.toString() : input.url;
    const method = (init?.method ?? "GET").toUpperCase();
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    calls.push({ method, path: url, body, headers: (init?.headers ?? {}) as Record<string, string>, credentials: init?.credentials });
    const handler = routes[`${method} ${url}`];
    if (!handler) return new Response(JSON.stringify({ error: `no mock for ${method} ${url}` }), { status: 404 });
    const r = handler(body);
    const status = r.status ?? 200;
    return new Response(status === 204 ? null : JSON.stringify(r.body ?? {}), {
      status,
      headers: { "Content-Type": "application/json" },
    });
  });
  vi.stubGlobal("fetch", fn);
  return { fn, calls };
}
