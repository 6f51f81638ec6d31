/**
 * The threshold tuner: hand-computable replays through the real queue, determinism and the log reader's errors. The
 * command line as users run it (`node dist/bin.js tune …`) is test/e2e/tunerCli.test.ts. Time is the tuner's own
 * virtual clock: no TestClock.
 */
import { describe, expect, it } from "vitest"
import { type EngineModel, replay, type TuneSettings } from "../../src/internal/tuner/replay.js"
import { combinations, tune } from "../../src/internal/tuner/tune.js"
import { synthetic, WorkloadBuilder } from "../../src/internal/tuner/workload.js"

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const T0 = Date.UTC(2026, 10, 2, 9, 0, 0)

const instant: EngineModel = {
  compileSeconds: 0,
  tokensBase: 1000,
  tokensPerMemory: 10,
  concurrency: 1,
  sweepIntervalMillis: HOUR,
  maxQueueSize: 0,
  budgetPeriodMillis: 3_600_000
}

const settings = (overrides: Partial<TuneSettings> = {}): TuneSettings => ({
  sizeThreshold: 50,
  stalenessDays: 7,
  stalenessMinMemories: 10,
  forgetThreshold: 1,
  forgetDelaySeconds: 0,
  maxWaitSeconds: 0,
  budgetTokens: null,
  budgetCompiles: null,
  ...overrides
})

/** One bank, `n` retains `gap` apart from T0. */
const steady = (n: number, gap: number) => {
  const builder = new WorkloadBuilder()
  for (let i = 0; i < n; i++) builder.push(T0 + i * gap, "bank-1", 1)
  return builder
}

describe("replay: hand-computable cases", () => {
  it("1,000 retains a minute apart, size 50, instant compiles: 20 compiles, p50 24.5 min, max 49 min", () => {
    const m = replay(steady(1000, MINUTE).build(), settings(), instant)
    expect(m.compiles).toBe(20)
    expect(m.compilesByReason).toEqual({ size: 20 })
    // Each batch of 50 waits 49, 48, …, 0 minutes: the middle of 1,000 such waits is 24.5 minutes.
    expect(m.freshnessP50).toBe(24.5 * MINUTE)
    expect(m.freshnessMax).toBe(49 * MINUTE)
    expect(m.tokens).toBe(20 * (1000 + 10 * 50))
    expect(m.uncompiledMemories).toBe(0)
    expect(m.banksNeverCompiled).toBe(0)
  })

  it("compile latency adds to every memory's wait; retains during a compile stay for the next", () => {
    const m = replay(steady(1000, MINUTE).build(), settings(), { ...instant, compileSeconds: 90 })
    // Each compile takes the 50 counted when it starts and ends 1.5 minutes later; the next batch is still 50.
    expect(m.compiles).toBe(19) // the 20th ends after the log's last event
    expect(m.freshnessMax).toBe(49 * MINUTE + 90_000)
    expect(m.uncompiledMemories).toBe(50)
  })

  it("staleness-only settings fire at the stale time (the first sweep at or after it)", () => {
    const builder = steady(15, MINUTE) // 15 memories: over stalenessMinMemories, far under the size threshold
    const workload = builder.build(T0, T0 + 2 * 24 * HOUR)
    const m = replay(workload, settings({ sizeThreshold: 1_000_000, stalenessDays: 1 }), instant)
    expect(m.compiles).toBe(1)
    expect(m.compilesByReason).toEqual({ staleness: 1 })
    // The sweep runs hourly from T0; the bank is stale 24 h after its first retain, at a sweep: compiled then.
    expect(m.freshnessMax).toBe(24 * HOUR)
    expect(m.freshnessP50).toBe(24 * HOUR - 7 * MINUTE)
    expect(m.dailyCompiles).toEqual([0, 1])
    // Two days of staleness: nothing compiles in the window.
    const later = replay(workload, settings({ sizeThreshold: 1_000_000, stalenessDays: 2.5 }), instant)
    expect(later.compiles).toBe(0)
    expect(later.uncompiledMemories).toBe(15)
    expect(later.banksNeverCompiled).toBe(1)
    expect(Number.isNaN(later.freshnessP50)).toBe(true)
  })

  it("a forget log triggers forget compiles, after the forget delay", () => {
    const builder = new WorkloadBuilder()
    builder.push(T0, "bank-1", 5) // under every retain threshold
    builder.push(T0 + MINUTE, "bank-1", -2) // two forgets
    builder.push(T0 + 10 * MINUTE, "bank-2", 1)
    const workload = builder.build()
    const now = replay(workload, settings({ forgetThreshold: 2 }), instant)
    expect(now.compilesByReason).toEqual({ forget: 1 })
    expect(now.freshnessMax).toBe(MINUTE) // the compile ran at the forget and took the 5 memories along
    const delayed = replay(workload, settings({ forgetThreshold: 2, forgetDelaySeconds: 30 }), instant)
    expect(delayed.compilesByReason).toEqual({ forget: 1 })
    expect(delayed.freshnessMax).toBe(MINUTE + 30_000)
    const higher = replay(workload, settings({ forgetThreshold: 3 }), instant)
    expect(higher.compiles).toBe(0)
  })
})

