import { describe, expect, it } from "@effect/vitest"
import { DateTime, Option } from "effect"
import { BankCompileState, CompileTriggerConfig, shouldTrigger } from "../src/index.js"

const DAY = 86_400_000
const t0 = DateTime.unsafeMake(Date.UTC(2026, 0, 1))
const at = (days: number) => DateTime.unsafeMake(DateTime.toEpochMillis(t0) + days * DAY)
const config = new CompileTriggerConfig({ sizeThreshold: 50, stalenessDays: 7, stalenessMinMemories: 10 })

const bank = (memories: number, times: { lastCompileAt?: DateTime.Utc; firstRetainAt?: DateTime.Utc } = {}) =>
  new BankCompileState({
    bankId: "b",
    memoriesSinceLastCompile: memories,
    lastCompileAt: Option.fromNullable(times.lastCompileAt),
    firstRetainAt: Option.fromNullable(times.firstRetainAt)
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
  })
})
