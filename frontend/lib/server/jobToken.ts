import "server-only";

import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

import { ConfigError } from "@/lib/server/runpod";

// Job ownership: POST /api/jobs answers the id with a token, HMAC(JOB_TOKEN_SECRET, id), that only its creator
// gets; reading or cancelling the job needs it (header X-Job-Token), so knowing an id is not enough. Stateless, so
// it holds on RunPod without any store, on every instance that shares the secret.
export const JOB_TOKEN_HEADER = "x-job-token";
const MIN_SECRET = 32;

const state = globalThis as typeof globalThis & { __ethmumbaiJobSecret?: Buffer };

function secret(env: NodeJS.ProcessEnv = process.env): Buffer {
  const raw = env.JOB_TOKEN_SECRET;
  if (raw) {
    if (raw.length < MIN_SECRET) throw new ConfigError(`JOB_TOKEN_SECRET must be at least ${MIN_SECRET} characters`);
    return Buffer.from(raw);
  }
  // Several instances (Vercel, or any that share REDIS_URL) must agree on the secret; a single one may invent it.
  if (env.REDIS_URL || env.VERCEL === "1") {
    throw new ConfigError("JOB_TOKEN_SECRET must be set where several instances serve the page (Vercel, REDIS_URL)");
  }
  return (state.__ethmumbaiJobSecret ??= randomBytes(32));
}

/** The signer of job tokens; throws ConfigError (before any job is started) when the secret is unusable. */
export function jobSigner(): (id: string) => string {
  const key = secret();
  return (id) => createHmac("sha256", key).update(`job:${id}`).digest("base64url");
}

export function ownsJob(request: Request, id: string): boolean {
  const given = Buffer.from(request.headers.get(JOB_TOKEN_HEADER) ?? "");
  const expected = Buffer.from(jobSigner()(id));
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** A fresh per-job secret (for the local worker's progress URL) and the digest kept to check it. */
export function newProgressSecret(): { secret: string; digest: string } {
  const value = randomBytes(24).toString("base64url");
  return { secret: value, digest: digest(value) };
}

export function progressSecretMatches(given: string | null, expectedDigest: string): boolean {
  if (!given) return false;
  const actual = Buffer.from(digest(given));
  const expected = Buffer.from(expectedDigest);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

function digest(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}
