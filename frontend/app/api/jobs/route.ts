import { errorResponse, json } from "@/lib/server/respond";
import { endpointConfig, submitJob } from "@/lib/server/runpod";
import { avatarJobInput, readJsonLimited } from "@/lib/server/validate";

/** Start an avatar job: body `{"image": base64}` → 202 `{"id"}`. */
export async function POST(request: Request): Promise<Response> {
  try {
    const config = endpointConfig();
    const input = avatarJobInput(await readJsonLimited(request));
    const id = await submitJob(config, input);
    return json({ id }, 202);
  } catch (err) {
    return errorResponse(err);
  }
}
