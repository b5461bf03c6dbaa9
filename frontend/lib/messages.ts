import type { Progress } from "@/lib/jobs";

// What people read. Worker codes come from docs/ARCHITECTURE.md ("Error codes"); the rest from this app.
const ERROR_MESSAGES: Record<string, string> = {
  NO_FACE_DETECTED: "We couldn't find a face — try a clearer, front-facing photo.",
  NO_PERSON_DETECTED: "We couldn't find a person in that photo — try one that shows you, your face and shoulders.",
  MULTIPLE_FACES: "We found more than one face — try a photo with just you in it.",
  UNSUPPORTED_IMAGE: "We can only read JPEG, PNG or WebP photos, and this one looks different or damaged.",
  IMAGE_TOO_LARGE: "That photo is too big for us. Try a smaller one.",
  INVALID_INPUT: "Something about that request wasn't right. Please try another photo.",
  MODEL_MISSING: "The avatar machine isn't fully set up yet. Please try again later.",
  DEPENDENCY_MISSING: "The avatar machine isn't fully set up yet. Please try again later.",
  COMFY_VALIDATION: "Something went wrong while drawing your avatar. Please try again.",
  COMFY_EXECUTION: "Something went wrong while drawing your avatar. Please try again.",
  COMFY_CRASHED: "The avatar machine restarted in the middle of your photo. Please try again.",
  TIMEOUT: "That took too long. Please try again in a minute.",
  CANCELLED: "The job was cancelled. Please try again.",
  OUTPUT_TOO_LARGE: "Your avatar came out too big to send back. Please try a smaller photo.",
  STORAGE_ERROR: "We couldn't save your avatar. Please try again.",
  // This app's own codes.
  FILE_TYPE: "Please choose a JPEG, PNG or WebP photo.",
  FILE_TOO_LARGE: "That file is over 25 MB. Please choose a smaller photo.",
  FILE_UNREADABLE: "We couldn't open that photo. Please try another one.",
  ENDPOINT_UNAVAILABLE: "The avatar service is busy or unreachable right now. Please try again in a minute.",
  SERVICE_MISCONFIGURED: "The avatar service is not configured yet. Please try again later.",
  NETWORK: "We lost the connection. Check your internet and try again.",
  JOB_NOT_FOUND: "We lost track of your avatar. Please try again.",
  RATE_LIMITED: "You've made a lot of avatars in a short time.",
  FORBIDDEN_ORIGIN: "That request didn't come from this page. Please reload it and try again.",
  STATE_UNAVAILABLE: "The avatar service is briefly unavailable. Please try again in a minute.",
  WARMING_UP: "The avatar service is still warming up. Please try again in a minute.",
};

/** What people read for an error; `retryAfterS` (from a 429's Retry-After) names the wait. */
export function friendlyError(code: string, retryAfterS?: number): string {
  const message = ERROR_MESSAGES[code] ?? "Something went wrong. Please try again.";
  if (code !== "RATE_LIMITED") return message;
  if (!retryAfterS) return `${message} Please wait a while and try again.`;
  const minutes = Math.ceil(retryAfterS / 60);
  return `${message} You can make another in ${minutes} minute${minutes === 1 ? "" : "s"}.`;
}

/** The worker runs the tiny random demo models (its warning): the page shows a demo notice. */
export const DEMO_WARNING = "DEMO_MODELS";

// The worker's warnings (worker output "warnings"), in plain words; codes without an entry are for operators only
// (CACHE_DISABLED), or have their own notice (DEMO_MODELS).
const WARNING_MESSAGES: Record<string, string> = {
  STYLE_LORA_MISSING: "This style's finishing touch isn't installed on the server yet, so your avatar uses the basic style.",
  LOW_RESOLUTION_FACE:
    "Your face is quite small in that photo, so the avatar may look soft. A closer or sharper photo gives a crisper result.",
};

export function friendlyWarning(code: string): string | undefined {
  return WARNING_MESSAGES[code];
}

/** A group photo: how many faces the worker found and which one the avatar shows (`index` in its order). */
export function facesLine(found: number, index: number): string {
  return `${found} faces found — used ${index === 0 ? "the most prominent" : `face ${index + 1} of ${found}`}.`;
}

const STAGE_LABELS: Record<string, string> = {
  queued: "Warming up the avatar engine",
  preprocess: "Finding your face",
  sampling: "Drawing your avatar",
  encode: "Adding the ETHMumbai backdrop",
  upload: "Saving your avatar",
};

export type Phase = "preparing" | "warming" | "uploading" | "queued" | "running";

/**
 * The status line (a stage), its detail (sampling steps) and a percentage only where the worker counts real steps
 * (sampling); elsewhere the bar is indeterminate rather than a guess.
 */
export function describeProgress(
  phase: Phase,
  progress?: Progress,
  coldStart = false,
): { label: string; detail?: string; percent?: number } {
  switch (phase) {
    case "preparing":
      return { label: "Preparing your photo" };
    case "warming":
      return { label: "The avatar service is warming up", detail: "Your photo goes as soon as it's ready." };
    case "uploading":
      return { label: "Uploading" };
    case "queued":
      return coldStart
        ? { label: "Waiting for a free GPU", detail: "A GPU is starting up; the first avatar takes a minute or two." }
        : { label: "Waiting for a free GPU" };
    case "running":
      break;
  }
  if (!progress) return { label: "Working on it" };
  const label = STAGE_LABELS[progress.stage] ?? "Working on it";
  if (progress.stage === "sampling" && progress.steps && progress.step !== undefined) {
    const step = Math.min(progress.step, progress.steps);
    const percent = Math.round((100 * step) / progress.steps);
    return { label, detail: `Step ${step} of ${progress.steps} (${percent}%)`, percent };
  }
  return { label };
}
