// The style presets the page offers, from the published job schema (worker/schema.json, generated from the
// workflow's params file by `python -m worker.schema`): name, label, description and the default. Runs before
// `next dev` and `next build`; the output is git-ignored, never edited here.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const frontendDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const schemaPath = join(frontendDir, "..", "worker", "schema.json");
const target = join(frontendDir, "lib", "generated", "styles.json");

const style = JSON.parse(readFileSync(schemaPath, "utf8")).properties?.style;
if (!style?.enum?.length || !style["x-presets"]) {
  console.error(`${schemaPath} has no style presets (run: python -m worker.schema)`);
  process.exit(1);
}
const presets = style.enum.map((name) => ({ name, ...style["x-presets"][name] }));
// AVATAR_DEFAULT_STYLE (the tiny-model demo sets "photo") preselects another of the presets on the page.
const chosen = process.env.AVATAR_DEFAULT_STYLE;
if (chosen && !style.enum.includes(chosen)) {
  console.error(`AVATAR_DEFAULT_STYLE=${chosen} is not a style preset; one of: ${style.enum.join(", ")}`);
  process.exit(1);
}
mkdirSync(dirname(target), { recursive: true });
writeFileSync(target, JSON.stringify({ default: chosen || style.default, presets }, null, 2) + "\n");
console.log(`wrote ${presets.length} style presets to ${target}`);
