import { JOB_ID_PATTERN, type JobView } from "@/lib/jobs";
import { errorResponse, json } from "@/lib/server/respond";
import { cancelJob, type EndpointConfig, endpointConfig, jobStatus } from "@/lib/server/runpod";
import { RequestError } from "@/lib/server/validate";

type Context = { params: Promise<{ id: string }> };

async function jobId({ params }: Context): Promise<string> {
  const { id } = await params;
  if (!JOB_ID_PATTERN.test(id)) throw new RequestError("INVALID_INPUT", "Bad job id", 400);
  return id;
}

/** One job's view from `operation`, or the route's coded error (a bad id never reaches the endpoint). */
async function answer(context: Context, operation: (config: EndpointConfig, id: string) => Promise<JobView>) {
  try {
    const id = await jobId(context);
    return json(await operation(endpointConfig(), id));
  } catch (err) {
    return errorResponse(err);
  }
}

/** Poll a job: → `JobView` (queued | running with progress | completed with result | failed with error). */
export async function GET(_request: Request, context: Context): Promise<Response> {
  return answer(context, jobStatus);
}

/** Cancel a job: → its `JobView` afterwards (failed with CANCELLED, or its final state if it had already ended). */
export async function DELETE(_request: Request, context: Context): Promise<Response> {
  return answer(context, cancelJob);
}
