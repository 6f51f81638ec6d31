/**
 * The Python client's own tests (clients/python/tests, `unittest`) as part of `npm test`: they start the service from
 * dist/ themselves (the suite's global setup has built it) with this Node. Without python3 ≥ 3.10 they are skipped
 * here with a message, and fail in CI.
 */
import { spawn, spawnSync } from "node:child_process"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { root } from "../support/build.js"

const clientDir = join(root, "clients/python")

/** "3.11.7" when `python3` runs and is at least 3.10, else undefined. */
const pythonVersion = (): string | undefined => {
  const probe = spawnSync("python3", ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], {
    encoding: "utf8",
    timeout: 20_000
  })
  const version = probe.status === 0 ? probe.stdout.trim() : undefined
  const [major, minor] = (version ?? "0.0").split(".").map(Number)
  return major === 3 && minor >= 10 ? version : undefined
}

const version = pythonVersion()
if (version === undefined && !process.env.CI) {
  console.warn("python3 (3.10 or later) is not installed: the Python client's tests are skipped here (CI runs them)")
}

/** Runs `python3 -m unittest` in clients/python; its output, and its exit code. */
const unittest = (): Promise<{ readonly code: number | null; readonly output: string }> =>
  new Promise((resolve) => {
    const child = spawn("python3", ["-m", "unittest", "-v"], {
      cwd: clientDir,
      env: { ...process.env, COMPILE_TRIGGER_NODE: process.execPath, PYTHONDONTWRITEBYTECODE: "1" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.on("exit", (code) => resolve({ code, output }))
  })

describe.skipIf(version === undefined && !process.env.CI)("the Python client (clients/python)", () => {
  it("python3 -m unittest passes against the service built in dist/", async () => {
    expect(version, "python3 3.10 or later is required in CI (.ci/run installs it)").toBeDefined()
    const { code, output } = await unittest()
    expect(code, output).toBe(0)
    expect(output).toMatch(/^OK/m)
  }, 600_000)
})
