import { describe, expect, it } from "@effect/vitest"
import { DateTime, Option } from "effect"
import {
  BankCompileState,
  BankPolicy,
  compileReason,
  CompileTriggerConfig,
  shouldTrigger,
  triggerReason,
  triggers
} from "../../src/index.js"

const DAY = 86_400_000
const t0 = DateTime.unsafeMake(Date.UTC(2026, 0, 1))
const at = (days: number) => DateTime.unsafeMake(DateTime.toEpochMillis(t0) + days * DAY)
const config = new CompileTriggerConfig({ sizeThreshold: 50, stalenessDays: 7, stalenessMinMemories: 10 })

const bank = (
  memories: number,
  times: { lastCompileAt?: DateTime.Utc; firstRetainAt?: DateTime.Utc; forgets?: number; policy?: BankPolicy } = {}
) =>
  new BankCompileState({
    bankId: "b",
    memoriesSinceLastCompile: memories,
    forgetsSinceLastCompile: times.forgets ?? 0,
    lastCompileAt: Option.fromNullable(times.lastCompileAt),
    firstRetainAt: Option.fromNullable(times.firstRetainAt),
    policy: Option.fromNullable(times.policy)
  })

describe("shouldTrigger (pure)", () => {
  it("fires at the size threshold", () => expect(shouldTrigger(bank(50), config, t0)).toBe(true))
  it("fires above the size threshold", () => expect(shouldTrigger(bank(51), config, t0)).toBe(true))
  it("does not fire below the size threshold", () => expect(shouldTrigger(bank(49), config, t0)).toBe(false))

  it("staleness fires once the last compile is stalenessDays old (inclusive)", () => {
    const state = bank(10, { lastCompileAt: t0 })
    expect(shouldTrigger(state, config, at(7))).toBe(true)
    expect(shouldTrigger(state, config, at(8))).toBe(true)
  })

  it("staleness needs stalenessMinMemories", () => {
    expect(shouldTrigger(bank(9, { lastCompileAt: t0 }), config, at(30))).toBe(false)
  })

  it("staleness does not fire before stalenessDays", () => {
    expect(shouldTrigger(bank(20, { lastCompileAt: t0 }), config, DateTime.unsafeMake(DateTime.toEpochMillis(at(7)) - 1)))
      .toBe(false)
  })

  it("staleness needs a reference time", () => {
    expect(shouldTrigger(bank(20), config, at(365))).toBe(false)
  })

  it("a never-compiled bank is stale from its first retain", () => {
    const state = bank(10, { firstRetainAt: t0 })
    expect(shouldTrigger(state, config, at(6.99))).toBe(false)
    expect(shouldTrigger(state, config, at(7))).toBe(true)
  })

  it("the last compile, not the first retain, is the reference once a bank compiled", () => {
    const state = bank(10, { firstRetainAt: t0, lastCompileAt: at(5) })
    expect(shouldTrigger(state, config, at(8))).toBe(false)
    expect(shouldTrigger(state, config, at(12))).toBe(true)
  })

  it("sizeThreshold 0 fires at n = 0", () => {
    expect(shouldTrigger(bank(0), new CompileTriggerConfig({ sizeThreshold: 0 }), t0)).toBe(true)
  })

  it("BankCompileState defaults", () => {
    const state = new BankCompileState({ bankId: "x" })
    expect(state.memoriesSinceLastCompile).toBe(0)
    expect(Option.isNone(state.lastCompileAt)).toBe(true)
    expect(Option.isNone(state.firstRetainAt)).toBe(true)
    expect(state.status).toBe("idle")
    expect(state.consecutiveFailures).toBe(0)
    expect(Option.isNone(state.lastError)).toBe(true)
    expect(state.forgetsSinceLastCompile).toBe(0)
    expect(Option.isNone(state.policy)).toBe(true)
  })
})

describe("the rule with policies and forgets", () => {
  it("forgets trigger at forgetThreshold (inclusive), with no new memory", () => {
    const three = new CompileTriggerConfig({ forgetThreshold: 3 })
    expect(shouldTrigger(bank(0, { forgets: 2 }), three, t0)).toBe(false)
    expect(shouldTrigger(bank(0, { forgets: 3 }), three, t0)).toBe(true)
    expect(shouldTrigger(bank(0, { forgets: 1 }), config, t0)).toBe(true) // default threshold 1
  })

  it("nothing triggers while the effective config is disabled", () => {
    const off = new CompileTriggerConfig({ enabled: false })
    expect(shouldTrigger(bank(500, { forgets: 9, lastCompileAt: t0 }), off, at(30))).toBe(false)
    expect(triggers(500, true, off, 9)).toBe(false)
    expect(triggerReason(500, true, off, 9)).toBeUndefined()
    // a policy enables a bank the defaults leave off, and disables one they leave on
    expect(shouldTrigger(bank(50, { policy: new BankPolicy({ enabled: true }) }), off, t0)).toBe(true)
    expect(shouldTrigger(bank(50, { policy: new BankPolicy({ enabled: false }) }), config, t0)).toBe(false)
  })

  it("the policy's fields win; the rest come from the config", () => {
    const policy = new BankPolicy({ sizeThreshold: 5, stalenessDays: 1 })
    expect(shouldTrigger(bank(5, { policy }), config, t0)).toBe(true)
    expect(shouldTrigger(bank(4, { policy }), config, t0)).toBe(false)
    // staleness after 1 day, still needing the config's 10 memories
    expect(shouldTrigger(bank(4, { policy, lastCompileAt: t0 }), config, at(1))).toBe(false)
    expect(shouldTrigger(bank(10, { policy: new BankPolicy({ stalenessDays: 1 }), lastCompileAt: t0 }), config, at(1)))
      .toBe(true)
  })

  it("reason: size, else staleness, else forget", () => {
    expect(compileReason(bank(50, { forgets: 5, lastCompileAt: t0 }), config, at(8))).toBe("size")
    expect(compileReason(bank(10, { forgets: 5, lastCompileAt: t0 }), config, at(8))).toBe("staleness")
    expect(compileReason(bank(9, { forgets: 5, lastCompileAt: t0 }), config, at(8))).toBe("forget")
    expect(compileReason(bank(9, { lastCompileAt: t0 }), config, at(8))).toBeUndefined()
    expect(triggerReason(50, true, config, 1)).toBe("size")
    expect(triggerReason(10, true, config, 1)).toBe("staleness")
    expect(triggerReason(0, false, config, 1)).toBe("forget")
    expect(triggers(0, false, config)).toBe(false) // forgets default to 0
  })
})
