// The second half of `npm run build` (after tsc), also run by test/support/build.ts: the dashboard's static files, verbatim,
// from src/ui/ to dist/ui/, and the browser build of the pinned uPlot devDependency with its licence into
// dist/ui/vendor/ — so the packed tarball serves the page with no runtime dependency and no network.
import { cpSync, mkdirSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const uplot = dirname(createRequire(join(root, "package.json")).resolve("uplot/package.json"))
const vendor = join(root, "dist/ui/vendor")

cpSync(join(root, "src/ui"), join(root, "dist/ui"), { recursive: true })
mkdirSync(vendor, { recursive: true })
cpSync(join(uplot, "dist/uPlot.iife.min.js"), join(vendor, "uPlot.iife.min.js"))
cpSync(join(uplot, "dist/uPlot.min.css"), join(vendor, "uPlot.min.css"))
cpSync(join(uplot, "LICENSE"), join(vendor, "uPlot.LICENSE"))
