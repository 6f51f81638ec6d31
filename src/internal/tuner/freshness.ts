/**
 * Freshness bookkeeping of one replay: each bank's retained-but-not-compiled memories as a FIFO of (time, count), and
 * the weighted sample of delays — retain to the end of the compile that consumed it — from which the percentiles come.
 *
 * @internal
 */
import { select } from "../core/select.js"

/** Samples of weight up to this are stored expanded (one slot per memory); heavier ones go to a side list. */
const EXPAND_UP_TO = 32

/** A growable Float64Array. */
class Floats {
  data: Float64Array
  length = 0

  constructor(capacity: number) {
    this.data = new Float64Array(Math.max(1024, capacity))
  }

  push(value: number): void {
    if (this.length === this.data.length) {
      const grown = new Float64Array(this.data.length * 2)
      grown.set(this.data)
      this.data = grown
    }
    this.data[this.length++] = value
  }

  sorted(): Float64Array {
    return this.data.subarray(0, this.length).sort()
  }

  /** The values, to be reordered in place. */
  get values(): Float64Array {
    return this.data.subarray(0, this.length)
  }
}

/** Delays in milliseconds, each with a weight (memories); percentiles interpolate linearly between order statistics. */
export class WeightedDelays {
  private readonly light: Floats
  private readonly heavyDelays: Array<number> = []
  private readonly heavyWeights: Array<number> = []
  /** Total weight. */
  total = 0
  max = 0

  /** @param expected how many memories will be added, if known (the buffer is sized once instead of doubling). */
  constructor(expected = 0) {
    this.light = new Floats(expected)
  }

  add(delay: number, weight: number): void {
    this.total += weight
    if (delay > this.max) this.max = delay
    if (weight <= EXPAND_UP_TO) {
      for (let n = 0; n < weight; n++) this.light.push(delay)
    } else {
      this.heavyDelays.push(delay)
      this.heavyWeights.push(weight)
    }
  }

  /**
   * The `ps` quantiles (0..1) of the expanded multiset, each interpolated between the values at ranks
   * floor(p·(W−1)) and ceil(p·(W−1)) (numpy's "linear"); NaN when empty.
   */
  quantiles(ps: ReadonlyArray<number>): Array<number> {
    if (this.total === 0) return ps.map(() => NaN)
    return this.heavyDelays.length === 0 ? this.interpolate(ps, this.selected()) : this.interpolate(ps, this.merged())
  }

  /**
   * Light samples only (every retain of at most EXPAND_UP_TO memories): order statistics by selection, a tenth of
   * the time of sorting a month's million delays, and the very same values.
   */
  private selected(): (rank: number) => number {
    const light = this.light.values
    let from = 0
    let current = NaN
    return (rank) => {
      if (rank >= from) {
        current = select(light, rank, from, light.length)
        from = rank + 1
      }
      return current
    }
  }

  /** Both runs sorted and walked in step. */
  private merged(): (rank: number) => number {
    const light = this.light.sorted()
    const order = this.heavyDelays.map((_, n) => n).sort((a, b) => this.heavyDelays[a]! - this.heavyDelays[b]!)
    // Walk both sorted runs in step: `valueAt(rank)` for increasing ranks.
    let li = 0
    let hi = 0
    let covered = 0 // ranks [0, covered) lie in the runs already passed
    let current = NaN
    const valueAt = (rank: number): number => {
      while (covered <= rank) {
        const nextLight = li < light.length ? light[li]! : Infinity
        const nextHeavy = hi < order.length ? this.heavyDelays[order[hi]!]! : Infinity
        if (nextLight <= nextHeavy) {
          current = nextLight
          li++
          covered++
        } else {
          current = nextHeavy
          covered += this.heavyWeights[order[hi]!]!
          hi++
        }
      }
      return current
    }
    return valueAt
  }

  /** Each quantile between the values at its two ranks; `valueAt` is asked for ranks in increasing order. */
  private interpolate(ps: ReadonlyArray<number>, valueAt: (rank: number) => number): Array<number> {
    const wanted = ps.map((p, n) => ({ p, n })).sort((a, b) => a.p - b.p)
    const out = new Array<number>(ps.length)
    for (const { n, p } of wanted) {
      const position = p * (this.total - 1)
      const lower = Math.floor(position)
      const low = valueAt(lower)
      const high = position > lower ? valueAt(lower + 1) : low
      out[n] = low + (high - low) * (position - lower)
    }
    return out
  }
}

/** Each bank's retains in time order, laid end to end: bank b's are `times`/`counts` at [start[b], start[b + 1]). */
export interface BankRetains {
  readonly start: Int32Array
  readonly times: Float64Array
  readonly counts: Int32Array
}

/**
 * Every retain event grouped by bank, so that a bank's memories waiting for a compile are its run from the oldest
 * unconsumed retain — a FIFO that costs nothing per retain, and a compile reads adjacent memory (following a chain
 * through the whole log cost a cache miss per memory). Built once per workload.
 */
export const bankRetains = (
  banks: Int32Array,
  times: Float64Array,
  counts: Int32Array,
  length: number,
  bankCount: number
): BankRetains => {
  const start = new Int32Array(bankCount + 1)
  for (let n = 0; n < length; n++) if (counts[n]! > 0) start[banks[n]! + 1]!++
  for (let bank = 0; bank < bankCount; bank++) start[bank + 1]! += start[bank]!
  const fill = start.slice(0, bankCount)
  const byBankTimes = new Float64Array(start[bankCount]!)
  const byBankCounts = new Int32Array(start[bankCount]!)
  for (let n = 0; n < length; n++) {
    if (counts[n]! <= 0) continue
    const at = fill[banks[n]!]!++
    byBankTimes[at] = times[n]!
    byBankCounts[at] = counts[n]!
  }
  return { start, times: byBankTimes, counts: byBankCounts }
}

/**
 * Per bank, the memories retained and not yet consumed, oldest first: the position of the bank's oldest unconsumed
 * retain in its run and how many of its memories are left. A compile consumes from there; the caller only ever
 * consumes memories that were retained already (a compile takes at most the bank's counter).
 */
export class MemoryBacklog {
  private readonly head: Int32Array
  private readonly headLeft: Int32Array

  constructor(private readonly retains: BankRetains) {
    const banks = retains.start.length - 1
    this.head = retains.start.slice(0, banks)
    this.headLeft = new Int32Array(banks)
    for (let bank = 0; bank < banks; bank++) {
      if (retains.start[bank]! < retains.start[bank + 1]!) this.headLeft[bank] = retains.counts[this.head[bank]!]!
    }
  }

  /** The `memories` oldest of the bank were consumed by a compile that ended at `now`: their delays go to `delays`. */
  consumed(bank: number, memories: number, now: number, delays: WeightedDelays): void {
    const { counts, start, times } = this.retains
    const end = start[bank + 1]!
    let n = this.head[bank]!
    let left = this.headLeft[bank]!
    let wanted = memories
    while (wanted > 0 && n < end) {
      const taken = left <= wanted ? left : wanted
      delays.add(now - times[n]!, taken)
      wanted -= taken
      left -= taken
      if (left === 0) {
        n++
        left = n < end ? counts[n]! : 0
      }
    }
    this.head[bank] = n
    this.headLeft[bank] = left
  }
}
