// What a visitor may choose, from the published job schema (copied to lib/generated/ by `npm run choices`).
import generated from "@/lib/generated/choices.json";

export interface StylePreset {
  name: string;
  label: string;
  description: string;
}

export interface Choices {
  styles: { default: string; presets: StylePreset[] } | null; // null until the contract has style presets
  backgrounds: { default: string; names: string[] };
  maxFaceIndex: number; // the worker's face_index maximum (0: one face only)
}

export const CHOICES: Choices = generated as Choices;

/** The seeds the page picks and accepts: any the worker takes that a JS number holds exactly. */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;

/** "ethmumbai_night.png" → "Night"; "gradient" → "Gradient". */
export function backgroundLabel(name: string): string {
  const base = name.replace(/\.[a-z]+$/, "").replace(/^ethmumbai_/, "").replace(/_/g, " ");
  return base.charAt(0).toUpperCase() + base.slice(1);
}
