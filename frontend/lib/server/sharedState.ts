import "server-only";

import { createHash, randomUUID } from "node:crypto";

import { createClient } from "redis";

import type { JobView } from "@/lib/jobs";

// State the page's server keeps: per-client job starts (the rate limit) and, for the local worker API, each job's
// view. With REDIS_URL (Vercel KV / Upstash / any Redis) it lives there, so every instance sees the same counts and
// jobs; every change is one Lua script, so two instances never interleave a read and a write. Without it, this
// process's memory.

export interface RateLimit {
  jobs: number;
  windowMs: number;
}

export interface LocalJob {
  view: JobView;
  finished: boolean;
  progressDigest: string; // sha256 of the job's progress secret (lib/server/jobToken.ts)
}

export interface SharedState {
  /** Count one job start for `client`; → 0 when allowed, else the ms until a slot frees up. */
  takeJobSlot(client: string, limit: RateLimit): Promise<number>;
  createJob(id: string, job: LocalJob, ttlMs: number): Promise<void>;
  getJob(id: string): Promise<LocalJob | null>;
  /** Replace the view of a job still running (finish: and end it, kept `keepMs` more); false if unknown or ended. */
  updateJob(id: string, view: JobView, finish: boolean, keepMs: number): Promise<boolean>;
}

export class StateError extends Error {}

const MAX_CLIENTS = 10_000; // memory only: beyond this the longest-idle clients are forgotten

/** Clients are kept by a digest of their address, never the address itself. */
function clientId(client: string): string {
  return createHash("sha256").update(client).digest("hex").slice(0, 32);
}

class MemoryState implements SharedState {
  private starts = new Map<string, number[]>(); // start times (ms) within the window, oldest first
  private jobs = new Map<string, LocalJob & { expiresAt: number }>();

  async takeJobSlot(client: string, limit: RateLimit, now = Date.now()): Promise<number> {
    const key = clientId(client);
    const recent = (this.starts.get(key) ?? []).filter((started) => now - started < limit.windowMs);
    if (recent.length >= limit.jobs) return recent[0] + limit.windowMs - now;
    recent.push(now);
    this.starts.delete(key); // re-inserted last: Map order is then least recently active first
    this.starts.set(key, recent);
    for (const idle of this.starts.keys()) {
      if (this.starts.size <= MAX_CLIENTS) break;
      this.starts.delete(idle);
    }
    return 0;
  }

  async createJob(id: string, job: LocalJob, ttlMs: number): Promise<void> {
    this.prune();
    this.jobs.set(id, { ...job, expiresAt: Date.now() + ttlMs });
  }

  async getJob(id: string): Promise<LocalJob | null> {
    this.prune();
    const job = this.jobs.get(id);
    return job ? { view: job.view, finished: job.finished, progressDigest: job.progressDigest } : null;
  }

  async updateJob(id: string, view: JobView, finish: boolean, keepMs: number): Promise<boolean> {
    this.prune();
    const job = this.jobs.get(id);
    if (!job || job.finished) return false;
    job.view = view;
    if (finish) Object.assign(job, { finished: true, expiresAt: Date.now() + keepMs });
    return true;
  }

  private prune(now = Date.now()): void {
    for (const [id, job] of this.jobs) if (job.expiresAt <= now) this.jobs.delete(id);
  }
}

// Sliding window in a sorted set scored by the Redis server's clock (one clock for every instance).
const TAKE_SLOT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
`;

// The first end wins: a job cancelled here stays cancelled, and a late update or result is dropped.
const UPDATE_JOB = `
if redis.call('HGET', KEYS[1], 'finished') ~= '0' then return 0 end
redis.call('HSET', KEYS[1], 'view', ARGV[1])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'finished', '1')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
`;

const CONNECT_TIMEOUT_MS = 3_000;
const RECONNECT_TRIES = 3;

// Fail fast rather than hold a visitor's request: a few quick reconnects, then the client gives up (the next request
// makes a new one), and no command waits in an offline queue.
function newClient(url: string) {
  return createClient({
    url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnectStrategy: (retries: number) =>
        retries >= RECONNECT_TRIES ? new Error("Redis unreachable") : Math.min(100 * 2 ** retries, 1_000),
    },
  });
}

type Redis = ReturnType<typeof newClient>;

class RedisState implements SharedState {
  constructor(readonly connection: Promise<Redis>) {}

  private async run<T>(command: (redis: Redis) => Promise<T>): Promise<T> {
    try {
      return await command(await this.connection);
    } catch (err) {
      console.error(`shared state (Redis) failed: ${(err as Error).name}: ${(err as Error).message}`);
      forget(this);
      throw new StateError("shared state unavailable");
    }
  }

  takeJobSlot(client: string, limit: RateLimit): Promise<number> {
    return this.run(async (redis) => Number(await redis.eval(TAKE_SLOT, {
      keys: [`ethmumbai:starts:${clientId(client)}`],
      arguments: [String(limit.windowMs), String(limit.jobs), randomUUID()],
    })));
  }

  createJob(id: string, job: LocalJob, ttlMs: number): Promise<void> {
    return this.run(async (redis) => {
      await redis.multi()
        .hSet(jobKey(id), { view: JSON.stringify(job.view), finished: job.finished ? "1" : "0",
          progress: job.progressDigest })
        .pExpire(jobKey(id), ttlMs)
        .exec();
    });
  }

  getJob(id: string): Promise<LocalJob | null> {
    return this.run(async (redis) => {
      const fields = await redis.hGetAll(jobKey(id));
      if (!fields.view) return null;
      return { view: JSON.parse(fields.view) as JobView, finished: fields.finished === "1",
        progressDigest: fields.progress ?? "" };
    });
  }

  updateJob(id: string, view: JobView, finish: boolean, keepMs: number): Promise<boolean> {
    return this.run(async (redis) => Number(await redis.eval(UPDATE_JOB, {
      keys: [jobKey(id)],
      arguments: [JSON.stringify(view), finish ? "1" : "0", String(keepMs)],
    })) === 1);
  }
}

function jobKey(id: string): string {
  return `ethmumbai:job:${id}`;
}

/** Drop a store whose connection failed, so that the next request connects afresh. */
function forget(state: SharedState): void {
  if (shared.__ethmumbaiState?.state !== state) return;
  delete shared.__ethmumbaiState;
  void (state as RedisState).connection.then((client) => client.destroy(), () => undefined);
}

function connect(url: string): Promise<Redis> {
  const client = newClient(url);
  let reported = false;
  client.on("error", (err: Error) => {
    if (!reported) console.error(`Redis connection error: ${err.name}: ${err.message}`); // once, not per retry
    reported = true;
  });
  client.on("ready", () => {
    reported = false;
  });
  return client.connect();
}

// On globalThis: each route is bundled separately, and they must share one store (and one connection).
const shared = globalThis as typeof globalThis & { __ethmumbaiState?: { url: string; state: SharedState } };

export function sharedState(env: NodeJS.ProcessEnv = process.env): SharedState {
  const url = env.REDIS_URL ?? "";
  if (shared.__ethmumbaiState?.url !== url) {
    shared.__ethmumbaiState = { url, state: url ? new RedisState(connect(url)) : new MemoryState() };
  }
  return shared.__ethmumbaiState.state;
}
