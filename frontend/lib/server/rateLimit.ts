import "server-only";

import { ConfigError } from "@/lib/server/runpod";
import { type RateLimit, sharedState } from "@/lib/server/sharedState";
import { RequestError } from "@/lib/server/validate";

// Every accepted job costs GPU time on the endpoint, so one visitor may start only so many per window.
// JOB_RATE_LIMIT="<jobs>/<seconds>" (default 20 an hour per client); "0" turns it off. Counts are shared by every
// instance when REDIS_URL is set (lib/server/sharedState.ts), else kept per process.
const DEFAULT_LIMIT = "20/3600";

export function rateLimitConfig(env: NodeJS.ProcessEnv = process.env): RateLimit | null {
  const raw = (env.JOB_RATE_LIMIT ?? DEFAULT_LIMIT).trim();
  if (raw === "0") return null;
  const match = /^(\d+)\/(\d+)$/.exec(raw);
  if (!match || Number(match[1]) < 1 || Number(match[2]) < 1) {
    throw new ConfigError('JOB_RATE_LIMIT must be "<jobs>/<seconds>" (e.g. "20/3600") or "0"');
  }
  return { jobs: Number(match[1]), windowMs: Number(match[2]) * 1000 };
}

/** Record one job start for `client` (lib/server/clientAddress.ts), or throw RATE_LIMITED (HTTP 429) naming the wait. */
export async function takeJobSlot(client: string, limit: RateLimit): Promise<void> {
  const waitMs = await sharedState().takeJobSlot(client, limit);
  if (waitMs <= 0) return;
  const retryAfter = Math.ceil(waitMs / 1000);
  const minutes = Math.ceil(retryAfter / 60);
  throw new RequestError("RATE_LIMITED",
    `Too many avatars from this address; try again in ${minutes} minute${minutes === 1 ? "" : "s"}`, 429,
    { "Retry-After": String(retryAfter) });
}
