import { sniffImageType } from "@/lib/imageType";
import { UPLOAD_BASE64_BUDGET } from "@/lib/uploadLimits";

export const MAX_FILE_BYTES = 25 * 1024 * 1024;
export const MAX_EDGE = 2048;
// Tried in order until the photo's base64 fits UPLOAD_BASE64_BUDGET; most photos fit at the first. A noisy,
// full-detail 2048 px photo may not: then the next quality, and past the last one a smaller edge.
const JPEG_QUALITIES = [0.9, 0.8, 0.7, 0.6];
const EDGE_STEP = 0.75;
const WEBP_QUALITY = 0.92;

export class PrepareError extends Error {
  constructor(readonly code: "FILE_TYPE" | "FILE_TOO_LARGE" | "FILE_UNREADABLE") {
    super(code);
  }
}

export interface PreparedImage {
  base64: string; // JPEG, no data: prefix
  blob: Blob;
  width: number;
  height: number;
}

/** Check the file by its bytes (phones do not always set file.type) and size, before decoding it. */
export async function checkFile(file: File): Promise<void> {
  if (file.size > MAX_FILE_BYTES) throw new PrepareError("FILE_TOO_LARGE");
  const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  if (!sniffImageType(head)) throw new PrepareError("FILE_TYPE");
}

export function fitWithin(width: number, height: number, maxEdge = MAX_EDGE): { width: number; height: number } {
  const scale = Math.min(1, maxEdge / Math.max(width, height));
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

function blobToBase64(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] ?? "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function canvasBlob(canvas: HTMLCanvasElement, type: string, quality?: number): Promise<Blob> {
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new PrepareError("FILE_UNREADABLE"))), type, quality));
}

const base64Length = (bytes: number) => 4 * Math.ceil(bytes / 3);

/**
 * Decode with the EXIF orientation applied (a phone photo shot sideways comes out upright), scale to at most
 * MAX_EDGE px, flatten onto white (PNG transparency) and re-encode as JPEG, small enough for the upload budget
 * (lib/uploadLimits.ts). EXIF, GPS included, is dropped.
 */
export async function prepareImage(file: File): Promise<PreparedImage> {
  await checkFile(file);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    throw new PrepareError("FILE_UNREADABLE");
  }
  try {
    for (let edge = MAX_EDGE; ; edge = Math.round(edge * EDGE_STEP)) {
      const { width, height } = fitWithin(bitmap.width, bitmap.height, edge);
      const canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = height;
      const context = canvas.getContext("2d");
      if (!context) throw new PrepareError("FILE_UNREADABLE");
      context.fillStyle = "#fff";
      context.fillRect(0, 0, width, height);
      context.imageSmoothingQuality = "high";
      context.drawImage(bitmap, 0, 0, width, height);
      for (const quality of JPEG_QUALITIES) {
        const blob = await canvasBlob(canvas, "image/jpeg", quality);
        if (base64Length(blob.size) <= UPLOAD_BASE64_BUDGET) {
          return { base64: await blobToBase64(blob), blob, width, height };
        }
      }
    }
  } finally {
    bitmap.close();
  }
}

/** The avatar as PNG (the worker's bytes when it sent PNG) and as WebP, both for download. */
export async function avatarBlobs(base64: string, format: string): Promise<{ png: Blob; webp: Blob }> {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const source = new Blob([bytes], { type: `image/${format}` });
  const bitmap = await createImageBitmap(source);
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.getContext("2d")?.drawImage(bitmap, 0, 0);
  bitmap.close();
  const png = format === "png" ? source : await canvasBlob(canvas, "image/png");
  const webp = format === "webp" ? source : await canvasBlob(canvas, "image/webp", WEBP_QUALITY);
  return { png, webp };
}
