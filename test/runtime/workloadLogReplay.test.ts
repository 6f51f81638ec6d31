/**
 * The workload log end to end: a seeded workload through a real queue with the log on (TestClock, a model engine),
 * then the tuner on the log's directory with the same settings — it makes the same compiles, consuming the same
 * memories. And a log whose directory cannot be written changes nothing for the queue.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, Option, Scope, TestClock, Utils } from "effect"
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach } from "vitest"
import { CompileEngine, CompileResult } from "../../src/index.js"
import { make as makeQueue } from "../../src/internal/runtime/compileQueue.js"
import { readLog } from "../../src/internal/tuner/readLog.js"
import { type EngineModel, queueOptions, type TuneSettings } from "../../src/internal/tuner/replay.js"
import { tune } from "../../src/internal/tuner/tune.js"
import * as WorkloadLog from "../../src/internal/workloadLog/workloadLog.js"
import { captureLogs } from "../support/utils.js"

const MINUTE = 60_000
const T0 = Date.UTC(2026, 11, 5, 23, 0, 0) // the run crosses a UTC midnight: two daily files
const MINUTES = 150
const BANKS = 12

const settings: TuneSettings = {
  sizeThreshold: 20,
  stalenessDays: 0.01, // 14.4 minutes
  stalenessMinMemories: 1,
  forgetThreshold: 3,
  forgetDelaySeconds: 90,
  maxWaitSeconds: 0,
  budgetTokens: null,
  budgetCompiles: null
}

const model: EngineModel = {
  compileSeconds: 20,
  tokensBase: 1000,
  tokensPerMemory: 10,
  concurrency: 2,
  sweepIntervalMillis: 10 * MINUTE,
  maxQueueSize: 0,
  budgetPeriodMillis: 3_600_000
}

/** One bank's event in one minute: a retain (count > 0) or a forget (count < 0); at most one per bank a minute. */
type Minute = ReadonlyArray<readonly [bankId: string, count: number]>

/** A seeded workload: busy banks and quiet ones, now and then a forget. */
const workload = (seed: number): Array<Minute> => {
  const random = new Utils.PCGRandom(seed)
  return Array.from({ length: MINUTES }, () => {
    const events: Array<readonly [string, number]> = []
    for (let b = 0; b < BANKS; b++) {
      const u = random.number()
      if (u < 0.5 / (b + 1)) events.push([`bank-${b}`, 1 + Math.floor(random.number() * 8)])
      else if (u > 0.97) events.push([`bank-${b}`, -(1 + Math.floor(random.number() * 2))])
    }
    return events
  })
}

interface Compile {
  readonly bankId: string
  readonly reason: string
  readonly memories: number
  readonly endedAt: number
}

/** The model engine of the tuner, on the Effect clock: `compileSeconds`, then tokens by the memories consumed. */
const modelEngine = (compiles: Array<Compile>) =>
  CompileEngine.of({
    run: (bankId, job) =>
      Effect.gen(function*() {
        yield* Effect.sleep(Duration.seconds(model.compileSeconds))
        const endedAt = yield* Clock.currentTimeMillis
        compiles.push({ bankId, reason: job.reason, memories: job.memories, endedAt })
        return new CompileResult({ bankId, tokensUsed: model.tokensBase + model.tokensPerMemory * job.memories })
      })
  })

/** Runs `minutes` through a queue built with the tuner's options (and the log, when given); its compiles. */
const serve = (minutes: Array<Minute>, log: Option.Option<WorkloadLog.WorkloadLogService>) =>
  Effect.gen(function*() {
    const compiles: Array<Compile> = []
    const scope = yield* Scope.make()
    const queue = yield* Scope.extend(makeQueue(queueOptions(settings, model)), scope).pipe(
      Effect.provideService(CompileEngine, modelEngine(compiles)),
      WorkloadLog.withWorkloadLog(log)
    )
    for (let m = 0; m < minutes.length; m++) {
      if (m > 0) yield* TestClock.adjust(MINUTE) // timers due by this minute fire before its events
      for (const [bankId, count] of minutes[m]!) {
        if (count > 0) queue.unsafeNotifyRetain(bankId, count)
        else queue.unsafeNotifyForget(bankId, -count)
      }
    }
    const end = yield* Clock.currentTimeMillis
    yield* Scope.close(scope, Exit.void)
    return { compiles: compiles.filter((compile) => compile.endedAt <= end), end }
  })

const dirs: Array<string> = []
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "workload-replay-"))
  dirs.push(dir)
  return dir
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

const byReason = (compiles: ReadonlyArray<Compile>) => {
  const counts: Record<string, number> = {}
  for (const { reason } of compiles) counts[reason] = (counts[reason] ?? 0) + 1
  return counts
}

describe("recorded traffic, replayed by the tuner", () => {
  it.effect.each([1, 2, 3])("seed %i: tune --log <dir> makes the compiles the queue made", (seed) =>
    Effect.gen(function*() {
      const dir = tempDir()
      const minutes = workload(seed)
      // The first minute has events for every seed (bank-0 is busy): the replay's window starts where the queue did.
      yield* TestClock.setTime(T0)
      const logScope = yield* Scope.make()
      const log = yield* Scope.extend(WorkloadLog.make({ dir, retentionDays: 30 }), logScope)
      const { compiles } = yield* serve(minutes, Option.some(log))
      yield* Scope.close(logScope, Exit.void)
      expect(readdirSync(dir).sort()).toEqual(["2026-12-05.jsonl", "2026-12-06.jsonl"])

      const recorded = yield* readLog(dir)
      const [row] = tune(recorded, [settings], model).rows
      expect(compiles.length).toBeGreaterThan(20)
      expect(row!.compiles.total).toBe(compiles.length)
      expect(row!.compiles.byReason).toEqual(byReason(compiles))
      // Every compile consumed the same memories: the tokens (base + per memory) add up to the same.
      const tokens = compiles.reduce((sum, c) => sum + model.tokensBase + model.tokensPerMemory * c.memories, 0)
      expect(row!.tokens.total).toBe(tokens)
      const compiled = new Set(compiles.map((c) => c.bankId))
      expect(row!.banksNeverCompiled).toBe(recorded.bankIds.filter((id) => !compiled.has(id)).length)
    }))
})

describe("an unwritable log directory", () => {
  it.effect("changes nothing for retains and compiles; the loss is reported", () => {
    const { layer, logs } = captureLogs()
    return Effect.gen(function*() {
      const parent = tempDir()
      writeFileSync(join(parent, "file"), "")
      const minutes = workload(1).slice(0, 40)
      yield* TestClock.setTime(T0)
      const without = yield* serve(minutes, Option.none())

      yield* TestClock.setTime(T0)
      const logScope = yield* Scope.make()
      const log = yield* Scope.extend(WorkloadLog.make({ dir: join(parent, "file", "log"), retentionDays: 30 }), logScope)
      const broken = yield* serve(minutes, Option.some(log))
      yield* Scope.close(logScope, Exit.void)

      expect(broken.compiles).toEqual(without.compiles)
      const status = yield* log.status
      expect(status.writtenEvents).toBe(0)
      expect(status.lostEvents).toBe(minutes.reduce((sum, minute) => sum + minute.length, 0))
      // Forty minutes of failed writes (minutes with events): warned at once, then once every 15 minutes, each saying how many since.
      const warnings = logs.filter((line) => line.level === "WARN" && line.message.includes("workload log: cannot write"))
      expect(warnings).toHaveLength(3)
      expect(warnings[1]!.message).toMatch(/\(\d+ failed writes since the last such warning\)/)
    }).pipe(Effect.provide(layer))
  })
})
