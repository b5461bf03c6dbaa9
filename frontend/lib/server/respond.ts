import "server-only";

import { ConfigError, EndpointError } from "@/lib/server/runpod";
import { StateError } from "@/lib/server/sharedState";
import { RequestError } from "@/lib/server/validate";

const NO_STORE = { "Cache-Control": "no-store" };

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers: { ...NO_STORE, ...headers } });
}

/** An API error as `{"error": {"code", "message"}}`; unexpected errors are logged and answered generically. */
export function errorResponse(err: unknown): Response {
  if (err instanceof RequestError) {
    return json({ error: { code: err.code, message: err.message } }, err.httpStatus, err.headers);
  }
  if (err instanceof EndpointError) return json({ error: err.error }, err.httpStatus);
  if (err instanceof ConfigError) {
    console.error(`frontend misconfigured: ${err.message}`);
    return json({ error: { code: "SERVICE_MISCONFIGURED", message: "The avatar service is not configured" } }, 500);
  }
  if (err instanceof StateError) {
    return json({ error: { code: "STATE_UNAVAILABLE", message: "The avatar service is briefly unavailable" } }, 503);
  }
  console.error("unexpected error in API route", err instanceof Error ? err.name : typeof err);
  return json({ error: { code: "UNKNOWN", message: "Unexpected server error" } }, 500);
}
