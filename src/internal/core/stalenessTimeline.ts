/**
 * Banks in the order they become stale, so the retain hot path can test a flag instead of reading the clock
 * (a clock read costs about as much as the whole rest of a retain).
 *
 * Every due time is "reference time + stalenessMillis", and reference times are clock readings taken in order, so
 * entries arrive sorted: a FIFO ring buffer replaces a priority queue. A bank whose reference time moved (it
 * compiled) gets a new entry; its old one is recognised as outdated when it comes due, or compacted away when the
 * buffer fills. Should the clock ever step back, an entry only comes due late — the sweep still checks exactly.
 *
 * Due times are kept as 32-bit whole-millisecond offsets from a base (4 bytes an entry, not 8: a timeline holds an
 * entry for nearly every bank). The base moves to the middle of the entries' span when a due time falls outside the
 * ±24.8 days an offset spans; a due time no offset holds exactly (a fraction of a millisecond, entries more than 49
 * days apart) turns the timeline to Float64 due times until it empties. Every due time read back is the one pushed.
 *
 * @internal
 */
export class StalenessTimeline {
  private banks = new Int32Array(1024)
  /** Due times as `base + offset` (while `wide` is undefined). */
  private offsets = new Int32Array(1024)
  private base = 0
  /** Due times as they are, once one did not fit an offset; back to offsets when the timeline empties. */
  private wide: Float64Array | undefined = undefined
  private head = 0
  private length = 0

  /** @param isCurrent whether an entry is still the bank's latest one (used to compact outdated entries away). */
  constructor(private readonly isCurrent: (bank: number, dueAt: number) => boolean) {}

  get size(): number {
    return this.length
  }

  /** Due time of the earliest entry; NaN when empty. */
  get nextDue(): number {
    return this.length === 0 ? NaN : this.dueAtSlot(this.head)
  }

  push(bank: number, dueAt: number): void {
    if (this.length === this.banks.length) this.makeRoom()
    if (this.length === 0) this.restart(dueAt)
    const slot = (this.head + this.length) & (this.banks.length - 1)
    this.banks[slot] = bank
    if (this.wide !== undefined) this.wide[slot] = dueAt
    else {
      const offset = dueAt - this.base
      if ((offset | 0) === offset && this.base + offset === dueAt) this.offsets[slot] = offset
      else this.placeOutOfRange(slot, dueAt)
    }
    this.length++
  }

  /** Removes every entry due at or before `now`, oldest first, handing each to `onDue`. */
  popDue(now: number, onDue: (bank: number, dueAt: number) => void): void {
    while (this.length > 0) {
      const due = this.dueAtSlot(this.head)
      if (!(due <= now)) return
      const bank = this.banks[this.head]!
      this.head = (this.head + 1) & (this.banks.length - 1) // `onDue` may push (and so grow the buffer)
      this.length--
      onDue(bank, due)
    }
  }

  private dueAtSlot(slot: number): number {
    return this.wide === undefined ? this.base + this.offsets[slot]! : this.wide[slot]!
  }

  /** An empty timeline: offsets again, from a base that puts `dueAt` mid-range. */
  private restart(dueAt: number): void {
    if (this.wide !== undefined) {
      this.offsets = new Int32Array(this.banks.length)
      this.wide = undefined
    }
    this.base = Math.round(dueAt)
  }

  /**
   * `dueAt` (for `slot`, not yet counted in `length`) does not fit an offset from `base`: the base moves to the
   * middle of the entries' span when that fits every entry exactly, else the timeline turns to Float64 due times.
   */
  private placeOutOfRange(slot: number, dueAt: number): void {
    const mask = this.banks.length - 1
    let low = dueAt
    let high = dueAt
    for (let n = 0; n < this.length; n++) {
      const due = this.base + this.offsets[(this.head + n) & mask]!
      if (due < low) low = due
      if (due > high) high = due
    }
    const base = Math.round(low + (high - low) / 2)
    const fits = (due: number) => {
      const offset = due - base
      return (offset | 0) === offset && base + offset === due
    }
    let allFit = fits(dueAt) && fits(low) && fits(high)
    for (let n = 0; allFit && n < this.length; n++) allFit = fits(this.base + this.offsets[(this.head + n) & mask]!)
    if (allFit) {
      for (let n = 0; n < this.length; n++) {
        const at = (this.head + n) & mask
        this.offsets[at] = this.base + this.offsets[at]! - base
      }
      this.base = base
      this.offsets[slot] = dueAt - base
      return
    }
    const wide = new Float64Array(this.banks.length)
    for (let n = 0; n < this.length; n++) {
      const at = (this.head + n) & mask
      wide[at] = this.base + this.offsets[at]!
    }
    wide[slot] = dueAt
    this.wide = wide
    this.offsets = new Int32Array(0) // unused until the timeline empties
  }

  /** Drops outdated entries; grows (capacity stays a power of two) only if that frees less than half. */
  private makeRoom(): void {
    const capacity = this.banks.length
    const mask = capacity - 1
    const keptSlots = new Int32Array(capacity)
    let kept = 0
    for (let n = 0; n < this.length; n++) {
      const slot = (this.head + n) & mask
      if (this.isCurrent(this.banks[slot]!, this.dueAtSlot(slot))) keptSlots[kept++] = slot
    }
    const size = kept > capacity / 2 ? capacity * 2 : capacity
    this.banks = gather(new Int32Array(size), this.banks, keptSlots, kept)
    if (this.wide === undefined) this.offsets = gather(new Int32Array(size), this.offsets, keptSlots, kept)
    else this.wide = gather(new Float64Array(size), this.wide, keptSlots, kept)
    this.head = 0
    this.length = kept
  }
}

/** `into[n] = from[slots[n]]` for the first `count` slots. */
const gather = <A extends Int32Array | Float64Array>(into: A, from: A, slots: Int32Array, count: number): A => {
  for (let n = 0; n < count; n++) into[n] = from[slots[n]!]!
  return into
}
