// Server-only: talks to the RunPod endpoint with the API key from the server env. Never import from a client file.
import "server-only";

import type { AvatarResult, JobError, JobView, Progress, ServiceHealth } from "@/lib/jobs";
import { normalizeWorkerError } from "@/lib/server/errors";
import { newProgressSecret, progressSecretMatches } from "@/lib/server/jobToken";
import { sharedState } from "@/lib/server/sharedState";
import type { AvatarJobInput } from "@/lib/server/validate";

export interface EndpointConfig {
  baseUrl: string; // https://api.runpod.ai/v2/<endpoint id>, or the local worker API http://127.0.0.1:<port>
  apiKey: string;
  local: boolean;
  // Workflow params sent with every job (AVATAR_JOB_PARAMS, e.g. {"size": 1024, "steps": 20}); the worker
  // validates them against the params file. The visitor's choices (style, background, seed) go over them.
  jobParams: Record<string, unknown>;
  // Local worker API: for how long after this server started an unanswering worker counts as starting up.
  localBootMs: number;
}

export class ConfigError extends Error {}

// RunPod's serverless API: https://api.runpod.ai/v2/<endpoint id>. Any other URL is a local worker API.
const RUNPOD_API_PATH = /^\/v2\/[A-Za-z0-9_-]+\/?$/;
const REQUEST_TIMEOUT_MS = 30_000;
// The local worker API runs the whole job inside POST /status (see runLocalJob).
const LOCAL_JOB_TIMEOUT_MS = 15 * 60_000;
// Finished local jobs are kept this long for the browser's next poll, then dropped (user photos are private).
const LOCAL_RESULT_TTL_MS = 5 * 60_000;
const HEALTH_TIMEOUT_MS = 5_000;
const DEFAULT_LOCAL_BOOT_S = 600; // ComfyUI plus the models on a CPU

/**
 * An endpoint URL without RunPod's `/v2/<endpoint id>` path is the local worker API (`--rp_serve_api`), whose
 * semantics differ: POST /status runs the job to the end, and progress comes in through RUNPOD_WEBHOOK_POST_OUTPUT.
 */
export function endpointConfig(env: NodeJS.ProcessEnv = process.env): EndpointConfig {
  const raw = env.RUNPOD_ENDPOINT_URL;
  if (!raw) throw new ConfigError("RUNPOD_ENDPOINT_URL is not set");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError("RUNPOD_ENDPOINT_URL is not a URL");
  }
  const local = !RUNPOD_API_PATH.test(url.pathname);
  const apiKey = env.RUNPOD_API_KEY ?? "";
  if (!local && !apiKey) throw new ConfigError("RUNPOD_API_KEY is not set");
  const bootS = (env.LOCAL_WORKER_BOOT_S ?? "").trim() || String(DEFAULT_LOCAL_BOOT_S);
  if (!/^\d+$/.test(bootS)) throw new ConfigError("LOCAL_WORKER_BOOT_S must be a whole number of seconds");
  return {
    baseUrl: raw.replace(/\/+$/, ""),
    apiKey,
    local,
    jobParams: parseJobParams(env.AVATAR_JOB_PARAMS),
    localBootMs: Number(bootS) * 1000,
  };
}

function parseJobParams(raw: string | undefined): Record<string, unknown> {
  if (!raw) return {};
  let params: unknown;
  try {
    params = JSON.parse(raw);
  } catch {
    throw new ConfigError("AVATAR_JOB_PARAMS is not JSON");
  }
  if (!params || typeof params !== "object" || Array.isArray(params) || "image" in params) {
    throw new ConfigError("AVATAR_JOB_PARAMS must be a JSON object of workflow params (without image)");
  }
  return params as Record<string, unknown>;
}

function failed(code: string, message: string): JobView {
  return { state: "failed", error: { code, message } };
}

function intOrUndefined(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : undefined;
}

export function parseProgress(output: unknown): Progress | undefined {
  if (!output || typeof output !== "object") return undefined;
  const { stage, step, steps } = output as Record<string, unknown>;
  if (typeof stage !== "string" || !/^[a-z_]{1,32}$/.test(stage)) return undefined;
  return { stage, step: intOrUndefined(step), steps: intOrUndefined(steps) };
}

