// Recognise an image by its first bytes (shared by the browser's file check and the server's body check).

export type ImageType = "image/jpeg" | "image/png" | "image/webp";

export function sniffImageType(head: Uint8Array): ImageType | null {
  const ascii = (from: number, to: number) => String.fromCharCode(...head.subarray(from, to));
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return "image/jpeg";
  if (head.length >= 8 && ascii(1, 4) === "PNG" && head[0] === 0x89) return "image/png";
  if (head.length >= 12 && ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "image/webp";
  return null;
}
