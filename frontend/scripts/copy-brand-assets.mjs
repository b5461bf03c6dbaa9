// Copy the ETHMumbai brand art from the node pack (the single source of the brand) into public/brand/.
// Runs before `next dev` and `next build`; the copies are git-ignored.
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const frontendDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const sourceDir = join(frontendDir, "..", "custom_nodes", "ethmumbai", "assets", "backgrounds");
const targetDir = join(frontendDir, "public", "brand");
const files = ["ethmumbai_sunset.png", "ethmumbai_sunset_overlay.png", "ethmumbai_night.png"];

mkdirSync(targetDir, { recursive: true });
for (const name of files) {
  const source = join(sourceDir, name);
  if (!existsSync(source)) {
    console.error(`brand asset missing: ${source} (run: python custom_nodes/ethmumbai/assets/make_backgrounds.py)`);
    process.exit(1);
  }
  copyFileSync(source, join(targetDir, name));
}
console.log(`copied ${files.length} brand assets to ${targetDir}`);
