// A few line icons (24×24, stroke), drawn here to keep dependencies small.
const PATHS: Record<string, string> = {
  dashboard: "M3 3h7v9H3zM14 3h7v5h-7zM14 12h7v9h-7zM3 16h7v5H3z",
  templates: "M4 4h16v6H4zM4 14h7v6H4zM15 14h5v6h-5z",
  deployments: "M12 2l9 5v10l-9 5-9-5V7zM12 22V12M21 7l-9 5-9-5",
  secrets: "M5 11h14v10H5zM8 11V7a4 4 0 0 1 8 0v4M12 15v2",
  tokens: "M15 7a4 4 0 1 1-3.9 5H7v3H4v-3H2V9h9.1A4 4 0 0 1 15 7z",
  account: "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM4 21a8 8 0 0 1 16 0",
  teams: "M9 11a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM2 20a7 7 0 0 1 14 0M16 5a3 3 0 0 1 0 6M18 14a6 6 0 0 1 4 6",
  billing: "M2 6h20v12H2zM2 10h20M6 15h4",
  sparkles: "M12 3l1.8 4.6L18 9l-4.2 1.4L12 15l-1.8-4.6L6 9l4.2-1.4zM19 14l.8 2 2 .8-2 .8-.8 2-.8-2-2-.8 2-.8z",
  menu: "M3 6h18M3 12h18M3 18h18",
  close: "M6 6l12 12M18 6L6 18",
};

export type IconName = keyof typeof PATHS;

export function Icon({ name, size = 18 }: { name: IconName; size?: number }) {
  return (
    <svg
      className="icon"
      width={size}
      height={size}
      viewBox="0 0 24 24"
      fill="none"
      stroke="currentColor"
      strokeWidth={1.8}
      strokeLinecap="round"
      strokeLinejoin="round"
      aria-hidden="true"
      focusable="false"
    >
      <path d={PATHS[name]} />
    </svg>
  );
}
