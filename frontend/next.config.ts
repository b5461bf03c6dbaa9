import type { NextConfig } from "next";

import { analyticsEnabled, VERCEL_SCRIPT_HOST } from "./lib/analytics";

const development = process.env.NODE_ENV === "development";

// The page loads nothing from other origins and talks only to its own API routes. Next's App Router writes its
// hydration data as inline scripts, so scripts need 'unsafe-inline' (a nonce would force every page dynamic);
// `next dev` also evaluates code. Images: the pack's art, and blob:/data: URLs of the photo and the avatar.
// Vercel Analytics and Speed Insights (lib/analytics.ts) need nothing more when deployed (same origin); in
// `next dev` their debug scripts come from Vercel's script host, allowed only then and only when they are on.
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  [
    "script-src 'self' 'unsafe-inline'",
    development && "'unsafe-eval'",
    development && analyticsEnabled() && VERCEL_SCRIPT_HOST,
  ].filter(Boolean).join(" "),
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const nextConfig: NextConfig = {
  poweredByHeader: false,
  reactStrictMode: true,
  // This app lives in a subfolder of a Python repository: keep Turbopack and output tracing inside it.
  turbopack: { root: __dirname },
  outputFileTracingRoot: __dirname,
  async headers() {
    return [
      {
        source: "/:path*",
        headers: [
          { key: "Content-Security-Policy", value: CONTENT_SECURITY_POLICY },
          { key: "X-Content-Type-Options", value: "nosniff" },
          { key: "Referrer-Policy", value: "no-referrer" },
          { key: "X-Frame-Options", value: "DENY" },
          { key: "Permissions-Policy", value: "camera=(self), microphone=(), geolocation=()" },
        ],
      },
    ];
  },
};

export default nextConfig;
