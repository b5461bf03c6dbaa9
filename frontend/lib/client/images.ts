import { sniffImageType } from "@/lib/imageType";

export const MAX_FILE_BYTES = 25 * 1024 * 1024;
export const MAX_EDGE = 2048;
const JPEG_QUALITY = 0.9;

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

/**
 * Decode with the EXIF orientation applied (a phone photo shot sideways comes out upright), scale to at most
 * MAX_EDGE px, flatten onto white (PNG transparency) and re-encode as JPEG. EXIF, GPS included, is dropped.
 */
export async function prepareImage(file: File): Promise<PreparedImage> {
  await checkFile(file);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    throw new PrepareError("FILE_UNREADABLE");
  }
  const { width, height } = fitWithin(bitmap.width, bitmap.height);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  if (!context) throw new PrepareError("FILE_UNREADABLE");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
  if (!blob) throw new PrepareError("FILE_UNREADABLE");
  return { base64: await blobToBase64(blob), blob, width, height };
}

/** The avatar as a PNG blob: the worker's bytes when it sent PNG, else re-encoded on a canvas. */
export async function avatarPngBlob(base64: string, format: string): Promise<Blob> {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const source = new Blob([bytes], { type: `image/${format}` });
  if (format === "png") return source;
  const bitmap = await createImageBitmap(source);
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.getContext("2d")?.drawImage(bitmap, 0, 0);
  bitmap.close();
  const png = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/png"));
  if (!png) throw new PrepareError("FILE_UNREADABLE");
  return png;
}
