import { JOB_ID_PATTERN, type JobView } from "@/lib/jobs";
import { ownsJob } from "@/lib/server/jobToken";
import { errorResponse, json } from "@/lib/server/respond";
import { cancelJob, type EndpointConfig, endpointConfig, EndpointError, jobStatus } from "@/lib/server/runpod";
import { RequestError } from "@/lib/server/validate";

type Context = { params: Promise<{ id: string }> };

/** The job's id, once it is well formed and the request carries its creator's token (else it is not found). */
async function ownedJobId(request: Request, { params }: Context): Promise<string> {
  const { id } = await params;
  if (!JOB_ID_PATTERN.test(id)) throw new RequestError("INVALID_INPUT", "Bad job id", 400);
  if (!ownsJob(request, id)) throw new EndpointError({ code: "JOB_NOT_FOUND", message: "No such job" }, 404);
  return id;
}

/** One job's view from `operation`, or the route's coded error (a bad id or token never reaches the endpoint). */
async function answer(request: Request, context: Context,
  operation: (config: EndpointConfig, id: string) => Promise<JobView>) {
  try {
    const id = await ownedJobId(request, context);
    return json(await operation(endpointConfig(), id));
  } catch (err) {
    return errorResponse(err);
  }
}

/** Poll a job: → `JobView` (queued | running with progress | completed with result | failed with error). */
export async function GET(request: Request, context: Context): Promise<Response> {
  return answer(request, context, jobStatus);
}

/** Cancel a job: → its `JobView` afterwards (failed with CANCELLED, or its final state if it had already ended). */
export async function DELETE(request: Request, context: Context): Promise<Response> {
  return answer(request, context, cancelJob);
}
