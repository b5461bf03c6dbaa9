import "server-only";

import { RequestError } from "@/lib/server/validate";

/**
 * Refuse a browser's POST from another site (a cross-site form or text/plain fetch would otherwise start a job on
 * a visitor's quota). Browsers send Origin with every POST; a request without one is not from a browser page, and
 * gains nothing it could not forge anyway. The page's own host is the Host the browser addressed (or the host a
 * proxy forwarded: a cross-site page cannot set that header without a CORS preflight, which these routes refuse).
 */
export function requireSameOrigin(request: Request): void {
  const origin = request.headers.get("origin");
  if (origin === null) return;
  let host: string | null = null;
  try {
    host = new URL(origin).host; // "null" (sandboxed frames, file:) does not parse
  } catch {
    // refused below
  }
  const own = [request.headers.get("host"), request.headers.get("x-forwarded-host")?.split(",")[0].trim()];
  if (!host || !own.includes(host)) {
    throw new RequestError("FORBIDDEN_ORIGIN", "Requests must come from this site's own page", 403);
  }
}
