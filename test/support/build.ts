/**
 * dist/ for the tests that run the package as users get it (`npm start`, the packed tarball). `npm ci` builds it
 * (`prepare`); when a source is newer — iterating with vitest alone — it is built again, once, before any test runs.
 */
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, rmSync, statSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

export const root = join(dirname(fileURLToPath(import.meta.url)), "../..")

const newestSource = (dir: string): number =>
  Math.max(
    0,
    ...readdirSync(dir, { withFileTypes: true }).map((entry) =>
      entry.isDirectory() ? newestSource(join(dir, entry.name)) : statSync(join(dir, entry.name)).mtimeMs
    )
  )

export const ensureBuilt = (): void => {
  const built = join(root, "dist/index.js")
  const sources = Math.max(
    newestSource(join(root, "src")),
    statSync(join(root, "tsconfig.build.json")).mtimeMs,
    statSync(join(root, "package.json")).mtimeMs
  )
  if (existsSync(built) && statSync(built).mtimeMs >= sources) return
  // From scratch: a module moved or removed in src/ must not linger in dist/ (and in the packed tarball).
  rmSync(join(root, "dist"), { recursive: true, force: true })
  execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], {
    cwd: root,
    stdio: "inherit"
  })
  // The dashboard's static files and its vendored chart library (see scripts/copy-ui.mjs).
  execFileSync(process.execPath, [join(root, "scripts/copy-ui.mjs")], { cwd: root, stdio: "inherit" })
}
