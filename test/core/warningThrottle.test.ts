import { describe, expect, it } from "vitest"
import { WarningThrottle } from "../../src/internal/core/warningThrottle.js"

describe("WarningThrottle", () => {
  it("the first at once, then at most once per interval, counting every event since the last warning", () => {
    const throttle = new WarningThrottle(60_000)
    expect(throttle.note(0)).toEqual({ count: 1, first: true })
    expect(throttle.note(1_000)).toBeUndefined()
    expect(throttle.note(59_999)).toBeUndefined()
    expect(throttle.note(60_000)).toEqual({ count: 3, first: false })
    expect(throttle.note(60_001)).toBeUndefined()
  })
})
