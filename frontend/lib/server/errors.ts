import type { JobError } from "@/lib/jobs";

// Worker errors arrive in several shapes: the handler's {code, message}; that object serialized to a string;
// the SDK's exception dump (a JSON string with error_message); or a bare "[CODE] message" string.
const CODE_PREFIX = /^\[([A-Z_]+)\]\s*/;
const MAX_MESSAGE = 300;

function clip(text: string): string {
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}…` : text;
}

function fromText(text: string, fallbackCode: string): JobError {
  const match = CODE_PREFIX.exec(text);
  return match
    ? { code: match[1], message: clip(text.slice(match[0].length)) }
    : { code: fallbackCode, message: clip(text) };
}

export function normalizeWorkerError(raw: unknown): JobError {
  if (raw && typeof raw === "object") {
    const obj = raw as Record<string, unknown>;
    if (typeof obj.code === "string" && /^[A-Z_]+$/.test(obj.code)) {
      return { code: obj.code, message: clip(String(obj.message ?? "")) };
    }
    if (typeof obj.error_message === "string") {
      // An exception escaped the handler: keep its message, never the traceback.
      return fromText(obj.error_message, "WORKER_EXCEPTION");
    }
    return { code: "UNKNOWN", message: "" };
  }
  if (typeof raw === "string") {
    try {
      const parsed: unknown = JSON.parse(raw);
      if (parsed && typeof parsed === "object") return normalizeWorkerError(parsed);
    } catch {
      // not JSON: plain text
    }
    return fromText(raw, "UNKNOWN");
  }
  return { code: "UNKNOWN", message: "" };
}
