/**
 * The replay's freshness percentiles: the same numbers as sorting every memory's delay and interpolating between
 * order statistics (numpy's "linear"), whether they come from selection (light samples only) or the sorted merge.
 */
import { describe, expect, it } from "@effect/vitest"
import { Utils } from "effect"
import { WeightedDelays } from "../../src/internal/tuner/freshness.js"

const PS = [0, 0.01, 0.5, 0.95, 0.999, 1]

/** The reference: every memory's delay, sorted, interpolated. */
const reference = (samples: ReadonlyArray<readonly [number, number]>, ps: ReadonlyArray<number>): Array<number> => {
  const all = new Float64Array(samples.flatMap(([delay, weight]) => Array.from({ length: weight }, () => delay))).sort()
  return ps.map((p) => {
    const position = p * (all.length - 1)
    const lower = Math.floor(position)
    const low = all[lower]!
    const high = position > lower ? all[lower + 1]! : low
    return low + (high - low) * (position - lower)
  })
}

const quantilesOf = (samples: ReadonlyArray<readonly [number, number]>, ps: ReadonlyArray<number>) => {
  const delays = new WeightedDelays()
  for (const [delay, weight] of samples) delays.add(delay, weight)
  return delays.quantiles(ps)
}

const shapes: Record<string, (n: number, random: Utils.PCGRandom) => number> = {
  random: (_, random) => Math.floor(random.number() * 1e9) / 10,
  "few distinct": (_, random) => Math.floor(random.number() * 4) * 1000,
  ascending: (n) => n,
  descending: (n) => 1e6 - n,
  "organ pipe": (n) => (n < 25_000 ? n : 50_000 - n),
  equal: () => 42
}

describe("WeightedDelays.quantiles", () => {
  for (const [name, shape] of Object.entries(shapes)) {
    it(`light samples (selection), ${name}: exactly the sorted reference`, () => {
      const random = new Utils.PCGRandom(7)
      const samples = Array.from({ length: 50_000 }, (_, n) => [shape(n, random), 1 + (n % 3)] as const)
      expect(quantilesOf(samples, PS)).toEqual(reference(samples, PS))
      expect(quantilesOf(samples, [0.95, 0.5])).toEqual(reference(samples, [0.95, 0.5]))
    })
  }

  it("with heavy samples (the sorted merge): exactly the sorted reference", () => {
    const random = new Utils.PCGRandom(11)
    const samples = Array.from({ length: 5_000 }, (_, n) => [random.number() * 1e6, n % 50 === 0 ? 200 : 1] as const)
    expect(quantilesOf(samples, PS)).toEqual(reference(samples, PS))
  })

  it("one sample, and none", () => {
    expect(quantilesOf([[5, 1]], [0.5, 0.95])).toEqual([5, 5])
    expect(quantilesOf([], [0.5])).toEqual([NaN])
  })
})
