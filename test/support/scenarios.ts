/**
 * The scenarios and command sequences shared by the model-based test (the real queue under TestClock) and the
 * deterministic simulation (the core alone): one definition, so both explore the same space.
 */
import { FastCheck as fc } from "effect"
import { type PolicyFields, policyArb } from "./utils.js"

export const HOUR = 3_600_000
export const DAY = 24 * HOUR

/** One step; `O` is the set of engine outcomes the driver can play ("hang" is always one of them). */
export type Command<O extends string> =
  | { readonly _tag: "notify"; readonly bank: number; readonly count: number }
  | { readonly _tag: "compileNow"; readonly bank: number }
  | { readonly _tag: "advance"; readonly millis: number }
  | { readonly _tag: "resolve"; readonly outcome: O | "hang" }
  | { readonly _tag: "drain" }
  | { readonly _tag: "forget"; readonly bank: number; readonly count: number }
  | { readonly _tag: "setPolicy"; readonly bank: number; readonly policy: PolicyFields }
  | { readonly _tag: "clearPolicy"; readonly bank: number }

export interface Scenario {
  readonly banks: number
  readonly sizeThreshold: number
  readonly stalenessDays: number
  /** ≥ 1: with 0, an empty stale bank is due at every sweep and a full queue can never clear the backlog. */
  readonly stalenessMinMemories: number
  /** 0 = unbounded. */
  readonly maxQueueSize: number
  readonly concurrency: number
  readonly maxAttempts: number
  readonly baseDelay: number
  readonly sweepInterval: number
  readonly compileTimeout: number | undefined
  /** Seeds the retry jitter, so a failing case replays exactly. */
  readonly randomSeed: number
  readonly enabled: boolean
  readonly forgetThreshold: number
  readonly forgetDelaySeconds: number
  /** 0: the freshness deadline is off. */
  readonly maxWaitSeconds: number
}

export const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  banks: fc.integer({ min: 1, max: 20 }),
  sizeThreshold: fc.integer({ min: 1, max: 25 }),
  stalenessDays: fc.constantFrom(0, 0.5, 1, 2, 3),
  stalenessMinMemories: fc.integer({ min: 1, max: 10 }),
  maxQueueSize: fc.constantFrom(0, 1, 2, 3, 5, 8),
  concurrency: fc.integer({ min: 1, max: 3 }),
  maxAttempts: fc.integer({ min: 1, max: 4 }),
  baseDelay: fc.constantFrom(0, 1_000, 60_000, HOUR),
  // Sweeps shorter than a day make a 3-day advance wake the sweeper dozens of times (a timer round trip each).
  sweepInterval: fc.constantFrom(DAY, 2 * DAY, 3 * DAY),
  compileTimeout: fc.constantFrom(undefined, 10 * 60_000, 2 * HOUR),
  randomSeed: fc.integer(),
  enabled: fc.constantFrom(true, true, true, false),
  forgetThreshold: fc.integer({ min: 1, max: 5 }),
  forgetDelaySeconds: fc.constantFrom(0, 0, 60, 3600),
  maxWaitSeconds: fc.constantFrom(0, 0, 600, 3600, 86_400)
})

/** Command sequences; `outcomes` lists the engine outcomes to draw from (repeat one to weight it). */
export const commandsOf = <O extends string>(
  outcomes: ReadonlyArray<O | "hang">
): fc.Arbitrary<Command<O>> =>
  fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({
        _tag: fc.constant("notify" as const),
        bank: fc.nat(19),
        count: fc.oneof(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 7, max: 30 }))
      })
    },
    { weight: 2, arbitrary: fc.record({ _tag: fc.constant("compileNow" as const), bank: fc.nat(19) }) },
    {
      weight: 2,
      arbitrary: fc.record({
        _tag: fc.constant("advance" as const),
        millis: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 * DAY }))
      })
    },
    {
      weight: 7,
      arbitrary: fc.record({ _tag: fc.constant("resolve" as const), outcome: fc.constantFrom(...outcomes) })
    },
    { weight: 1, arbitrary: fc.constant({ _tag: "drain" as const }) },
    {
      weight: 4,
      arbitrary: fc.record({
        _tag: fc.constant("forget" as const),
        bank: fc.nat(19),
        count: fc.integer({ min: 1, max: 4 })
      })
    },
    {
      weight: 1,
      arbitrary: fc.record({ _tag: fc.constant("setPolicy" as const), bank: fc.nat(19), policy: policyArb })
    },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("clearPolicy" as const), bank: fc.nat(19) }) }
  )
