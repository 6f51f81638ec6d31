/**
 * The timeline ring buffer keeps due times as 32-bit offsets from a base: every due time read back must be exactly
 * the one pushed — across a base that moves, spans past an offset's range, fractions, and compaction.
 */
import { describe, expect, it } from "@effect/vitest"
import { StalenessTimeline } from "../../src/internal/core/stalenessTimeline.js"

const DAY = 86_400_000
const T0 = 1_764_000_000_000

/** Pushes every (bank, due) pair and pops them all, returning what came out in order. */
const roundTrip = (entries: ReadonlyArray<readonly [number, number]>, isCurrent = () => true) => {
  const timeline = new StalenessTimeline(isCurrent)
  for (const [bank, due] of entries) timeline.push(bank, due)
  const out: Array<[number, number]> = []
  timeline.popDue(Infinity, (bank, due) => out.push([bank, due]))
  return { out, timeline }
}

describe("StalenessTimeline — due times kept exactly", () => {
  it("sorted whole-millisecond times come back exactly, with the earliest as nextDue", () => {
    const timeline = new StalenessTimeline(() => true)
    for (let n = 0; n < 3000; n++) timeline.push(n, T0 + n * 7)
    expect(timeline.nextDue).toBe(T0)
    const out: Array<number> = []
    timeline.popDue(T0 + 7 * 1499, (_bank, due) => out.push(due))
    expect(out).toEqual(Array.from({ length: 1500 }, (_, n) => T0 + n * 7))
    expect(timeline.nextDue).toBe(T0 + 7 * 1500)
    expect(timeline.size).toBe(1500)
  })

  it("a span past ±24.8 days moves the base; one past 49 days, or a fraction, keeps Float64 times", () => {
    const moved: Array<[number, number]> = [[1, T0], [2, T0 + 20 * DAY], [3, T0 + 40 * DAY], [4, T0 + 45 * DAY + 1]]
    expect(roundTrip(moved).out).toEqual(moved)
    const wide: Array<[number, number]> = [[1, T0], [2, T0 + 30 * DAY], [3, T0 + 60 * DAY + 3], [4, T0 + 61 * DAY]]
    expect(roundTrip(wide).out).toEqual(wide)
    const fractions: Array<[number, number]> = [[1, T0 + 0.25], [2, T0 + 1], [3, T0 + 1.5]]
    expect(roundTrip(fractions).out).toEqual(fractions)
  })

  it("entries out of order (a clock stepping back) keep their times and positions", () => {
    const entries: Array<[number, number]> = [[1, T0], [2, T0 - 30 * DAY], [3, T0 + 5]]
    const timeline = new StalenessTimeline(() => true)
    for (const [bank, due] of entries) timeline.push(bank, due)
    const out: Array<[number, number]> = []
    timeline.popDue(T0, (bank, due) => out.push([bank, due]))
    expect(out).toEqual([[1, T0], [2, T0 - 30 * DAY]])
    expect(timeline.nextDue).toBe(T0 + 5)
  })

  it("an emptied timeline returns to offsets; compaction keeps the current entries' times", () => {
    const timeline = new StalenessTimeline((bank) => bank % 2 === 0)
    timeline.push(0, T0 + 0.5)
    timeline.popDue(Infinity, () => {})
    for (let n = 0; n < 5000; n++) timeline.push(n, T0 + 100 * DAY + n) // fills 1024 slots: compacts, then grows
    const out: Array<number> = []
    timeline.popDue(Infinity, (bank, due) => {
      expect(due).toBe(T0 + 100 * DAY + bank)
      out.push(bank)
    })
    expect(out.length).toBeLessThan(5000)
    expect(out).toEqual([...out].sort((a, b) => a - b))
    expect(out.slice(-1000).every((bank) => bank >= 4000)).toBe(true)
  })
})
