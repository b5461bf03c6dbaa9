import { clientAddress, trustModel } from "@/lib/server/clientAddress";
import { jobSigner } from "@/lib/server/jobToken";
import { requireSameOrigin } from "@/lib/server/origin";
import { rateLimitConfig, takeJobSlot } from "@/lib/server/rateLimit";
import { errorResponse, json } from "@/lib/server/respond";
import { endpointConfig, submitJob } from "@/lib/server/runpod";
import { avatarJobInput, readJsonLimited } from "@/lib/server/validate";

/**
 * Start an avatar job: body `{"image": base64, "style"?, "background"?, "seed"?}` → 202 `{"id", "token"}`; the token
 * (only its creator gets it) is needed to read or cancel the job.
 */
export async function POST(request: Request): Promise<Response> {
  try {
    requireSameOrigin(request);
    // Every setting is checked before a byte is read or a job started.
    const config = endpointConfig();
    const limit = rateLimitConfig();
    const client = clientAddress(request, trustModel());
    const sign = jobSigner();
    const input = avatarJobInput(await readJsonLimited(request));
    if (limit) await takeJobSlot(client, limit); // only jobs that would reach the GPU count
    const id = await submitJob(config, input);
    return json({ id, token: sign(id) }, 202);
  } catch (err) {
    return errorResponse(err);
  }
}
