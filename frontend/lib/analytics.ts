// Vercel Web Analytics and Speed Insights load only with VERCEL_ANALYTICS=1 (and their switches on in the Vercel
// project). Deployed, their scripts and beacons are this origin's own /_vercel/insights/* and
// /_vercel/speed-insights/*; only `next dev` loads the debug scripts from Vercel's script host.
export const VERCEL_SCRIPT_HOST = "https://va.vercel-scripts.com";

export function analyticsEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.VERCEL_ANALYTICS === "1";
}
