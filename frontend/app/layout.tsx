import { Analytics } from "@vercel/analytics/next";
import { SpeedInsights } from "@vercel/speed-insights/next";
import type { Metadata, Viewport } from "next";
import type { ReactNode } from "react";

import { analyticsEnabled } from "@/lib/analytics";

import "./globals.css";

// Rendered per request, so that VERCEL_ANALYTICS is read where the page runs, not where it was built.
export const dynamic = "force-dynamic";

export const metadata: Metadata = {
  title: "ETHMumbai Avatar",
  description: "Turn a selfie into your ETHMumbai avatar.",
  icons: { icon: "/brand/ethmumbai_night.png" },
};

export const viewport: Viewport = {
  width: "device-width",
  initialScale: 1,
  themeColor: "#1b1464",
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        {children}
        {/* Vercel Web Analytics and Speed Insights: page views and Web Vitals, no cookies; only when switched on. */}
        {analyticsEnabled() && (
          <>
            <Analytics />
            <SpeedInsights />
          </>
        )}
      </body>
    </html>
  );
}