describe("replay: budgets (issue 12's CompileQueueOptions.budget)", () => {
  it("a compiles budget holds compiles back: fewer compiles, staler memories, the rest waits", () => {
    const workload = steady(1000, MINUTE).build()
    const free = replay(workload, settings(), instant)
    const model = { ...instant, budgetPeriodMillis: 2 * HOUR }
    const held = replay(workload, settings({ budgetCompiles: 1 }), model)
    // One compile per 2 hours at most (plus the full bucket at the start), over a 16.65-hour window.
    expect(held.compiles).toBeLessThanOrEqual(10)
    expect(held.compiles).toBeGreaterThanOrEqual(8)
    expect(held.freshnessMax).toBeGreaterThan(free.freshnessMax)
    expect(held.compiledMemories + held.uncompiledMemories).toBe(1000)
    // Held compiles take everything counted by the time they start: bigger batches, about as many tokens a memory.
    expect(held.tokens / held.compiledMemories).toBeLessThan(free.tokens / free.compiledMemories)
  })

  it("a token budget: the tokens used per period stay near the budget", () => {
    const workload = steady(1000, MINUTE).build()
    const held = replay(workload, settings({ budgetTokens: 1500 }), { ...instant, budgetPeriodMillis: 2 * HOUR })
    // A compile starts while any token is left and may overdraw by one compile: ≤ 1,500 per 2 h, plus one compile.
    expect(held.tokens).toBeLessThanOrEqual(1500 * (999 / 120 + 1) + 1500 * 2)
    expect(held.compiles).toBeLessThan(20)
  })
})

describe("determinism", () => {
  it("the same seed and settings give the same report, run after run", () => {
    const grid = combinations({
      sizeThreshold: [20, 100],
      stalenessDays: [1, 7],
      stalenessMinMemories: [10],
      forgetThreshold: [1],
      forgetDelaySeconds: [0],
      maxWaitSeconds: [0],
  budgetTokens: [null],
  budgetCompiles: [null]
    })
    const model = { ...instant, compileSeconds: 30, concurrency: 2 }
    const options = { banks: 300, days: 5, retainsPerDay: 3000, forgetsPerDay: 50, seed: 7 }
    const first = tune(synthetic(options), grid, model)
    const second = tune(synthetic(options), grid, model)
    expect(second).toEqual(first)
    expect(first.rows.length).toBe(4)
    expect(first.rows.some((r) => r.pareto)).toBe(true)
    expect(first.rows.every((r) => r.compiles.total > 0)).toBe(true)
    const other = tune(synthetic({ ...options, seed: 8 }), grid, model)
    expect(other.rows.map((r) => r.compiles.total)).not.toEqual(first.rows.map((r) => r.compiles.total))
  })

  it("the synthetic month is heavy-tailed: the busiest 1 % of banks get far more than 1 % of the retains", () => {
    const w = synthetic({ banks: 1000, days: 2, retainsPerDay: 20_000, forgetsPerDay: 0, seed: 1 })
    const perBank = new Map<number, number>()
    for (let n = 0; n < w.length; n++) perBank.set(w.banks[n]!, (perBank.get(w.banks[n]!) ?? 0) + 1)
    const sorted = [...perBank.values()].sort((a, b) => b - a)
    const top = sorted.slice(0, 10).reduce((a, b) => a + b, 0)
    expect(top / w.length).toBeGreaterThan(0.2)
    for (let n = 1; n < w.length; n++) expect(w.times[n]!).toBeGreaterThanOrEqual(w.times[n - 1]!)
  })
})

describe("the log reader", () => {
  it("takes ISO times and epoch milliseconds, counts and forgets; names the line that is out of order", () => {
    const builder = new WorkloadBuilder()
    expect(builder.addLine(`{"t":"2026-11-02T09:00:00Z","bankId":"a"}`, 1)).toBeUndefined()
    expect(builder.addLine(`{"t":${T0 + 1000},"bankId":"a","count":3}`, 2)).toBeUndefined()
    expect(builder.addLine("", 3)).toBeUndefined()
    expect(builder.addLine(`{"t":${T0 + 2000},"bankId":"b","op":"forget","count":2}`, 4)).toBeUndefined()
    expect(builder.addLine(`{"t":"2026-11-02T08:59:59Z","bankId":"a"}`, 5)).toMatch(
      /^line 5: out of time order: 2026-11-02T08:59:59.000Z is before line 4's 2026-11-02T09:00:02.000Z/
    )
    const w = builder.build()
    expect(Array.from(w.counts)).toEqual([1, 3, -2])
    expect(w.bankIds).toEqual(["a", "b"])
  })

  it("says what is wrong with a bad line", () => {
    const builder = new WorkloadBuilder()
    expect(builder.addLine("{nope", 1)).toMatch(/^line 1: not JSON/)
    expect(builder.addLine(`{"t":"yesterday","bankId":"a"}`, 2)).toMatch(/^line 2: "t" must be an ISO time/)
    expect(builder.addLine(`{"t":1,"bankId":""}`, 3)).toMatch(/^line 3: "bankId" must be a non-empty string/)
    expect(builder.addLine(`{"t":1,"bankId":"a","count":0}`, 4)).toMatch(/^line 4: "count" must be a positive integer/)
    expect(builder.addLine(`{"t":1,"bankId":"a","op":"delete"}`, 5)).toMatch(/^line 5: "op" must be "retain" or "forget"/)
    expect(builder.size).toBe(0)
  })
})
