import { describe, expect, it } from "@effect/vitest"
import { BankPolicy, CompileTriggerConfig } from "../../src/index.js"

describe("CompileTriggerConfig", () => {
  it("defaults", () => {
    const config = new CompileTriggerConfig({})
    expect(config.sizeThreshold).toBe(50)
    expect(config.stalenessDays).toBe(7)
    expect(config.stalenessMinMemories).toBe(10)
    expect(config.stalenessMillis).toBe(7 * 86_400_000)
    expect(config.enabled).toBe(true)
    expect(config.forgetThreshold).toBe(1)
    expect(config.forgetDelaySeconds).toBe(0)
    expect(config.forgetDelayMillis).toBe(0)
  })

  it("custom values", () => {
    const config = new CompileTriggerConfig({ sizeThreshold: 10, stalenessDays: 0.5, stalenessMinMemories: 3 })
    expect(config.sizeThreshold).toBe(10)
    expect(config.stalenessDays).toBe(0.5)
    expect(config.stalenessMinMemories).toBe(3)
    const forget = new CompileTriggerConfig({ enabled: false, forgetThreshold: 5, forgetDelaySeconds: 1.5 })
    expect(forget.enabled).toBe(false)
    expect(forget.forgetThreshold).toBe(5)
    expect(forget.forgetDelayMillis).toBe(1500)
  })

  it("an invalid value throws at construction, naming the field", () => {
    expect(() => new CompileTriggerConfig({ sizeThreshold: -1 })).toThrow(/sizeThreshold/)
    expect(() => new CompileTriggerConfig({ sizeThreshold: 1.5 })).toThrow(/sizeThreshold/)
    expect(() => new CompileTriggerConfig({ stalenessDays: Infinity })).toThrow(/stalenessDays/)
    expect(() => new CompileTriggerConfig({ stalenessDays: -0.1 })).toThrow(/stalenessDays/)
    expect(() => new CompileTriggerConfig({ stalenessDays: NaN })).toThrow(/stalenessDays/)
    expect(() => new CompileTriggerConfig({ stalenessMinMemories: -3 })).toThrow(/stalenessMinMemories/)
    expect(() => new CompileTriggerConfig({ forgetThreshold: 0 })).toThrow(/forgetThreshold/)
    expect(() => new CompileTriggerConfig({ forgetThreshold: 2.5 })).toThrow(/forgetThreshold/)
    expect(() => new CompileTriggerConfig({ forgetDelaySeconds: -1 })).toThrow(/forgetDelaySeconds/)
    expect(() => new CompileTriggerConfig({ forgetDelaySeconds: Infinity })).toThrow(/forgetDelaySeconds/)
    expect(() => new CompileTriggerConfig({ enabled: "yes" as unknown as boolean })).toThrow(/enabled/)
  })

  it("stalenessDays and forgetDelaySeconds: at most 10 years, the error naming the field, the bound and the value", () => {
    const longest = new CompileTriggerConfig({ stalenessDays: 3650, forgetDelaySeconds: 315_360_000 })
    expect(longest.stalenessDays).toBe(3650)
    expect(() => new CompileTriggerConfig({ stalenessDays: 3650.01 })).toThrow(
      "stalenessDays must be a number of days from 0 to 3650 (10 years), got 3650.01"
    )
    expect(() => new BankPolicy({ forgetDelaySeconds: 1e12 })).toThrow(
      "forgetDelaySeconds must be a number of seconds from 0 to 315360000 (10 years), got 1000000000000"
    )
    expect(() => new BankPolicy({ stalenessMinMemories: -1 })).toThrow(
      "stalenessMinMemories must be a non-negative integer, got -1"
    )
  })
})