/** The worker's `warnings` ([{code, message}]) with a proper code, at most 8; undefined when there are none. */
function workerWarnings(raw: unknown): JobError[] | undefined {
  if (!Array.isArray(raw)) return undefined;
  const coded = raw.filter((warning) => /^[A-Z_]{1,40}$/.test(String((warning as { code?: unknown } | null)?.code)));
  return coded.length ? coded.slice(0, 8).map((warning) => normalizeWorkerError(warning)) : undefined;
}

function completedView(output: unknown): JobView {
  if (!output || typeof output !== "object") return failed("NO_RESULT", "The worker returned no output");
  const out = output as Record<string, unknown>;
  if (out.error) return { state: "failed", error: normalizeWorkerError(out.error) };
  if (typeof out.image !== "string" || !out.image) return failed("NO_RESULT", "The worker returned no image");
  const result: AvatarResult = {
    image: out.image,
    format: typeof out.format === "string" ? out.format : "png",
    width: intOrUndefined(out.width) ?? 0,
    height: intOrUndefined(out.height) ?? 0,
    seed: Number.isSafeInteger(out.seed) ? (out.seed as number) : undefined,
    workflow_version: typeof out.workflow_version === "string" ? out.workflow_version.slice(0, 32) : undefined,
    faces_found: intOrUndefined(out.faces_found),
    warnings: workerWarnings(out.warnings),
  };
  return { state: "completed", result: JSON.parse(JSON.stringify(result)) }; // without the undefined fields
}

/** Map a RunPod /status body (deployed or local) to the browser's job view. */
export function viewFromStatus(body: unknown): JobView {
  const status = body && typeof body === "object" ? (body as Record<string, unknown>) : {};
  switch (status.status) {
    case "IN_QUEUE":
      return { state: "queued" };
    case "IN_PROGRESS":
      return { state: "running", progress: parseProgress(status.output) };
    case "COMPLETED":
      return completedView(status.output);
    case "FAILED":
      return { state: "failed", error: normalizeWorkerError(status.error) };
    case "CANCELLED":
      return failed("CANCELLED", "The job was cancelled");
    case "TIMED_OUT":
      return failed("TIMEOUT", "The job timed out");
    default:
      return failed("UNKNOWN", "Unexpected job status");
  }
}

export class EndpointError extends Error {
  constructor(
    readonly error: JobError,
    readonly httpStatus: number,
  ) {
    super(error.message);
  }
}

async function callEndpoint(
  config: EndpointConfig,
  method: "GET" | "POST",
  path: string,
  body: unknown,
  timeoutMs: number,
): Promise<unknown> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (config.apiKey) headers.Authorization = `Bearer ${config.apiKey}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(`${config.baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      cache: "no-store",
    });
  } catch (err) {
    console.error(`RunPod endpoint unreachable (${method} ${path.split("/")[1]}): ${(err as Error).name}`);
    throw new EndpointError({ code: "ENDPOINT_UNAVAILABLE", message: "The avatar service is unreachable" }, 502);
  }
  if (response.status === 404) {
    throw new EndpointError({ code: "JOB_NOT_FOUND", message: "No such job" }, 404);
  }
  if (!response.ok) {
    // 401/403: wrong key. Log the status only: never the key, never the request body (a user photo).
    console.error(`RunPod endpoint answered HTTP ${response.status} to ${method} ${path.split("/")[1]}`);
    throw new EndpointError({ code: "ENDPOINT_UNAVAILABLE", message: "The avatar service refused the request" }, 502);
  }
  return response.json();
}

// ---- local worker API: this server keeps the job state that RunPod would keep (lib/server/sharedState.ts) ----

async function runLocalJob(config: EndpointConfig, id: string): Promise<void> {
  let view: JobView;
  try {
    view = viewFromStatus(await callEndpoint(config, "POST", `/status/${id}`, undefined, LOCAL_JOB_TIMEOUT_MS));
  } catch (err) {
    view = { state: "failed", error: (err as EndpointError).error ?? { code: "UNKNOWN", message: "" } };
  }
  // The first end wins: a job cancelled meanwhile stays cancelled, and this late result is dropped.
  await sharedState().updateJob(id, view, true, LOCAL_RESULT_TTL_MS).catch(() => undefined);
}

/**
 * Progress POSTed by the local worker's runpod SDK (progress_update → RUNPOD_WEBHOOK_POST_OUTPUT), with the job's
 * progress secret in the URL (`&token=`). Returns false for a job this server does not know or a wrong secret; a
 * late update for a finished job is accepted and ignored.
 */
