// The job view the browser polls (GET /api/jobs/<id>), the same whichever RunPod API is behind the server.

/** Worker progress payload (docs/ARCHITECTURE.md, "Progress"): step/steps only while sampling. */
export interface Progress {
  stage: string;
  step?: number;
  steps?: number;
}

export interface AvatarResult {
  image: string; // base64, no data: prefix
  format: string; // "png" | "webp" | "jpeg"
  width: number;
  height: number;
  seed?: number; // absent when the worker's seed is past 2^53 (a JS number would change it)
  workflow_version?: string;
  faces_found?: number; // faces in the photo the worker could use (face_index picks one)
  warnings?: JobError[]; // the worker's warnings (codes: its WARNING set, e.g. DEMO_MODELS, LOW_RESOLUTION_FACE)
}

export interface JobError {
  code: string;
  message: string;
}

export type JobView =
  | { state: "queued" }
  | { state: "running"; progress?: Progress }
  | { state: "completed"; result: AvatarResult }
  | { state: "failed"; error: JobError };

/** POST /api/jobs → the job's id and the token that proves its creator (send it as X-Job-Token). */
export interface NewJob {
  id: string;
  token: string;
}

/** GET /api/health: can the worker take a job now? "warming": it is starting (a job waits or must wait). */
export interface ServiceHealth {
  state: "ready" | "warming" | "unavailable";
  // true where a job sent while warming waits in the endpoint's queue (RunPod); false where the page must wait.
  queues: boolean;
}

/** RunPod job ids are UUID-like; anything else never reaches the endpoint URL. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9-]{1,128}$/;
