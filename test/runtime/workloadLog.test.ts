/**
 * The workload log's pieces under TestClock: the tally (what the retain path adds to), the minute's lines, the daily
 * files and their retention, the flush at close, an unwritable directory, and its settings
 * (`WORKLOAD_LOG_*`). The log recorded through a queue and replayed by the tuner is workloadLogReplay.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Option, Scope, TestClock } from "effect"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach } from "vitest"
import * as ServiceConfig from "../../src/ServiceConfig.js"
import { appendMinute, DAY, MINUTE } from "../../src/internal/workloadLog/logFiles.js"
import { MAX_LINE_COUNT, RetainTally } from "../../src/internal/workloadLog/tally.js"
import * as WorkloadLog from "../../src/internal/workloadLog/workloadLog.js"
import { readLog } from "../../src/internal/tuner/readLog.js"
import { captureLogs } from "../support/utils.js"

const T0 = Date.UTC(2026, 11, 5, 23, 58, 0) // two minutes before a UTC midnight

const dirs: Array<string> = []
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "workload-log-"))
  dirs.push(dir)
  return dir
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

const drained = (tally: RetainTally) => {
  const out: Array<[string, number, number]> = []
  tally.drain((bankId, retains, forgets) => out.push([bankId, retains, forgets]))
  return out
}

const lines = (file: string) => readFileSync(file, "utf8").split("\n").filter((line) => line.length > 0).map((line) => JSON.parse(line))

describe("the tally", () => {
  it("adds a bank's retains and forgets since the last drain, banks in the order of their first event", () => {
    const tally = new RetainTally({ ids: ["a", "b", "c"] })
    expect(tally.empty).toBe(true)
    tally.retain(1, 2)
    tally.retain(0, 1)
    tally.forget(1, 3)
    tally.retain(1, 5)
    tally.forget(2, 1)
    expect(drained(tally)).toEqual([["b", 7, 3], ["a", 1, 0], ["c", 0, 1]])
    expect(tally.empty).toBe(true)
    expect(drained(tally)).toEqual([])
    tally.retain(0, 4)
    expect(drained(tally)).toEqual([["a", 4, 0]])
  })

  it("grows past its first capacity without losing counts", () => {
    const ids = Array.from({ length: 5000 }, (_, i) => `bank-${i}`)
    const tally = new RetainTally({ ids })
    for (let i = 0; i < 5000; i++) tally.retain(i, i + 1)
    tally.forget(4999, 2)
    const out = drained(tally)
    expect(out).toHaveLength(5000)
    expect(out[0]).toEqual(["bank-0", 1, 0])
    expect(out[4999]).toEqual(["bank-4999", 5000, 2])
  })

  it("a minute's lines: retains then forgets, a count past the tuner's limit split over lines", () => {
    const out: Array<string> = []
    const iso = new Date(T0).toISOString()
    expect(appendMinute(out, iso, "a\"b", 3, 2)).toBe(2)
    expect(appendMinute(out, iso, "big", MAX_LINE_COUNT + 5, 0)).toBe(2)
    expect(out.map((line) => JSON.parse(line))).toEqual([
      { t: iso, bankId: "a\"b", count: 3 },
      { t: iso, bankId: "a\"b", count: 2, op: "forget" },
      { t: iso, bankId: "big", count: MAX_LINE_COUNT },
      { t: iso, bankId: "big", count: 5 }
    ])
  })
})

/** A log in a scope of its own (close it to stop the service), on a table of `ids`. */
const openLog = (dir: string, retentionDays = 30) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const log = yield* Scope.extend(WorkloadLog.make({ dir, retentionDays }), scope)
    return { log, close: Scope.close(scope, Exit.void) }
  })

