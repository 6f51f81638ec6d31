import { describe, expect, it } from "@effect/vitest"
import { Either, Option, Schema } from "effect"
import { BankPolicy, BankPolicyError, CompileTriggerConfig, effectiveConfig, validatePolicy } from "../../src/index.js"

describe("BankPolicy", () => {
  it("every field is optional", () => {
    const empty = new BankPolicy({})
    for (const key of Object.keys(BankPolicy.fields)) expect(empty[key as keyof BankPolicy]).toBeUndefined()
    expect(Schema.encodeSync(BankPolicy)(empty)).toEqual({})
  })

  it("an invalid field throws, as the config does", () => {
    expect(() => new BankPolicy({ sizeThreshold: -1 })).toThrow(/sizeThreshold/)
    expect(() => new BankPolicy({ stalenessDays: NaN })).toThrow(/stalenessDays/)
    expect(() => new BankPolicy({ stalenessMinMemories: 0.5 })).toThrow(/stalenessMinMemories/)
    expect(() => new BankPolicy({ forgetThreshold: 0 })).toThrow(/forgetThreshold/)
    expect(() => new BankPolicy({ forgetDelaySeconds: -2 })).toThrow(/forgetDelaySeconds/)
    expect(() => new BankPolicy({ enabled: 1 as unknown as boolean })).toThrow(/enabled/)
  })

  it("a field left out falls back to the queue's config", () => {
    const defaults = new CompileTriggerConfig({ sizeThreshold: 20, forgetThreshold: 3 })
    const effective = effectiveConfig(defaults, new BankPolicy({ enabled: false, sizeThreshold: 5, forgetDelaySeconds: 30 }))
    expect(effective).toBeInstanceOf(CompileTriggerConfig)
    expect({ ...effective }).toEqual({
      enabled: false,
      sizeThreshold: 5,
      stalenessDays: 7,
      stalenessMinMemories: 10,
      forgetThreshold: 3,
      forgetDelaySeconds: 30,
      maxWaitSeconds: 0,
      maxScopesPerBank: 64 // the queue's alone: no policy sets it
    })
    expect(effective.forgetDelayMillis).toBe(30_000)
    expect(effectiveConfig(defaults, Option.none())).toBe(defaults)
    expect(effectiveConfig(defaults, undefined)).toBe(defaults)
    expect(effectiveConfig(defaults, Option.some(new BankPolicy({ stalenessDays: 1 }))).stalenessMillis).toBe(86_400_000)
  })

  it("validatePolicy: fields or a policy in, a message naming the problem out", () => {
    expect(Either.getOrThrow(validatePolicy({ sizeThreshold: 3 }))).toEqual(new BankPolicy({ sizeThreshold: 3 }))
    const policy = new BankPolicy({ enabled: true })
    expect(Either.getOrThrow(validatePolicy(policy))).toBe(policy)
    expect(Either.getLeft(validatePolicy({ sizeThreshold: -1 })).pipe(Option.getOrThrow)).toMatch(/sizeThreshold/)
    expect(Either.getLeft(validatePolicy({ colour: "red" })).pipe(Option.getOrThrow)).toMatch(/colour/)
    expect(Either.isLeft(validatePolicy(null))).toBe(true)
    expect(Either.isLeft(validatePolicy([]))).toBe(true)
  })

  it("BankPolicyError carries bankId and message", () => {
    const error = new BankPolicyError({ bankId: "b", message: "nope" })
    expect(error._tag).toBe("BankPolicyError")
    expect(error.bankId).toBe("b")
    expect(error.message).toBe("nope")
  })
})
