import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"

describe("README", () => {
  it("the usage example runs as written", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8")
    const example = /## Usage\s+```ts\n([\s\S]*?)```/.exec(readme)?.[1]
    expect(example).toBeDefined()
    // Inside the package so `import ... from "effect-compile-trigger"` resolves to this package itself.
    const dir = mkdtempSync(join(process.cwd(), ".readme-example-"))
    try {
      const file = join(dir, "example.ts")
      writeFileSync(file, example!)
      const output = execFileSync(process.execPath, ["--import", "tsx", file], { encoding: "utf8", timeout: 60_000 })
      expect(output).toContain("compiling bank-1")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
