import "server-only";

import { ConfigError } from "@/lib/server/runpod";
import { RequestError } from "@/lib/server/validate";

// Every accepted job costs GPU time on the endpoint, so one visitor may start only so many per window.
// JOB_RATE_LIMIT="<jobs>/<seconds>" (default 20 an hour per client); "0" turns it off. Counts live in this
// process: run several instances and each counts on its own.
const DEFAULT_LIMIT = "20/3600";
const MAX_CLIENTS = 10_000; // beyond this the longest-idle clients are forgotten, so memory stays bounded

export interface RateLimit {
  jobs: number;
  windowMs: number;
}

export function rateLimitConfig(env: NodeJS.ProcessEnv = process.env): RateLimit | null {
  const raw = (env.JOB_RATE_LIMIT ?? DEFAULT_LIMIT).trim();
  if (raw === "0") return null;
  const match = /^(\d+)\/(\d+)$/.exec(raw);
  if (!match || Number(match[1]) < 1 || Number(match[2]) < 1) {
    throw new ConfigError('JOB_RATE_LIMIT must be "<jobs>/<seconds>" (e.g. "20/3600") or "0"');
  }
  return { jobs: Number(match[1]), windowMs: Number(match[2]) * 1000 };
}

/**
 * Who is asking: the last X-Forwarded-For hop, which is the address the nearest proxy saw (Vercel, nginx's
 * $proxy_add_x_forwarded_for) or, with no proxy in front, the one `next start` itself records. Without a proxy a
 * client can forge the header, so deploy behind one.
 */
export function clientKey(request: Request): string {
  const hops = (request.headers.get("x-forwarded-for") ?? "").split(",").map((hop) => hop.trim()).filter(Boolean);
  return hops.at(-1) ?? request.headers.get("x-real-ip") ?? "unknown";
}

const startsByClient = new Map<string, number[]>(); // start times (ms) within the window, oldest first

/** Record one job start for `key`, or throw RATE_LIMITED (HTTP 429) with the seconds until the next slot. */
export function takeJobSlot(key: string, limit: RateLimit, now = Date.now()): void {
  const recent = (startsByClient.get(key) ?? []).filter((started) => now - started < limit.windowMs);
  if (recent.length >= limit.jobs) {
    const retryAfter = Math.ceil((recent[0] + limit.windowMs - now) / 1000);
    throw new RequestError("RATE_LIMITED", `Too many avatars from this address; try again in ${retryAfter} s`, 429,
      { "Retry-After": String(retryAfter) });
  }
  recent.push(now);
  startsByClient.delete(key); // re-inserted last: Map order is then least recently active first
  startsByClient.set(key, recent);
  for (const idle of startsByClient.keys()) {
    if (startsByClient.size <= MAX_CLIENTS) break;
    startsByClient.delete(idle);
  }
}
