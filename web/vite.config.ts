/// <reference types="vitest/config" />
import { defineConfig, type ProxyOptions } from "vite";
import react from "@vitejs/plugin-react";

// The Rust API the dev server forwards to (hack/dev starts it on :8081).
const api = process.env.API_URL ?? "http://127.0.0.1:8081";
// The origin of the server's BASE_URL (hack/dev: http://localhost:8081).
const apiOrigin = process.env.API_ORIGIN ?? "http://localhost:8081";
const devPort = Number(process.env.PORT ?? 5173);

// The origins of this dev server's own pages.
const devOrigins = ["localhost", "127.0.0.1", "[::1]"].map((h) => `http://${h}:${devPort}`);

// Paths the server owns; everything else is the single-page app.
const serverPaths = ["/api", "/login", "/logout", "/oauth2", "/dev", "/health", "/readyz", "/metrics"];

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 600,
  },
  server: {
    port: devPort,
    strictPort: true,
    proxy: Object.fromEntries(
      serverPaths.map((p): [string, ProxyOptions] => [
        p,
        {
          target: api,
          changeOrigin: true,
          // The server's CSRF rule accepts state-changing requests from BASE_URL's origin only.
          // In development the page comes from this dev server, so a request that the browser
          // marked as coming from here is presented as coming from the API's own origin.
          configure: (proxy) => {
            proxy.on("proxyReq", (req) => {
              const origin = req.getHeader("origin");
              if (typeof origin === "string" && devOrigins.includes(origin)) {
                req.setHeader("origin", apiOrigin);
              }
            });
          },
        },
      ]),
    ),
  },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["./src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
    css: false,
  },
});
