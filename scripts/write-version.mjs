// Writes src/internal/packageVersion.ts from package.json's `version`, so that the built code knows its version
// without reading package.json at run time (dist/ cannot import it: it lies outside tsc's rootDir, and a browser
// bundle of the typed client has no file system). Run by `npm run build` and by `npm version` (the `version` script);
// test/http/openApi.test.ts fails when the two differ. Writes only on a change, so the file's time stays put.
import { readFileSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"))
const target = join(root, "src/internal/packageVersion.ts")
const text = `/**
 * The package's version, as package.json gives it (written by scripts/write-version.mjs: do not edit by hand).
 *
 * @internal
 */
export const PACKAGE_VERSION = ${JSON.stringify(version)}
`
let current = ""
try {
  current = readFileSync(target, "utf8")
} catch {
  // Not written yet.
}
if (current !== text) writeFileSync(target, text)
