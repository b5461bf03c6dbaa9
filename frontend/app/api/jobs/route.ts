import { clientKey, rateLimitConfig, takeJobSlot } from "@/lib/server/rateLimit";
import { errorResponse, json } from "@/lib/server/respond";
import { endpointConfig, submitJob } from "@/lib/server/runpod";
import { avatarJobInput, readJsonLimited } from "@/lib/server/validate";

/** Start an avatar job: body `{"image": base64}` → 202 `{"id"}`. */
export async function POST(request: Request): Promise<Response> {
  try {
    const config = endpointConfig();
    const limit = rateLimitConfig();
    const input = avatarJobInput(await readJsonLimited(request));
    if (limit) takeJobSlot(clientKey(request), limit); // only jobs that would reach the GPU count
    const id = await submitJob(config, input);
    return json({ id }, 202);
  } catch (err) {
    return errorResponse(err);
  }
}
