/**
 * The threshold tuner's command line as users run it (`node dist/bin.js tune …`, the build test/support/globalSetup.ts
 * keeps up to date): --json's shape, the table, a budget dimension, and one clear error per bad flag. The replays
 * themselves are test/tuner/tuner.test.ts.
 */
import { execFile } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { root } from "../support/build.js"

const MINUTE = 60_000
const T0 = Date.UTC(2026, 10, 2, 9, 0, 0)

const dir = mkdtempSync(join(tmpdir(), "tuner-test-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const run = (file: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env, cwd = dir): Promise<Run> =>
  new Promise((resolve) => {
    execFile(file, args, { cwd, env, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
    })
  })

const runTune = (args: ReadonlyArray<string>, env?: NodeJS.ProcessEnv): Promise<Run> =>
  run(process.execPath, [join(root, "dist/bin.js"), "tune", ...args], env)

const ESC = String.fromCharCode(27)

/** util-linux `script` runs a command on a pseudo-terminal: how a user's terminal sees the output. */
const scriptCommand = ["/usr/bin/script", "/bin/script"].find((file) => existsSync(file))

const writeLog = (name: string, lines: ReadonlyArray<string>): string => {
  const file = join(dir, name)
  writeFileSync(file, lines.join("\n") + "\n")
  return file
}

describe("effect-compile-trigger tune", () => {
  it("--json: one object per combination, in the documented shape", async () => {
    const lines = Array.from({ length: 1000 }, (_, i) => JSON.stringify({ t: T0 + i * MINUTE, bankId: "bank-1" }))
    const log = writeLog("steady.jsonl", lines)
    const run = await runTune(["--log", log, "--size", "50,100", "--compile-seconds", "0", "--json"])
    expect(run.stderr).toBe("")
    expect(run.code).toBe(0)
    const rows = JSON.parse(run.stdout) as Array<Record<string, any>>
    expect(rows).toHaveLength(2)
    expect(Object.keys(rows[0]!).sort()).toEqual(
      ["banksNeverCompiled", "compiles", "freshness", "lateness", "pareto", "settings", "tokens", "uncompiledMemories"]
    )
    expect(rows[0]!.settings).toEqual({
      sizeThreshold: 50,
      stalenessDays: 7,
      stalenessMinMemories: 10,
      forgetThreshold: 1,
      forgetDelaySeconds: 0,
      maxWaitSeconds: 0,
      budgetTokens: null,
      budgetCompiles: null
    })
    expect(rows[0]!.compiles.total).toBe(20)
    expect(rows[0]!.freshness).toEqual({ p50Seconds: 1470, p95Seconds: expect.any(Number), maxSeconds: 2940 })
    expect(rows[1]!.compiles.total).toBe(10)
    expect(rows[1]!.freshness.maxSeconds).toBe(99 * 60)
  })

  it("--budget-tokens is a grid dimension like the others", async () => {
    const run = await runTune(["--synthetic", "--banks", "50", "--days", "2", "--retains-per-day", "2000", "--size", "20",
      "--budget-tokens", "none,20000", "--budget-period", "1 day", "--json"])
    expect(run.code).toBe(0)
    const rows = JSON.parse(run.stdout) as Array<Record<string, any>>
    expect(rows.map((r) => r.settings.budgetTokens)).toEqual([null, 20000])
    expect(rows[1]!.tokens.total).toBeLessThan(rows[0]!.tokens.total)
  })

  it("prints the table by default, the same twice", async () => {
    const args = ["--synthetic", "--banks", "50", "--days", "3", "--retains-per-day", "500", "--size", "10,40"]
    const [a, b] = [await runTune(args), await runTune(args)]
    expect(a.code).toBe(0)
    expect(a.stdout).toBe(b.stdout)
    expect(a.stdout).toMatch(/1,500 events, 50 banks, 3\.0 days/)
    expect(a.stdout.trim().split("\n")).toHaveLength(4) // summary, header, two combinations
  })

  it("an out-of-order line stops it, naming the line; nothing on stdout", async () => {
    const log = writeLog("unsorted.jsonl", [
      JSON.stringify({ t: T0, bankId: "a" }),
      JSON.stringify({ t: T0 + 2000, bankId: "a" }),
      JSON.stringify({ t: T0 + 1000, bankId: "b" })
    ])
    const run = await runTune(["--log", log])
    expect(run.code).toBe(1)
    expect(run.stdout).toBe("")
    expect(run.stderr).toMatch(/unsorted\.jsonl: line 3: out of time order/)
  })

  it("--help through a pipe is plain text: no ANSI escapes on stdout, and none in an error on stderr", async () => {
    const help = await runTune(["--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain("USAGE")
    expect(help.stdout).toContain("--staleness-days")
    expect(help.stdout).not.toContain(ESC)
    const wrong = await runTune(["--synthetic", "--banks", "many"])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/many/)
    expect(wrong.stderr).not.toContain(ESC)
  })

  it.skipIf(scriptCommand === undefined)("--help on a terminal keeps its styles, unless NO_COLOR is set", async () => {
    const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(join(root, "dist/bin.js"))} tune --help`
    const onTerminal = (env: NodeJS.ProcessEnv) => run(scriptCommand!, ["-qec", command, "/dev/null"], env)
    const { NO_COLOR: _, ...withoutNoColor } = process.env
    const styled = await onTerminal(withoutNoColor)
    expect(styled.code).toBe(0)
    expect(styled.stdout).toContain(`${ESC}[`)
    const plain = await onTerminal({ ...withoutNoColor, NO_COLOR: "1" })
    expect(plain.stdout).toContain("USAGE")
    expect(plain.stdout).not.toContain(ESC)
  })

  it("the documented `npm run -s tune -- … --json` prints JSON alone on stdout (npm's banner would break it)", async () => {
    // The command docs/tuner.md gives for JSON from a checkout, run as written.
    const docs = readFileSync(join(root, "docs/tuner.md"), "utf8")
    const line = docs.split("\n").find((text) => text.startsWith("npm run -s tune -- ") && text.includes("--json"))
    expect(line, "docs/tuner.md shows `npm run -s tune -- … --json`").toBeDefined()
    const args = line!.replace(/\s+#.*$/, "").split(/\s+/).slice(1)
    const npm = await run("npm", args, process.env, root)
    expect(npm.code).toBe(0)
    const rows = JSON.parse(npm.stdout) as Array<Record<string, unknown>>
    expect(rows.length).toBeGreaterThan(0)
    expect(Object.keys(rows[0]!)).toContain("pareto")
  })

  it.each([
    [["--synthetic", "--size", "20,abc"], /--size: "abc" is not a number/],
    [["--synthetic", "--size", "-5"], /--size -5: sizeThreshold must be a non-negative integer, got -5/],
    [["--synthetic", "--staleness-days", "-1"], /--staleness-days -1: stalenessDays must be a number of days from 0 to 3650 \(10 years\), got -1/],
    [["--synthetic", "--forget-threshold", "0.5"], /--forget-threshold 0.5: forgetThreshold must be an integer of at least 1, got 0.5/],
    [["--synthetic", "--concurrency", "0"], /--concurrency: concurrency must be an integer >= 1, got 0/],
    [["--synthetic", "--sweep-interval", "often"], /--sweep-interval must be a positive duration/],
    [["--synthetic", "--compile-seconds", "-3"], /--compile-seconds must be >= 0/],
    [["--synthetic", "--banks", "0"], /--banks must be >= 1/],
    [["--synthetic", "--budget-tokens", "0"], /--budget-tokens: "0" is not a positive integer or none/],
    [["--synthetic", "--budget-period", "-1 hour"], /--budget-period must be a positive duration/],
    [[], /give a workload: --log <file> \(JSON Lines\) or --synthetic/],
    [["--log", "missing.jsonl"], /missing\.jsonl/],
    [["--synthetic", "--out", "/nonexistent/dir/report.html"], /--out \/nonexistent\/dir\/report\.html: cannot write there/],
    [["--synthetic", "--bogus"], /bogus/],
    [["--synthetic", "--banks", "many"], /many/]
  ])("bad flags give one clear error and exit 1: %j", async (args, message) => {
    const run = await runTune(args)
    expect(run.code).toBe(1)
    expect(run.stdout).toBe("")
    expect(run.stderr).toMatch(message)
  })
})
