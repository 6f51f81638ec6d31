/**
 * `effect-compile-trigger tune --log <directory>` as users run it (`node dist/bin.js`): the service's daily files read
 * in order as one log — the same report as the same events in one file — and a clear error for a directory without
 * logs or with days out of order.
 */
import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { root } from "../support/build.js"

const MINUTE = 60_000
const T0 = Date.UTC(2026, 11, 5, 22, 0, 0) // four hours: two UTC days

const dir = mkdtempSync(join(tmpdir(), "tuner-logdir-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const runTune = (args: ReadonlyArray<string>): Promise<Run> =>
  new Promise((resolve) => {
    execFile(process.execPath, [join(root, "dist/bin.js"), "tune", ...args], { cwd: dir, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
    })
  })

/** A minute's lines as the service writes them: `{"t","bankId","count"}`, stamped with the minute's start. */
const line = (time: number, bankId: string, count: number) =>
  `${JSON.stringify({ t: new Date(time).toISOString(), bankId, count })}\n`

describe("effect-compile-trigger tune --log <directory>", () => {
  it("reads the daily files in order as one log: the same report as one file", async () => {
    const logs = join(dir, "daily")
    mkdirSync(logs)
    const byDay = new Map<string, string>()
    let all = ""
    for (let m = 0; m < 240; m++) {
      const time = T0 + m * MINUTE
      const text = line(time, `bank-${m % 3}`, 1 + (m % 4))
      const day = new Date(time).toISOString().slice(0, 10)
      byDay.set(day, (byDay.get(day) ?? "") + text)
      all += text
    }
    expect([...byDay.keys()]).toEqual(["2026-12-05", "2026-12-06"])
    for (const [day, text] of byDay) writeFileSync(join(logs, `${day}.jsonl`), text)
    writeFileSync(join(dir, "all.jsonl"), all)
    const flags = ["--size", "10,20", "--staleness-days", "0.01", "--compile-seconds", "30", "--json"]
    const fromDir = await runTune(["--log", logs, ...flags])
    const fromFile = await runTune(["--log", join(dir, "all.jsonl"), ...flags])
    expect(fromDir.stderr).toBe("")
    expect(fromDir.code).toBe(0)
    const rows = JSON.parse(fromDir.stdout) as Array<{ compiles: { total: number } }>
    expect(rows).toHaveLength(2)
    expect(rows[0]!.compiles.total).toBeGreaterThan(0)
    expect(fromDir.stdout).toBe(fromFile.stdout)
  })

  it.each([
    ["empty", [], /empty: the directory has no \.jsonl files/],
    ["unsorted", [["2026-12-05.jsonl", T0 + MINUTE], ["2026-12-06.jsonl", T0]], /2026-12-06\.jsonl: line 1: out of time order: .*that line is in 2026-12-05\.jsonl/]
  ] as Array<[string, Array<[string, number]>, RegExp]>)("a bad directory (%s): one clear error, exit 1, nothing on stdout", async (name, files, message) => {
    const logs = join(dir, name)
    mkdirSync(logs)
    for (const [file, time] of files) writeFileSync(join(logs, file), line(time, "bank-1", 1))
    const run = await runTune(["--log", logs])
    expect(run.code).toBe(1)
    expect(run.stdout).toBe("")
    expect(run.stderr).toMatch(message)
  })
})