export async function recordLocalProgress(id: string, secret: string | null, body: unknown): Promise<boolean> {
  const job = await sharedState().getJob(id);
  if (!job || !progressSecretMatches(secret, job.progressDigest)) return false;
  const status = body && typeof body === "object" ? (body as Record<string, unknown>) : {};
  if (status.status === "IN_PROGRESS") {
    await sharedState().updateJob(id, { state: "running", progress: parseProgress(status.output) }, false, 0);
  }
  return true;
}

// ---- the operations the routes use ----

export async function submitJob(config: EndpointConfig, input: AvatarJobInput): Promise<string> {
  // The local worker posts progress to this server: it gets a secret for this job to put in the progress URL.
  const progress = config.local ? newProgressSecret() : null;
  const job = { input: { ...config.jobParams, ...input, ...(progress && { progress_token: progress.secret }) } };
  const body = (await callEndpoint(config, "POST", "/run", job, REQUEST_TIMEOUT_MS)) as { id?: unknown };
  if (typeof body?.id !== "string") {
    throw new EndpointError({ code: "ENDPOINT_UNAVAILABLE", message: "The avatar service returned no job id" }, 502);
  }
  if (progress) {
    // Known before the worker starts it: the local API runs a job only when asked for its status (runLocalJob).
    await sharedState().createJob(body.id, { view: { state: "queued" }, finished: false,
      progressDigest: progress.digest }, LOCAL_JOB_TIMEOUT_MS + LOCAL_RESULT_TTL_MS);
    void runLocalJob(config, body.id);
  }
  return body.id;
}

export async function jobStatus(config: EndpointConfig, id: string): Promise<JobView> {
  if (!config.local) {
    return viewFromStatus(await callEndpoint(config, "GET", `/status/${id}`, undefined, REQUEST_TIMEOUT_MS));
  }
  const job = await sharedState().getJob(id);
  if (!job) throw new EndpointError({ code: "JOB_NOT_FOUND", message: "No such job" }, 404);
  return job.view;
}

/**
 * Cancel a job; answers its view afterwards: cancelled, or its final state if it had already ended. The local
 * worker API cannot stop a job: it runs on to the end, and its result is dropped when it comes (runLocalJob).
 */
export async function cancelJob(config: EndpointConfig, id: string): Promise<JobView> {
  if (config.local) {
    await sharedState().updateJob(id, viewFromStatus({ status: "CANCELLED" }), true, LOCAL_RESULT_TTL_MS);
    return jobStatus(config, id);
  }
  const body = await callEndpoint(config, "POST", `/cancel/${id}`, undefined, REQUEST_TIMEOUT_MS);
  const cancelled = (body as { status?: unknown } | null)?.status === "CANCELLED";
  // A job that had already ended keeps its final state; /status has it (the cancel answer carries no output).
  return cancelled ? viewFromStatus(body) : jobStatus(config, id);
}

/**
 * Whether the worker can take a job now. Local worker API: it listens only once ComfyUI is up, so no answer within
 * LOCAL_WORKER_BOOT_S of this server's start is "warming" (both were started together), later "unavailable".
 * RunPod: its /health counts workers; none ready, idle or running is a cold start (jobs wait in the queue).
 */
export async function serviceHealth(config: EndpointConfig): Promise<ServiceHealth> {
  const headers: Record<string, string> = config.apiKey ? { Authorization: `Bearer ${config.apiKey}` } : {};
  const path = config.local ? "/openapi.json" : "/health";
  let response: Response;
  try {
    response = await fetch(`${config.baseUrl}${path}`, { headers, signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS),
      cache: "no-store" });
  } catch {
    const starting = config.local && process.uptime() * 1000 < config.localBootMs;
    return { state: starting ? "warming" : "unavailable", queues: !config.local };
  }
  if (!response.ok) {
    console.error(`RunPod endpoint answered HTTP ${response.status} to GET ${path.slice(1)}`);
    return { state: "unavailable", queues: !config.local };
  }
  if (config.local) return { state: "ready", queues: false };
  const workers = ((await response.json().catch(() => null)) as { workers?: Record<string, unknown> } | null)?.workers;
  const count = (name: string) => (typeof workers?.[name] === "number" ? (workers[name] as number) : 0);
  const warm = count("ready") + count("idle") + count("running") > 0;
  return { state: warm ? "ready" : "warming", queues: true };
}
