// Live deployment updates over /api/events (Server-Sent Events): the `snapshot` event replaces the
// list, `deployment` events update or remove one entry, `resync` refetches. EventSource reconnects
// by itself (a new snapshot follows); when the stream is closed for good it is reopened after a
// pause.
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { keys, storeDeployment } from "./hooks";
import type { Deployment, DeploymentChange, DeploymentDetail } from "./types";

export type LiveState = "connecting" | "live" | "offline";

const LiveContext = createContext<LiveState>("connecting");

export const useLiveState = () => useContext(LiveContext);

export function LiveUpdates({ children }: { children: ReactNode }) {
  const qc = useQueryClient();
  const [state, setState] = useState<LiveState>("connecting");

  useEffect(() => {
    if (typeof EventSource === "undefined") {
      setState("offline");
      return;
    }
    let es: EventSource | null = null;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;

    const open = () => {
      es = new EventSource("/api/events", { withCredentials: true });
      es.onopen = () => setState("live");
      es.onerror = () => {
        if (!es || es.readyState === EventSource.CLOSED) {
          setState("offline");
          es?.close();
          if (!stopped) retry = setTimeout(open, 5000);
        } else {
          setState("connecting");
        }
      };
      es.addEventListener("snapshot", (ev) => {
        const data = JSON.parse((ev as MessageEvent<string>).data) as { deployments: Deployment[] };
        setState("live");
        qc.setQueryData(keys.deployments, data.deployments);
        for (const d of data.deployments) storeDeployment(qc, d);
      });
      es.addEventListener("deployment", (ev) => {
        const change = JSON.parse((ev as MessageEvent<string>).data) as DeploymentChange;
        if (change.type === "applied") {
          storeDeployment(qc, change.deployment);
          // Events and rendered manifests are only in the detail: refresh it in the background.
          void qc.invalidateQueries({ queryKey: keys.deployment(change.deployment.name), exact: true });
        } else if (change.type === "deleted") {
          // A list read still on its way (the refetch after a delete) was answered before this
          // deletion and would bring the app back when it lands: fetch it again instead.
          if (qc.isFetching({ queryKey: keys.deployments, exact: true }) > 0) {
            void qc.invalidateQueries({ queryKey: keys.deployments, exact: true });
          }
          qc.setQueryData<Deployment[]>(keys.deployments, (list) => list?.filter((d) => d.name !== change.name));
          qc.setQueryData<DeploymentDetail>(keys.deployment(change.name), (old) =>
            old ? { ...old, phase: "Deleting", ready: false } : old,
          );
          void qc.invalidateQueries({ queryKey: keys.deployment(change.name), exact: true });
          void qc.invalidateQueries({ queryKey: keys.me });
        }
      });
      es.addEventListener("resync", () => {
        void qc.invalidateQueries({ queryKey: keys.deployments });
        void qc.invalidateQueries({ queryKey: ["deployment"] });
      });
    };
    open();
    return () => {
      stopped = true;
      clearTimeout(retry);
      es?.close();
    };
  }, [qc]);

  return <LiveContext.Provider value={state}>{children}</LiveContext.Provider>;
}
