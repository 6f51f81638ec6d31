/**
 * One queue's retains and forgets since the last drain, per bank: what the retain path adds to (two array writes, no
 * clock read, no allocation). The workload log drains its tallies once a minute; a cluster partition drains its own at
 * each flush (the counts not stored yet).
 *
 * @internal
 */

/** What the tally needs of the queue's bank table: bank numbers are stable, so `ids[i]` names bank `i` for good. */
export interface BankIds {
  readonly ids: ReadonlyArray<string>
}

const INITIAL_CAPACITY = 1024

/** A line's `count` is at most this (the tuner's limit); a larger minute's count is split over several lines. */
export const MAX_LINE_COUNT = 0x7fff_ffff

/** What the retain path tells a tally: bank `i` counted `count` retains, or forgets. */
export interface Tally {
  readonly retain: (i: number, count: number) => void
  readonly forget: (i: number, count: number) => void
}

/** One tally that tells both (either may be absent): the retain path checks for one, whatever it feeds. */
export const bothTallies = (a: Tally | undefined, b: Tally | undefined): Tally | undefined =>
  a === undefined ? b : b === undefined ? a : {
    retain: (i, count) => {
      a.retain(i, count)
      b.retain(i, count)
    },
    forget: (i, count) => {
      a.forget(i, count)
      b.forget(i, count)
    }
  }

export class RetainTally implements Tally {
  private retains = new Float64Array(INITIAL_CAPACITY)
  private forgets = new Float64Array(INITIAL_CAPACITY)
  /** The banks with counts since the last drain, in the order of their first event. */
  private touched = new Int32Array(INITIAL_CAPACITY)
  private touchedCount = 0
  /** The queue closed: the log drains the tally once more and forgets it. */
  closed = false

  constructor(private readonly table: BankIds) {}

  retain(i: number, count: number): void {
    if (i >= this.retains.length) this.grow(i)
    const retains = this.retains
    if (retains[i] === 0 && this.forgets[i] === 0) this.touch(i)
    retains[i]! += count
  }

  forget(i: number, count: number): void {
    if (i >= this.forgets.length) this.grow(i)
    const forgets = this.forgets
    if (forgets[i] === 0 && this.retains[i] === 0) this.touch(i)
    forgets[i]! += count
  }

  /** True when nothing was counted since the last drain. */
  get empty(): boolean {
    return this.touchedCount === 0
  }

  /** Hands every bank's counts to `visit` (bank id, retains, forgets) and starts again from zero. */
  drain(visit: (bankId: string, retains: number, forgets: number) => void): void {
    const { forgets, retains, touched } = this
    const n = this.touchedCount
    this.touchedCount = 0
    for (let k = 0; k < n; k++) {
      const i = touched[k]!
      const r = retains[i]!
      const f = forgets[i]!
      retains[i] = 0
      forgets[i] = 0
      visit(this.table.ids[i]!, r, f)
    }
  }

  private touch(i: number): void {
    if (this.touchedCount === this.touched.length) this.touched = grown(this.touched, this.touched.length * 2)
    this.touched[this.touchedCount++] = i
  }

  private grow(i: number): void {
    let size = this.retains.length
    while (size <= i) size *= 2
    this.retains = grown(this.retains, size)
    this.forgets = grown(this.forgets, size)
  }
}

const grown = <A extends Float64Array | Int32Array>(array: A, size: number): A => {
  const next = new (array.constructor as new(size: number) => A)(size)
  next.set(array)
  return next
}