describe("the workload log (TestClock)", () => {
  it.effect("writes each minute per bank at the minute's start, one file per UTC day, and the last minute at close", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      yield* TestClock.setTime(T0 + 10_000)
      const { close, log } = yield* openLog(dir)
      const tally = log.register({ ids: ["a", "b"] })
      tally.retain(0, 1)
      tally.retain(0, 2)
      tally.forget(1, 1)
      yield* TestClock.adjust("50 seconds") // T0 + 1 min: the first minute is flushed
      tally.retain(1, 4)
      yield* TestClock.adjust("1 minute") // midnight: the second minute
      tally.retain(0, 1)
      yield* TestClock.adjust("30 seconds")
      yield* log.idle
      expect(readdirSync(dir).sort()).toEqual(["2026-12-05.jsonl"])
      yield* close // the minute after midnight, at close
      expect(readdirSync(dir).sort()).toEqual(["2026-12-05.jsonl", "2026-12-06.jsonl"])
      expect(lines(join(dir, "2026-12-05.jsonl"))).toEqual([
        { t: "2026-12-05T23:58:00.000Z", bankId: "a", count: 3 },
        { t: "2026-12-05T23:58:00.000Z", bankId: "b", count: 1, op: "forget" },
        { t: "2026-12-05T23:59:00.000Z", bankId: "b", count: 4 }
      ])
      expect(lines(join(dir, "2026-12-06.jsonl"))).toEqual([{ t: "2026-12-06T00:00:00.000Z", bankId: "a", count: 1 }])
      expect(yield* log.status).toEqual({ writtenEvents: 4, lostEvents: 0, failedWrites: 0, lastError: undefined })
      // The tuner reads the directory as one log, in order.
      const workload = yield* readLog(dir)
      expect(workload.length).toBe(4)
      expect(Array.from(workload.counts)).toEqual([3, -1, 4, 1])
    }))

  it.effect("a quiet minute writes nothing; a closed queue's tally is drained once more, then dropped", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      yield* TestClock.setTime(T0)
      const { close, log } = yield* openLog(dir)
      yield* TestClock.adjust("3 minutes")
      yield* log.idle
      expect(readdirSync(dir)).toEqual([])
      const tally = log.register({ ids: ["a"] })
      tally.retain(0, 2)
      tally.closed = true
      yield* TestClock.adjust("1 minute")
      yield* log.idle
      tally.retain(0, 9) // after its queue closed nothing counts; the log no longer looks
      yield* close
      expect(lines(join(dir, "2026-12-06.jsonl"))).toEqual([{ t: "2026-12-06T00:01:00.000Z", bankId: "a", count: 2 }])
    }))

  it.effect("keeps the last retentionDays days' files, today's included, and leaves other files alone", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const day = (offset: number) => new Date(Date.UTC(2026, 11, 5) + offset * DAY).toISOString().slice(0, 10)
      for (const offset of [-40, -3, -2, -1]) writeFileSync(join(dir, `${day(offset)}.jsonl`), "")
      writeFileSync(join(dir, "notes.txt"), "mine")
      yield* TestClock.setTime(Date.UTC(2026, 11, 5, 23, 59, 0))
      const { close, log } = yield* openLog(dir, 3)
      log.register({ ids: ["a"] }).retain(0, 1)
      yield* TestClock.adjust("1 minute")
      yield* log.idle
      // Today (12-05) and the two days before it are kept.
      expect(readdirSync(dir).sort()).toEqual([`${day(-2)}.jsonl`, `${day(-1)}.jsonl`, `${day(0)}.jsonl`, "notes.txt"])
      // The next day's first flush applies the retention again.
      yield* TestClock.adjust("1 minute")
      yield* log.idle
      expect(readdirSync(dir).sort()).toEqual([`${day(-1)}.jsonl`, `${day(0)}.jsonl`, "notes.txt"])
      yield* close
    }))

  it.effect("an unwritable directory: nothing fails, the loss is counted and warned about once per interval", () => {
    const { layer, logs } = captureLogs()
    return Effect.gen(function*() {
      const parent = tempDir()
      writeFileSync(join(parent, "file"), "")
      const dir = join(parent, "file", "log") // under a regular file: no one can create it, root included
      yield* TestClock.setTime(T0)
      const { close, log } = yield* openLog(dir)
      const tally = log.register({ ids: ["a", "b"] })
      for (let minute = 0; minute < 3; minute++) {
        tally.retain(0, 1)
        tally.retain(1, 1)
        yield* TestClock.adjust("1 minute")
        yield* log.idle
      }
      const status = yield* log.status
      expect(status).toMatchObject({ writtenEvents: 0, lostEvents: 6, failedWrites: 3 })
      expect(status.lastError).toMatch(/ENOTDIR|not a directory/)
      const warnings = logs.filter((line) => line.level === "WARN" && line.message.includes("cannot write"))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]!.message).toContain(join(dir, "2026-12-05.jsonl"))
      yield* close
    }).pipe(Effect.provide(layer))
  })
})

