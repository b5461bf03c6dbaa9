import "server-only";

import { sniffImageType } from "@/lib/imageType";
import { isStyle, STYLES } from "@/lib/styles";

// The browser sends a ≤2048 px JPEG (a few MB at most); anything much larger is not from our page.
export const MAX_BODY_BYTES = 12 * 1024 * 1024;
export const MAX_IMAGE_BYTES = 8 * 1024 * 1024;

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

/** Read a JSON body, refusing it as soon as it passes maxBytes (the Content-Length is not trusted alone). */
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

/** The job input for the worker from the page's body `{"image": <base64 or data URI>, "style"?: <preset name>}`. */
export function avatarJobInput(body: unknown): { image: string; style?: string } {
  if (!body || typeof body !== "object" || Array.isArray(body)) {
    throw new RequestError("INVALID_INPUT", "Expected a JSON object", 400);
  }
  const fields = Object.keys(body);
  const unknown = fields.filter((name) => name !== "image" && name !== "style");
  if (unknown.length) throw new RequestError("INVALID_INPUT", `Unknown field: ${unknown[0].slice(0, 40)}`, 400);
  const style = (body as { style?: unknown }).style;
  if (style !== undefined && !isStyle(style)) {
    const known = STYLES.map((option) => option.name).join(", ");
    throw new RequestError("INVALID_INPUT", `Unknown style; one of: ${known}`, 400);
  }
  const raw = (body as { image?: unknown }).image;
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
  return style === undefined ? { image } : { image, style };
}
