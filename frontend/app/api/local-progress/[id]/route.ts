import { JOB_ID_PATTERN } from "@/lib/jobs";
import { errorResponse, json } from "@/lib/server/respond";
import { endpointConfig, recordLocalProgress } from "@/lib/server/runpod";
import { readJsonLimited } from "@/lib/server/validate";

const MAX_PROGRESS_BYTES = 4096;
const NOT_FOUND = { error: { code: "NOT_FOUND" } };

/**
 * Local worker API only: the worker's runpod SDK POSTs progress_update payloads here when it runs with
 * RUNPOD_WEBHOOK_POST_OUTPUT=http://127.0.0.1:<this port>/api/local-progress/$ID?v=1 (RunPod itself collects
 * them on a deployed endpoint). Accepted only for jobs this server started, with the job's progress secret, which
 * this server gave the worker in the job (`progress_token`) and the worker puts in the URL (`&token=`).
 */
export async function POST(request: Request, { params }: { params: Promise<{ id: string }> }): Promise<Response> {
  try {
    const { id } = await params;
    if (!endpointConfig().local || !JOB_ID_PATTERN.test(id)) return json(NOT_FOUND, 404);
    const secret = new URL(request.url).searchParams.get("token");
    // The SDK sends JSON with a form content type, so the body is parsed whatever the header says.
    const known = await recordLocalProgress(id, secret, await readJsonLimited(request, MAX_PROGRESS_BYTES));
    return known ? json({ ok: true }) : json(NOT_FOUND, 404);
  } catch (err) {
    return errorResponse(err);
  }
}
