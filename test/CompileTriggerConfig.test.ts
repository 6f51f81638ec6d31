import { describe, expect, it } from "@effect/vitest"
import { CompileTriggerConfig } from "../src/index.js"

describe("CompileTriggerConfig", () => {
  it("defaults", () => {
    const config = new CompileTriggerConfig({})
    expect(config.sizeThreshold).toBe(50)
    expect(config.stalenessDays).toBe(7)
    expect(config.stalenessMinMemories).toBe(10)
    expect(config.stalenessMillis).toBe(7 * 86_400_000)
  })

  it("custom values", () => {
    const config = new CompileTriggerConfig({ sizeThreshold: 10, stalenessDays: 0.5, stalenessMinMemories: 3 })
    expect(config.sizeThreshold).toBe(10)
    expect(config.stalenessDays).toBe(0.5)
    expect(config.stalenessMinMemories).toBe(3)
  })

  it("an invalid value throws at construction, naming the field", () => {
    expect(() => new CompileTriggerConfig({ sizeThreshold: -1 })).toThrow(/sizeThreshold/)
    expect(() => new CompileTriggerConfig({ sizeThreshold: 1.5 })).toThrow(/sizeThreshold/)
    expect(() => new CompileTriggerConfig({ stalenessDays: Infinity })).toThrow(/stalenessDays/)
    expect(() => new CompileTriggerConfig({ stalenessDays: -0.1 })).toThrow(/stalenessDays/)
    expect(() => new CompileTriggerConfig({ stalenessDays: NaN })).toThrow(/stalenessDays/)
    expect(() => new CompileTriggerConfig({ stalenessMinMemories: -3 })).toThrow(/stalenessMinMemories/)
  })
})
