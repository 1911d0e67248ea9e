import { Navigate, useLocation } from "react-router";
import { ApiError } from "../api/client";
import { useMe } from "../api/hooks";
import { ErrorState, Loading } from "./States";

/** Renders `children` once `/api/me` answers; sends people who are not signed in to /signin. */
export function RequireAuth({ children }: { children: React.ReactNode }) {
  const me = useMe();
  const location = useLocation();
  if (me.isPending) return <Loading label="Signing in…" />;
  if (me.error instanceof ApiError && me.error.status === 401) {
    const redirect = location.pathname + location.search;
    return <Navigate to={`/signin?redirect=${encodeURIComponent(redirect)}`} replace />;
  }
  if (me.error) return <ErrorState error={me.error} retry={() => void me.refetch()} title="The server cannot tell who you are" />;
  return <>{children}</>;
}
