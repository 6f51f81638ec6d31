/**
 * The `effect-compile-trigger` command's arguments: the service takes none (it is configured by environment
 * variables), so `--help` says where they are and anything else is refused before the service starts.
 */
import { spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { root } from "../support/build.js"

const cwd = mkdtempSync(join(tmpdir(), "bin-args-"))
afterAll(() => rmSync(cwd, { recursive: true, force: true }))

const run = (...args: Array<string>) =>
  spawnSync(process.execPath, [join(root, "dist/bin.js"), ...args], { cwd, encoding: "utf8", timeout: 20_000 })

describe("effect-compile-trigger's arguments", () => {
  it("--help prints the usage and where the settings are, and starts nothing", () => {
    for (const flag of ["--help", "-h"]) {
      const result = run(flag)
      expect(result.status).toBe(0)
      expect(result.stdout).toContain("usage: effect-compile-trigger")
      expect(result.stdout).toContain("environment")
      expect(result.stderr).toBe("")
    }
    expect(existsSync(join(cwd, "data"))).toBe(false)
  })

  it("an unknown argument is refused (exit 2) before any store is opened", () => {
    const result = run("--port", "9000")
    expect(result.status).toBe(2)
    expect(result.stderr).toContain(`unknown argument "--port"`)
    expect(existsSync(join(cwd, "data"))).toBe(false)
  })
})
