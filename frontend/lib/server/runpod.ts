// Server-only: talks to the RunPod endpoint with the API key from the server env. Never import from a client file.
import "server-only";

import type { AvatarResult, JobError, JobView, Progress } from "@/lib/jobs";
import { normalizeWorkerError } from "@/lib/server/errors";

export interface EndpointConfig {
  baseUrl: string; // https://api.runpod.ai/v2/<endpoint id>, or the local worker API http://127.0.0.1:<port>
  apiKey: string;
  local: boolean;
  // Workflow params sent with every job (AVATAR_JOB_PARAMS, e.g. {"size": 1024, "background": "..."}); the
  // worker validates them against the params file. The page itself sends only the image.
  jobParams: Record<string, unknown>;
}

export class ConfigError extends Error {}

// RunPod's serverless API: https://api.runpod.ai/v2/<endpoint id>. Any other URL is a local worker API.
const RUNPOD_API_PATH = /^\/v2\/[A-Za-z0-9_-]+\/?$/;
const REQUEST_TIMEOUT_MS = 30_000;
// The local worker API runs the whole job inside POST /status (see runLocalJob).
const LOCAL_JOB_TIMEOUT_MS = 15 * 60_000;
// Finished local jobs are kept this long for the browser's next poll, then dropped (user photos are private).
const LOCAL_RESULT_TTL_MS = 5 * 60_000;

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
  return { baseUrl: raw.replace(/\/+$/, ""), apiKey, local, jobParams: parseJobParams(env.AVATAR_JOB_PARAMS) };
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

/** The codes of the worker's `warnings` ([{code, message}]); the messages are for operators, not visitors. */
function warningCodes(warnings: unknown): string[] {
  if (!Array.isArray(warnings)) return [];
  return warnings
    .map((warning) => (warning && typeof warning === "object" ? (warning as { code?: unknown }).code : undefined))
    .filter((code): code is string => typeof code === "string" && /^[A-Z_]{1,40}$/.test(code))
    .slice(0, 8);
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
  };
  const warnings = warningCodes(out.warnings);
  if (warnings.length) result.warnings = warnings;
  return { state: "completed", result };
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

// ---- local worker API: this server keeps the job state that RunPod would keep ----

interface LocalJob {
  view: JobView;
  finishedAt?: number;
}

// On globalThis: each route is bundled separately, so a module-level Map would not be shared between routes.
const globalStore = globalThis as typeof globalThis & { __ethmumbaiLocalJobs?: Map<string, LocalJob> };
const localJobs = (globalStore.__ethmumbaiLocalJobs ??= new Map<string, LocalJob>());

function pruneLocalJobs(now = Date.now()): void {
  for (const [id, job] of localJobs) {
    if (job.finishedAt !== undefined && now - job.finishedAt > LOCAL_RESULT_TTL_MS) localJobs.delete(id);
  }
}

/** The first end wins: a job cancelled here stays cancelled, and the worker's late result is dropped. */
function finishLocalJob(id: string, view: JobView): void {
  const job = localJobs.get(id);
  if (!job || job.finishedAt !== undefined) return; // cancelled (or cancelled and already pruned)
  job.view = view;
  job.finishedAt = Date.now();
}

async function runLocalJob(config: EndpointConfig, id: string): Promise<void> {
  try {
    const body = await callEndpoint(config, "POST", `/status/${id}`, undefined, LOCAL_JOB_TIMEOUT_MS);
    finishLocalJob(id, viewFromStatus(body));
  } catch (err) {
    finishLocalJob(id, { state: "failed", error: (err as EndpointError).error ?? { code: "UNKNOWN", message: "" } });
  }
}

/**
 * Progress POSTed by the local worker's runpod SDK (progress_update → RUNPOD_WEBHOOK_POST_OUTPUT).
 * Returns false for a job this server does not know; a late update for a finished job is ignored.
 */
export function recordLocalProgress(id: string, body: unknown): boolean {
  const job = localJobs.get(id);
  if (!job) return false;
  const status = body && typeof body === "object" ? (body as Record<string, unknown>) : {};
  if (job.finishedAt === undefined && status.status === "IN_PROGRESS") {
    job.view = { state: "running", progress: parseProgress(status.output) };
  }
  return true;
}

// ---- the operations the routes use ----

export async function submitJob(config: EndpointConfig, input: Record<string, unknown>): Promise<string> {
  const job = { input: { ...config.jobParams, ...input } };
  const body = (await callEndpoint(config, "POST", "/run", job, REQUEST_TIMEOUT_MS)) as { id?: unknown };
  if (typeof body?.id !== "string") {
    throw new EndpointError({ code: "ENDPOINT_UNAVAILABLE", message: "The avatar service returned no job id" }, 502);
  }
  if (config.local) {
    pruneLocalJobs();
    localJobs.set(body.id, { view: { state: "queued" } });
    void runLocalJob(config, body.id);
  }
  return body.id;
}

export async function jobStatus(config: EndpointConfig, id: string): Promise<JobView> {
  if (!config.local) {
    return viewFromStatus(await callEndpoint(config, "GET", `/status/${id}`, undefined, REQUEST_TIMEOUT_MS));
  }
  pruneLocalJobs();
  const job = localJobs.get(id);
  if (!job) throw new EndpointError({ code: "JOB_NOT_FOUND", message: "No such job" }, 404);
  return job.view;
}

/**
 * Cancel a job; answers its view afterwards: cancelled, or its final state if it had already ended. The local
 * worker API cannot stop a job: it runs on to the end, and its result is dropped when it comes (finishLocalJob).
 */
export async function cancelJob(config: EndpointConfig, id: string): Promise<JobView> {
  if (config.local) {
    finishLocalJob(id, viewFromStatus({ status: "CANCELLED" }));
    return jobStatus(config, id);
  }
  const body = await callEndpoint(config, "POST", `/cancel/${id}`, undefined, REQUEST_TIMEOUT_MS);
  const cancelled = (body as { status?: unknown } | null)?.status === "CANCELLED";
  // A job that had already ended keeps its final state; /status has it (the cancel answer carries no output).
  return cancelled ? viewFromStatus(body) : jobStatus(config, id);
}
