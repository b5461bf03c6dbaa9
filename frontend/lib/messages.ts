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
  RATE_LIMITED: "You've made a lot of avatars in a short time. Please wait a little and try again.",
};

// Worker warnings a visitor should know about (the rest, e.g. CACHE_DISABLED, concern only the operator).
const WARNING_NOTES: Record<string, string> = {
  STYLE_LORA_MISSING:
    "Made without the ETHMumbai style model, which this server does not have yet: the look comes from the prompt alone.",
  DEMO_MODELS:
    "Demo mode: this server runs tiny test models. The Photo style (the demo's default) shows your photo cut out on " +
    "the ETHMumbai background without diffusion; the other styles give noise, not a real avatar.",
};

export function warningNotes(codes: readonly string[] = []): string[] {
  return codes.flatMap((code) => (WARNING_NOTES[code] ? [WARNING_NOTES[code]] : []));
}

export function friendlyError(code: string): string {
  return ERROR_MESSAGES[code] ?? "Something went wrong. Please try again.";
}

// Warnings come with a finished avatar (job output "warnings": [{code, message}]); codes as in ARCHITECTURE.md.
const WARNING_MESSAGES: Record<string, string> = {
  LOW_RESOLUTION_FACE:
    "Your face is quite small in that photo, so the avatar may look soft. A closer or sharper photo gives a crisper result.",
};

/** What people read for a warning; undefined for a code the page does not explain (show nothing). */
export function friendlyWarning(code: string): string | undefined {
  return WARNING_MESSAGES[code];
}

const STAGE_LABELS: Record<string, string> = {
  queued: "Warming up the avatar engine",
  preprocess: "Finding your face",
  sampling: "Drawing your avatar",
  encode: "Adding the ETHMumbai backdrop",
  upload: "Saving your avatar",
};

const STAGE_PERCENT: Record<string, number> = { queued: 10, preprocess: 12, sampling: 15, encode: 93, upload: 97 };

export type Phase = "preparing" | "uploading" | "queued" | "running";

/** The status line (a stage), its detail (sampling steps) and an overall 0..100 estimate (undefined: unknown). */
export function describeProgress(
  phase: Phase,
  progress?: Progress,
): { label: string; detail?: string; percent?: number } {
  switch (phase) {
    case "preparing":
      return { label: "Preparing your photo", percent: 2 };
    case "uploading":
      return { label: "Uploading", percent: 5 };
    case "queued":
      return { label: "Waiting for a free GPU", percent: 8 };
    case "running":
      break;
  }
  if (!progress) return { label: "Working on it" };
  const label = STAGE_LABELS[progress.stage] ?? "Working on it";
  if (progress.stage === "sampling" && progress.steps && progress.step !== undefined) {
    const step = Math.min(progress.step, progress.steps);
    return {
      label,
      detail: `Step ${step} of ${progress.steps}`,
      percent: 15 + Math.round((75 * step) / progress.steps),
    };
  }
  return { label, percent: STAGE_PERCENT[progress.stage] };
}
