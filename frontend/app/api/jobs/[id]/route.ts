import { JOB_ID_PATTERN } from "@/lib/jobs";
import { errorResponse, json } from "@/lib/server/respond";
import { endpointConfig, jobStatus } from "@/lib/server/runpod";
import { RequestError } from "@/lib/server/validate";

/** Poll a job: → `JobView` (queued | running with progress | completed with result | failed with error). */
export async function GET(_request: Request, { params }: { params: Promise<{ id: string }> }): Promise<Response> {
  try {
    const { id } = await params;
    if (!JOB_ID_PATTERN.test(id)) throw new RequestError("INVALID_INPUT", "Bad job id", 400);
    return json(await jobStatus(endpointConfig(), id));
  } catch (err) {
    return errorResponse(err);
  }
}
