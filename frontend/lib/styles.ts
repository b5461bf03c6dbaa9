// The style presets (from the workflow contract via worker/schema.json; see scripts/copy-styles.mjs).
import styles from "@/lib/generated/styles.json";

export interface StyleOption {
  name: string;
  label: string;
  description: string;
}

export const STYLES: readonly StyleOption[] = styles.presets;
export const DEFAULT_STYLE: string = styles.default;

export function isStyle(name: unknown): name is string {
  return typeof name === "string" && STYLES.some((style) => style.name === name);
}
