import "server-only";

import { CHOICES, MAX_SEED } from "@/lib/choices";
import { sniffImageType } from "@/lib/imageType";
import { MAX_BODY_BYTES } from "@/lib/uploadLimits";

// The page fits the photo under UPLOAD_BASE64_BUDGET; anything larger is not from our page.
const MAX_IMAGE_BYTES = Math.floor((MAX_BODY_BYTES * 3) / 4);

export class RequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly httpStatus: number,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * Read a JSON body, refusing it as soon as it passes maxBytes: by its Content-Length before reading a byte, and by
 * counting as it streams in (a chunked body has no length, and a declared one is not trusted alone).
 */
export async function readJsonLimited(request: Request, maxBytes = MAX_BODY_BYTES): Promise<unknown> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw new RequestError("IMAGE_TOO_LARGE", "Request body too large", 413);
  if (!request.body) throw new RequestError("INVALID_INPUT", "Empty request body", 400);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw new RequestError("IMAGE_TOO_LARGE", "Request body too large", 413);
    }
    chunks.push(value);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new RequestError("INVALID_INPUT", "Request body is not JSON", 400);
  }
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const DATA_URI = /^data:image\/(?:jpeg|png|webp);base64,/;
const FIELDS = new Set(["image", "style", "background", "seed", "face_index"]);

/** What the page may send: the photo, and the visitor's choices (the worker gets no other field from a browser). */
export interface AvatarJobInput {
  image: string;
  style?: string;
  background?: string;
  seed?: number;
  face_index?: number; // which face of a group photo (0: the most prominent)
}

function choice(body: Record<string, unknown>, field: string, allowed: string[]): string | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !allowed.includes(value)) {
    throw new RequestError("INVALID_INPUT", `Field ${field} must be one of: ${allowed.join(", ")}`, 400);
  }
  return value;
}

/** The job input for the worker from the page's body `{"image": <base64 or data URI>, "style"?, "background"?, "seed"?,
 * "face_index"?}`. */
export function avatarJobInput(body: unknown): AvatarJobInput {
  if (!body || typeof body !== "object" || Array.isArray(body)) {
    throw new RequestError("INVALID_INPUT", "Expected a JSON object", 400);
  }
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((name) => !FIELDS.has(name));
  if (unknown.length) throw new RequestError("INVALID_INPUT", `Unknown field: ${unknown[0].slice(0, 40)}`, 400);
  const raw = fields.image;
  if (typeof raw !== "string" || !raw) throw new RequestError("INVALID_INPUT", "Field image is required", 400);
  const image = raw.replace(DATA_URI, "");
  if (image.length % 4 !== 0 || !BASE64.test(image)) {
    throw new RequestError("INVALID_INPUT", "Field image is not base64", 400);
  }
  const bytes = Buffer.from(image, "base64");
  if (bytes.byteLength > MAX_IMAGE_BYTES) throw new RequestError("IMAGE_TOO_LARGE", "Image too large", 413);
  if (!sniffImageType(bytes)) {
    throw new RequestError("UNSUPPORTED_IMAGE", "Image is not JPEG, PNG or WebP", 415);
  }
  const input: AvatarJobInput = { image };
  const style = choice(fields, "style", CHOICES.styles?.presets.map((preset) => preset.name) ?? []);
  const background = choice(fields, "background", CHOICES.backgrounds.names);
  if (style !== undefined) input.style = style;
  if (background !== undefined) input.background = background;
  if (fields.seed !== undefined) {
    const seed = fields.seed;
    if (typeof seed !== "number" || !Number.isSafeInteger(seed) || seed < 0 || seed > MAX_SEED) {
      throw new RequestError("INVALID_INPUT", `Field seed must be a whole number from 0 to ${MAX_SEED}`, 400);
    }
    input.seed = seed;
  }
  if (fields.face_index !== undefined) {
    const index = fields.face_index;
    if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index > CHOICES.maxFaceIndex) {
      throw new RequestError("INVALID_INPUT", `Field face_index must be a whole number from 0 to ${CHOICES.maxFaceIndex}`, 400);
    }
    input.face_index = index;
  }
  return input;
}
