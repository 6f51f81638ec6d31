/**
 * Fencing tokens as a receiver uses them: their order (epoch first, then sequence), the header form and its parser's
 * refusals, the schemas, and the guard that keeps the highest token per bank.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck as fc, Schema } from "effect"
import { FencingToken } from "../../src/index.js"

const token = (epoch: number, sequence: number): FencingToken.FencingToken => ({ epoch, sequence })

const tokenArb = fc.record({
  epoch: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  sequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })
})

describe("FencingToken — order", () => {
  it("epoch first, then sequence", () => {
    expect(FencingToken.compare(token(1, 500), token(2, 1))).toBe(-1)
    expect(FencingToken.compare(token(2, 1), token(1, 500))).toBe(1)
    expect(FencingToken.compare(token(2, 3), token(2, 4))).toBe(-1)
    expect(FencingToken.compare(token(2, 4), token(2, 4))).toBe(0)
    expect(FencingToken.isNewer(token(3, 1), token(2, 9))).toBe(true)
    expect(FencingToken.isNewer(token(2, 9), token(2, 9))).toBe(false)
    expect(FencingToken.isStale(token(2, 9), token(3, 1))).toBe(true)
    expect(FencingToken.isStale(token(3, 1), token(3, 1))).toBe(false)
  })

  it("is a total order that agrees with isNewer and isStale", () => {
    fc.assert(fc.property(tokenArb, tokenArb, (a, b) => {
      const order = FencingToken.compare(a, b)
      expect(FencingToken.compare(b, a)).toBe(-order as -1 | 0 | 1)
      expect(FencingToken.isNewer(a, b)).toBe(order === 1)
      expect(FencingToken.isStale(a, b)).toBe(order === -1)
      expect(order === 0).toBe(a.epoch === b.epoch && a.sequence === b.sequence)
    }))
  })
})

describe("FencingToken — header form", () => {
  it("formats as <epoch>.<sequence> and parses back, for every valid token", () => {
    expect(FencingToken.format(token(7, 12))).toBe("7.12")
    expect(FencingToken.format(token(0, 1))).toBe("0.1")
    fc.assert(fc.property(tokenArb, (t) => {
      expect(FencingToken.parse(FencingToken.format(t))).toEqual(Either.right(t))
    }))
    expect(FencingToken.parse(" 7.12 ")).toEqual(Either.right(token(7, 12)))
  })

  it("refuses anything malformed, saying what is wrong", () => {
    const refusal = (text: string) => {
      const parsed = FencingToken.parse(text)
      if (Either.isRight(parsed)) throw new Error(`${JSON.stringify(text)} parsed as ${JSON.stringify(parsed.right)}`)
      expect(parsed.left).toBeInstanceOf(FencingToken.FencingTokenError)
      expect(parsed.left.input).toBe(text)
      return parsed.left.message
    }
    expect(refusal("7")).toBe(`fencing token "7" is not "<epoch>.<sequence>" (two decimal integers, e.g. "7.12")`)
    for (const text of ["", ".", "7.", ".12", "7.12.1", "-1.2", "7.-2", "+7.12", "7,12", "7 .12", "1e3.4", "0x1.2", "7.1.", "a.b", "7.12x"]) {
      expect(refusal(text)).toContain(`is not "<epoch>.<sequence>"`)
    }
    expect(refusal("7.0")).toBe(`fencing token "7.0" has sequence 0 (sequences start at 1)`)
    expect(refusal("9007199254740992.1")).toBe(`fencing token "9007199254740992.1" has a part larger than 9007199254740991`)
    expect(refusal("1.99999999999999999999")).toContain("has a part larger than")
  })

  it("FromString decodes the header form and encodes back", () => {
    expect(Schema.decodeUnknownSync(FencingToken.FromString)("7.12")).toEqual(token(7, 12))
    expect(Schema.encodeSync(FencingToken.FromString)(token(7, 12))).toBe("7.12")
    expect(() => Schema.decodeUnknownSync(FencingToken.FromString)("7.0")).toThrow("has sequence 0")
  })

  it("the schema refuses a negative epoch, a sequence below 1 and fractions", () => {
    const decode = Schema.decodeUnknownEither(FencingToken.FencingToken)
    expect(decode({ epoch: 0, sequence: 1 })).toEqual(Either.right(token(0, 1)))
    for (const bad of [{ epoch: -1, sequence: 1 }, { epoch: 1, sequence: 0 }, { epoch: 1.5, sequence: 1 }, { epoch: 1 }]) {
      expect(Either.isLeft(decode(bad))).toBe(true)
    }
  })
})

describe("FencingToken — guard", () => {
  it.effect("keeps the highest token per bank: a lower one is stale, an equal or higher one accepted", () =>
    Effect.gen(function*() {
      const guard = yield* FencingToken.makeGuard
      expect(yield* guard.admit("a", token(2, 5))).toEqual({ _tag: "Accepted" })
      expect(yield* guard.admit("a", token(2, 5))).toEqual({ _tag: "Accepted" }) // the same compile asking again
      expect(yield* guard.admit("a", token(2, 4))).toEqual({ _tag: "Stale", highest: token(2, 5) })
      expect(yield* guard.admit("a", token(1, 900))).toEqual({ _tag: "Stale", highest: token(2, 5) })
      expect(yield* guard.admit("a", token(3, 1))).toEqual({ _tag: "Accepted" }) // a new owner
      expect(guard.highest("a")).toEqual(token(3, 1))
      // a stale token does not lower the record
      expect(guard.unsafeAdmit("a", token(2, 6))).toEqual({ _tag: "Stale", highest: token(3, 1) })
      expect(guard.highest("a")).toEqual(token(3, 1))
      // banks are independent
      expect(guard.unsafeAdmit("b", token(1, 1))).toEqual({ _tag: "Accepted" })
      guard.forget("a")
      expect(guard.highest("a")).toBeUndefined()
      expect(guard.unsafeAdmit("a", token(0, 1))).toEqual({ _tag: "Accepted" })
    }))

  it("accepts exactly the tokens not lower than every one accepted before (any order of arrival)", () => {
    fc.assert(fc.property(fc.array(tokenArb, { maxLength: 40 }), (tokens) => {
      const guard = FencingToken.unsafeMakeGuard()
      let highest: FencingToken.FencingToken | undefined
      for (const t of tokens) {
        const admission = guard.unsafeAdmit("bank", t)
        const stale = highest !== undefined && FencingToken.isStale(t, highest)
        expect(admission._tag).toBe(stale ? "Stale" : "Accepted")
        if (!stale) highest = t
        expect(guard.highest("bank")).toEqual(highest)
      }
    }))
  })
})
