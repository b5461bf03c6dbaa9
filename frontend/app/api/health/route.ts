import { errorResponse, json } from "@/lib/server/respond";
import { endpointConfig, serviceHealth } from "@/lib/server/runpod";

/** Can the avatar worker take a job now? → `ServiceHealth`; the page says "warming up" instead of failing. */
export async function GET(): Promise<Response> {
  try {
    return json(await serviceHealth(endpointConfig()));
  } catch (err) {
    return errorResponse(err);
  }
}
