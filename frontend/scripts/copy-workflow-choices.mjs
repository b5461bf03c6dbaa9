// What a visitor may choose: the style presets and backgrounds of the published job schema (worker/schema.json,
// written from the workflow contract by `python -m worker.schema`), copied to lib/generated/choices.json for the
// page and its routes. Runs before `next dev` and `next build` (on Vercel too: the build sees the whole repository,
// see docs/deploy.md); the copy is git-ignored, never edited here.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const frontendDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const schemaPath = join(frontendDir, "..", "worker", "schema.json");
const target = join(frontendDir, "lib", "generated", "choices.json");

const { style, background, face_index: faceIndex } = JSON.parse(readFileSync(schemaPath, "utf8")).properties ?? {};
if (!background?.enum?.length) {
  console.error(`${schemaPath} has no background choices (run: python -m worker.schema)`);
  process.exit(1);
}
// Style presets, once the contract has them; without them the page offers the backgrounds only.
const styles = style?.enum?.length
  ? {
      default: style.default,
      presets: style.enum.map((name) => ({
        name,
        label: String(style["x-presets"]?.[name]?.label ?? name),
        description: String(style["x-presets"]?.[name]?.description ?? ""),
      })),
    }
  : null;

// AVATAR_DEFAULT_STYLE (the tiny-model demo sets "photo") preselects another of the presets on the page.
const chosen = process.env.AVATAR_DEFAULT_STYLE;
if (chosen && !styles?.presets.some((preset) => preset.name === chosen)) {
  console.error(`AVATAR_DEFAULT_STYLE=${chosen} is not a style preset of ${schemaPath}`);
  process.exit(1);
}
if (chosen) styles.default = chosen;

// The highest face_index the worker takes (a group photo's other faces); 0 where the contract has no face_index.
const choices = { styles, backgrounds: { default: background.default, names: background.enum },
                  maxFaceIndex: faceIndex?.maximum ?? 0 };
mkdirSync(dirname(target), { recursive: true });
writeFileSync(target, `${JSON.stringify(choices, null, 2)}\n`);
console.log(`wrote ${target} (${styles ? styles.presets.length : 0} styles, ${background.enum.length} backgrounds)`);