describe("WORKLOAD_LOG_* settings", () => {
  const read = (env: Record<string, string>) =>
    Effect.withConfigProvider(ServiceConfig.config, ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.effect("off by default; a directory keeps 30 days unless told", () =>
    Effect.gen(function*() {
      expect((yield* read({})).workloadLog).toEqual(Option.none())
      expect((yield* read({ WORKLOAD_LOG_DIR: "/var/log/ect" })).workloadLog).toEqual(
        Option.some({ dir: "/var/log/ect", retentionDays: 30 })
      )
      const seven = yield* read({ WORKLOAD_LOG_DIR: "/var/log/ect", WORKLOAD_LOG_RETENTION_DAYS: "7" })
      expect(seven.workloadLog).toEqual(Option.some({ dir: "/var/log/ect", retentionDays: 7 }))
      expect(ServiceConfig.describe(seven)).toContain(`workloadLog="/var/log/ect"(7d)`)
    }))

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ WORKLOAD_LOG_DIR: "/x", WORKLOAD_LOG_RETENTION_DAYS: "0" }, /WORKLOAD_LOG_RETENTION_DAYS must be an integer from 1/],
    [{ WORKLOAD_LOG_DIR: "/x", WORKLOAD_LOG_RETENTION_DAYS: "a week" }, /WORKLOAD_LOG_RETENTION_DAYS must be an integer/],
    [{ WORKLOAD_LOG_RETENTION_DAYS: "7" }, /WORKLOAD_LOG_RETENTION_DAYS is set but WORKLOAD_LOG_DIR is not/]
  ]
  it.effect.each(bad)("a bad setting names its variable: %j", ([env, message]) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(read(env))
      expect(ServiceConfig.formatConfigError(error)).toMatch(message)
    }))
})

describe("tune --log on a directory", () => {
  const write = (dir: string, name: string, events: Array<object>) =>
    writeFileSync(join(dir, name), events.map((event) => `${JSON.stringify(event)}\n`).join(""))

  it.effect("reads the .jsonl files in name order as one log; time order must hold across files", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      write(dir, "2026-12-06.jsonl", [{ t: "2026-12-06T00:00:00.000Z", bankId: "a", count: 2 }])
      write(dir, "2026-12-05.jsonl", [{ t: "2026-12-05T23:59:00.000Z", bankId: "b" }])
      writeFileSync(join(dir, "README"), "not read")
      mkdirSync(join(dir, "sub.jsonl"))
      const workload = yield* readLog(dir)
      expect(workload.bankIds).toEqual(["b", "a"])
      expect(workload.end - workload.start).toBe(MINUTE)
      write(dir, "2026-12-07.jsonl", [{ t: "2026-12-05T00:00:00.000Z", bankId: "a" }])
      const error = yield* Effect.flip(readLog(dir))
      expect(error).toMatch(/^2026-12-07\.jsonl: line 1: out of time order: .*; that line is in 2026-12-06\.jsonl$/)
    }))

  it.effect("an empty or missing directory is a clear error", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      expect(yield* Effect.flip(readLog(dir))).toBe("the directory has no .jsonl files")
      expect(yield* Effect.flip(readLog(join(dir, "nope")))).toBe("no such file or directory")
    }))
})
