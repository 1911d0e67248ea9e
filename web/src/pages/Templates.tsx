import { useEffect, useMemo, useState } from "react";
import { Link, useSearchParams } from "react-router";
import { useTemplates } from "../api/hooks";
import type { Template } from "../api/types";
import { PageHeader } from "../components/Layout";
import { Badge } from "../components/StatusBadge";
import { Empty, ErrorState, Loading } from "../components/States";
import { ViewerNote } from "../components/ViewerNote";

/** Templates matching a search text (name, display name, description, category) and a category. */
export function filterTemplates(all: Template[], q: string, category: string): Template[] {
  const words = q.toLowerCase().split(/\s+/).filter(Boolean);
  return all.filter((t) => {
    if (category && t.category !== category) return false;
    const hay = `${t.name} ${t.displayName} ${t.description} ${t.category}`.toLowerCase();
    return words.every((w) => hay.includes(w));
  });
}

export function Templates() {
  const templates = useTemplates();
  // The search and the category live in the address, so they survive a reload and can be shared.
  // The inputs read React state, written to the address after each change: two changes in a row
  // (clear the search, then pick a category) would otherwise build the second address from the
  // first one's stale parameters, and the cleared search came back.
  const [params, setParams] = useSearchParams();
  const [q, setQ] = useState(() => params.get("q") ?? "");
  const [category, setCategory] = useState(() => params.get("category") ?? "");
  useEffect(() => {
    setParams(
      (old) => {
        const next = new URLSearchParams(old);
        for (const [k, v] of [
          ["q", q],
          ["category", category],
        ] as const) {
          if (v) next.set(k, v);
          else next.delete(k);
        }
        return next;
      },
      { replace: true },
    );
  }, [q, category, setParams]);
  const categories = useMemo(
    () => Array.from(new Set((templates.data ?? []).map((t) => t.category).filter(Boolean))).sort(),
    [templates.data],
  );
  const shown = useMemo(() => filterTemplates(templates.data ?? [], q, category), [templates.data, q, category]);

  return (
    <>
      <PageHeader title="Templates" subtitle="Apps you can deploy to your sandbox." />
      <ViewerNote />
      <div className="toolbar" role="search">
        <div className="field field-inline grow">
          <label htmlFor="template-search" className="sr-only">
            Search templates
          </label>
          <input
            id="template-search"
            type="search"
            placeholder="Search templates…"
            value={q}
            onChange={(e) => setQ(e.target.value)}
          />
        </div>
        <div className="field field-inline">
          <label htmlFor="template-category" className="sr-only">
            Category
          </label>
          <select id="template-category" value={category} onChange={(e) => setCategory(e.target.value)}>
            <option value="">All categories</option>
            {categories.map((c) => (
              <option key={c} value={c}>
                {c}
              </option>
            ))}
          </select>
        </div>
      </div>
      {templates.isPending ? (
        <Loading label="Loading the catalog…" />
      ) : templates.error ? (
        <ErrorState error={templates.error} retry={() => void templates.refetch()} />
      ) : templates.data.length === 0 ? (
        <Empty title="The catalog is empty">No templates are installed yet; an administrator adds them to the platform namespace.</Empty>
      ) : shown.length === 0 ? (
        <Empty
          title="No template matches"
          action={
            <button type="button" className="btn" onClick={() => setParams({}, { replace: true })}>
              Clear the filters
            </button>
          }
        />
      ) : (
        <>
          <p className="sr-only" role="status">
            {shown.length} template{shown.length === 1 ? "" : "s"}
          </p>
          <ul className="cards" aria-label="Templates">
            {shown.map((t) => (
              <li key={`${t.namespace}/${t.name}`} className="card card-link template-card">
                <div className="card-row">
                  <Link to={`/templates/${encodeURIComponent(t.name)}`} className="card-title">
                    {t.displayName || t.name}
                  </Link>
                  {t.category && <Badge tone="muted">{t.category}</Badge>}
                </div>
                <p className="muted">{t.description || "No description."}</p>
                <p className="small muted">
                  {t.services.length} service{t.services.length === 1 ? "" : "s"} · {t.parameters.length} parameter
                  {t.parameters.length === 1 ? "" : "s"}
                  {t.system ? " · system" : " · yours"}
                  {t.valid === false && (
                    <>
                      {" "}
                      · <span className="error-text">invalid</span>
                    </>
                  )}
                </p>
              </li>
            ))}
          </ul>
        </>
      )}
    </>
  );
}
