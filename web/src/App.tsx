import { Fragment, type ReactNode } from "react";
import { QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { ApiError } from "./api/client";
import { BrowserRouter, Route, Routes } from "react-router";
import { keys, shouldRetry, useMe } from "./api/hooks";
import { LiveUpdates } from "./api/live";
import { Layout } from "./components/Layout";
import { RequireAuth } from "./components/RequireAuth";
import { Toasts } from "./components/Toasts";
import { AcceptInvitation } from "./pages/AcceptInvitation";
import { Account } from "./pages/Account";
import { Billing } from "./pages/Billing";
import { Dashboard } from "./pages/Dashboard";
import { Deploy } from "./pages/Deploy";
import { DeploymentDetail } from "./pages/DeploymentDetail";
import { Deployments } from "./pages/Deployments";
import { NotFound } from "./pages/NotFound";
import { Secrets } from "./pages/Secrets";
import { SignIn } from "./pages/SignIn";
import { TeamDetail } from "./pages/TeamDetail";
import { Teams } from "./pages/Teams";
import { TemplateDetail } from "./pages/TemplateDetail";
import { Templates } from "./pages/Templates";
import { Tokens } from "./pages/Tokens";

export function makeQueryClient() {
  const client: QueryClient = new QueryClient({
    // A 401 anywhere means the session ended: asking /api/me again sends the page to /signin.
    queryCache: new QueryCache({
      onError: (e, q) => {
        if (e instanceof ApiError && e.status === 401 && q.queryKey[0] !== keys.me[0]) {
          void client.invalidateQueries({ queryKey: keys.me });
        }
      },
    }),
    defaultOptions: {
      queries: { retry: shouldRetry, staleTime: 5_000, refetchOnWindowFocus: true },
      mutations: { retry: false },
    },
  });
  return client;
}

/**
 * Everything below it is built afresh when the current sandbox changes (a team switch, accepting an
 * invitation, leaving the current team): page state and the /api/events stream belong to one
 * sandbox, and the server answers a new stream for the new one.
 */
export function SandboxScope({ children }: { children: ReactNode }) {
  const me = useMe();
  return <Fragment key={me.data?.team?.id ?? "personal"}>{children}</Fragment>;
}

/** The routes; kept apart from the router so that tests can use a memory router. */
export function AppRoutes() {
  return (
    <Routes>
      <Route path="/signin" element={<SignIn />} />
      <Route
        element={
          <RequireAuth>
            <SandboxScope>
              <LiveUpdates>
                <Layout />
              </LiveUpdates>
            </SandboxScope>
          </RequireAuth>
        }
      >
        <Route index element={<Dashboard />} />
        <Route path="templates" element={<Templates />} />
        <Route path="templates/:name" element={<TemplateDetail />} />
        <Route path="templates/:name/deploy" element={<Deploy />} />
        <Route path="deployments" element={<Deployments />} />
        <Route path="deployments/:name" element={<DeploymentDetail />} />
        <Route path="secrets" element={<Secrets />} />
        <Route path="tokens" element={<Tokens />} />
        <Route path="teams" element={<Teams />} />
        <Route path="teams/:team" element={<TeamDetail />} />
        <Route path="invitations/:token" element={<AcceptInvitation />} />
        <Route path="account" element={<Account />} />
        <Route path="billing" element={<Billing />} />
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}

export function App({ client = makeQueryClient() }: { client?: QueryClient }) {
  return (
    <QueryClientProvider client={client}>
      <Toasts>
        <BrowserRouter>
          <AppRoutes />
        </BrowserRouter>
      </Toasts>
    </QueryClientProvider>
  );
}
