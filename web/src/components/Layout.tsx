// The frame of every signed-in page: a header with the current sandbox (the team switcher), the
// live-updates indicator, the dev-mode badge and the user, and the navigation (a side bar on wide
// screens, a menu on narrow ones).
import { useEffect, useState } from "react";
import { NavLink, Outlet, useLocation } from "react-router";
import { useConfig, useMe } from "../api/hooks";
import { useLiveState } from "../api/live";
import { Icon, type IconName } from "./Icon";
import { TeamSwitcher } from "./TeamSwitcher";

const NAV: { to: string; label: string; icon: IconName; end?: boolean }[] = [
  { to: "/", label: "Dashboard", icon: "dashboard", end: true },
  { to: "/templates", label: "Templates", icon: "templates" },
  { to: "/deployments", label: "Deployments", icon: "deployments" },
  { to: "/secrets", label: "Secrets", icon: "secrets" },
  { to: "/teams", label: "Teams", icon: "teams" },
  { to: "/tokens", label: "API tokens", icon: "tokens" },
  { to: "/billing", label: "Billing", icon: "billing" },
  { to: "/account", label: "Account", icon: "account" },
];

// Entries of later issues: shown, not yet usable.
const SOON: { label: string; icon: IconName }[] = [
  { label: "Generate template", icon: "sparkles" },
];

export function Layout() {
  const config = useConfig();
  const me = useMe();
  const live = useLiveState();
  const [menuOpen, setMenuOpen] = useState(false);
  const location = useLocation();
  useEffect(() => setMenuOpen(false), [location.pathname]);

  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <button
          type="button"
          className="btn btn-ghost btn-icon menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="sidebar"
          aria-label={menuOpen ? "Close navigation" : "Open navigation"}
          onClick={() => setMenuOpen((o) => !o)}
        >
          <Icon name={menuOpen ? "close" : "menu"} size={22} />
        </button>
        <NavLink to="/" className="brand" aria-label="k8s-scheduler home">
          <img src="/favicon.svg" alt="" width={24} height={24} />
          <span>k8s-scheduler</span>
        </NavLink>
        <TeamSwitcher />
        <div className="topbar-right">
          {config.data?.devMode && (
            <span className="badge badge-warn" data-testid="dev-mode" title="DEV_MODE: authentication is off">
              dev mode
            </span>
          )}
          <span className={`live live-${live}`} role="status" aria-live="polite" title="Live updates from /api/events">
            <span className="dot" aria-hidden="true" />
            <span className="live-label">{live === "live" ? "Live" : live === "connecting" ? "Connecting" : "Offline"}</span>
          </span>
          {me.data && (
            <NavLink to="/account" className="user-chip" aria-label={`Account of ${me.data.user.email}`}>
              <span className="avatar" aria-hidden="true">
                {(me.data.user.name || me.data.user.email).slice(0, 1).toUpperCase()}
              </span>
              <span className="user-email">{me.data.user.email}</span>
            </NavLink>
          )}
        </div>
      </header>
      <nav id="sidebar" className={`sidebar${menuOpen ? " open" : ""}`} aria-label="Main">
        <div className="sidebar-inner">
        <ul>
          {NAV.map((n) => (
            <li key={n.to}>
              <NavLink to={n.to} end={n.end}>
                <Icon name={n.icon} />
                {n.label}
              </NavLink>
            </li>
          ))}
        </ul>
        <p className="nav-heading" id="soon-heading">
          Coming soon
        </p>
        <ul aria-labelledby="soon-heading">
          {SOON.map((s) => (
            <li key={s.label}>
              <span className="nav-disabled" aria-disabled="true">
                <Icon name={s.icon} />
                {s.label}
              </span>
            </li>
          ))}
        </ul>
        </div>
      </nav>
      <main id="main" className="content" tabIndex={-1}>
        <Outlet />
      </main>
    </div>
  );
}

/** A page's title row. */
export function PageHeader({ title, children, subtitle }: { title: React.ReactNode; subtitle?: React.ReactNode; children?: React.ReactNode }) {
  useEffect(() => {
    if (typeof title === "string") document.title = `${title} · k8s-scheduler`;
  }, [title]);
  return (
    <div className="page-header">
      <div>
        <h1>{title}</h1>
        {subtitle && <div className="subtitle">{subtitle}</div>}
      </div>
      {children && <div className="page-actions">{children}</div>}
    </div>
  );
}
