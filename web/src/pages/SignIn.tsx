import { useEffect } from "react";
import { Navigate, useSearchParams } from "react-router";
import { useQueryClient } from "@tanstack/react-query";
import { useConfig, useMe, keys } from "../api/hooks";
import { Loading, ErrorState } from "../components/States";

/** A same-origin path to return to after signing in (never another site). */
export function safeRedirect(r: string | null): string {
  if (!r || !r.startsWith("/") || r.startsWith("//") || r.startsWith("/\\") || r.startsWith("/signin")) return "/";
  return r;
}

export function SignIn() {
  const [params] = useSearchParams();
  const redirect = safeRedirect(params.get("redirect"));
  const signedOut = params.has("signedOut");
  const config = useConfig();
  const me = useMe();
  const qc = useQueryClient();
  useEffect(() => {
    document.title = "Sign in · k8s-scheduler";
  }, []);

  if (config.isPending || me.isPending) return <Loading label="Checking your session…" />;
  if (config.error) return <ErrorState error={config.error} retry={() => void config.refetch()} />;
  const devMode = config.data.devMode;
  // DEV_MODE signs every request in: go straight on (unless one just signed out).
  if (me.data && !signedOut) return <Navigate to={redirect} replace />;

  return (
    <div className="signin">
      <div className="signin-card card">
        <img src="/favicon.svg" alt="" width={48} height={48} />
        <h1>Sign in to k8s-scheduler</h1>
        <p className="muted">Deploy apps from templates to your own Kubernetes sandbox.</p>
        {signedOut && <p role="status">You are signed out.</p>}
        {devMode ? (
          <>
            <p>
              <span className="badge badge-warn" data-testid="dev-mode">
                dev mode
              </span>{" "}
              Authentication is off: every request is signed in as <code>dev@localhost</code>.
            </p>
            <button
              type="button"
              className="btn btn-primary btn-block"
              onClick={() => {
                void qc.invalidateQueries({ queryKey: keys.me });
                window.location.assign(`/login?redirect=${encodeURIComponent(redirect)}`);
              }}
            >
              Continue as dev@localhost
            </button>
          </>
        ) : (
          <a className="btn btn-google btn-block" href={`/login?redirect=${encodeURIComponent(redirect)}`}>
            <svg width="18" height="18" viewBox="0 0 48 48" aria-hidden="true">
              <path fill="#EA4335" d="M24 9.5c3.5 0 6.6 1.2 9.1 3.6l6.8-6.8C35.8 2.4 30.3 0 24 0 14.6 0 6.6 5.4 2.7 13.3l7.9 6.1C12.5 13.6 17.8 9.5 24 9.5z" />
              <path fill="#4285F4" d="M46.1 24.6c0-1.6-.1-3.1-.4-4.6H24v9h12.4c-.5 2.9-2.2 5.3-4.6 6.9l7.4 5.8c4.3-4 6.9-9.9 6.9-17.1z" />
              <path fill="#FBBC05" d="M10.6 28.6A14.5 14.5 0 0 1 9.5 24c0-1.6.3-3.2.8-4.6l-7.9-6.1A24 24 0 0 0 0 24c0 3.9.9 7.5 2.6 10.7l8-6.1z" />
              <path fill="#34A853" d="M24 48c6.5 0 11.9-2.1 15.9-5.8l-7.4-5.8c-2.1 1.4-4.8 2.3-8.5 2.3-6.2 0-11.5-4.1-13.4-9.8l-8 6.1C6.6 42.6 14.6 48 24 48z" />
            </svg>
            Sign in with Google
          </a>
        )}
      </div>
    </div>
  );
}
