/**
 * The tuner's cost per scope: a log's optional `scopes` field reaches the replayed queue, and `tokensPerScope`
 * charges a targeted compile for its dirty scopes and a whole-bank compile for every scope the bank named.
 */
import { describe, expect, it } from "vitest"
import { type EngineModel, replay, type TuneSettings } from "../../src/internal/tuner/replay.js"
import { WorkloadBuilder } from "../../src/internal/tuner/workload.js"

const MINUTE = 60_000
const T0 = Date.UTC(2026, 10, 2, 9, 0, 0)

const perScope: EngineModel = {
  compileSeconds: 0,
  tokensBase: 0,
  tokensPerMemory: 0,
  tokensPerScope: 100,
  concurrency: 1,
  sweepIntervalMillis: 3_600_000,
  maxQueueSize: 0,
  budgetPeriodMillis: 3_600_000
}

const settings: TuneSettings = {
  sizeThreshold: 5,
  stalenessDays: 7,
  stalenessMinMemories: 10,
  forgetThreshold: 1,
  forgetDelaySeconds: 0,
  maxWaitSeconds: 0,
  budgetTokens: null,
  budgetCompiles: null
}

/** 100 retains a minute apart over 20 page scopes, each naming `page-(i mod 20)` as a log line would. */
const log = (withScopes: (i: number) => boolean) => {
  const builder = new WorkloadBuilder()
  for (let i = 0; i < 100; i++) {
    const line = { t: T0 + i * MINUTE, bankId: "b", ...(withScopes(i) ? { scopes: [`page-${i % 20}`] } : {}) }
    expect(builder.addLine(JSON.stringify(line), i + 1)).toBeUndefined()
  }
  return builder.build()
}

describe("tuner: tokens per scope", () => {
  it("targeted compiles are charged their dirty scopes: 20 compiles of 5 scopes", () => {
    const m = replay(log(() => true), settings, perScope)
    expect(m.compiles).toBe(20)
    expect(m.tokens).toBe(20 * 5 * 100)
  })

  it("a retain naming no scope makes that compile rebuild every scope the bank's log names", () => {
    const m = replay(log((i) => i % 10 !== 9), settings, perScope)
    // Every second compile takes a plain retain: 10 targeted (5 scopes), 10 whole (18 scopes: page-9 and page-19
    // are never named, their lines being the plain ones).
    expect(m.tokens).toBe(10 * 5 * 100 + 10 * 18 * 100)
  })

  it("--whole-bank: every compile is charged all of its bank's scopes (what targeted compiles save)", () => {
    const m = replay(log(() => true), settings, { ...perScope, wholeBank: true })
    expect(m.tokens).toBe(20 * 20 * 100)
  })

  it("a log line's scopes are checked like the API's", () => {
    const builder = new WorkloadBuilder()
    expect(builder.addLine(JSON.stringify({ t: T0, bankId: "b", scopes: ["ok", ""] }), 7)).toMatch(
      /^line 7: "scopes": invalid scopes ""/
    )
  })
})
