/**
 * Banks in the order they become stale, so the retain hot path can test a flag instead of reading the clock
 * (a clock read costs about as much as the whole rest of a retain).
 *
 * Every due time is "reference time + stalenessMillis", and reference times are clock readings taken in order, so
 * entries arrive sorted: a FIFO ring buffer replaces a priority queue. A bank whose reference time moved (it
 * compiled) gets a new entry; its old one is recognised as outdated when it comes due, or compacted away when the
 * buffer fills. Should the clock ever step back, an entry only comes due late — the sweep still checks exactly.
 *
 * @internal
 */
export class StalenessTimeline {
  private banks = new Int32Array(1024)
  private dueAt = new Float64Array(1024)
  private head = 0
  private length = 0

  /** @param isCurrent whether an entry is still the bank's latest one (used to compact outdated entries away). */
  constructor(private readonly isCurrent: (bank: number, dueAt: number) => boolean) {}

  get size(): number {
    return this.length
  }

  /** Due time of the earliest entry; NaN when empty. */
  get nextDue(): number {
    return this.length === 0 ? NaN : this.dueAt[this.head]!
  }

  push(bank: number, dueAt: number): void {
    if (this.length === this.banks.length) this.makeRoom()
    const slot = (this.head + this.length) & (this.banks.length - 1)
    this.banks[slot] = bank
    this.dueAt[slot] = dueAt
    this.length++
  }

  /** Removes every entry due at or before `now`, oldest first, handing each to `onDue`. */
  popDue(now: number, onDue: (bank: number, dueAt: number) => void): void {
    const mask = this.banks.length - 1
    while (this.length > 0 && this.dueAt[this.head]! <= now) {
      const bank = this.banks[this.head]!
      const due = this.dueAt[this.head]!
      this.head = (this.head + 1) & mask
      this.length--
      onDue(bank, due)
    }
  }

  /** Drops outdated entries; grows (capacity stays a power of two) only if that frees less than half. */
  private makeRoom(): void {
    const capacity = this.banks.length
    const mask = capacity - 1
    let kept = 0
    const banks = new Int32Array(capacity)
    const dueAt = new Float64Array(capacity)
    for (let n = 0; n < this.length; n++) {
      const slot = (this.head + n) & mask
      if (this.isCurrent(this.banks[slot]!, this.dueAt[slot]!)) {
        banks[kept] = this.banks[slot]!
        dueAt[kept] = this.dueAt[slot]!
        kept++
      }
    }
    if (kept > capacity / 2) {
      this.banks = new Int32Array(capacity * 2)
      this.dueAt = new Float64Array(capacity * 2)
      this.banks.set(banks.subarray(0, kept))
      this.dueAt.set(dueAt.subarray(0, kept))
    } else {
      this.banks = banks
      this.dueAt = dueAt
    }
    this.head = 0
    this.length = kept
  }
}
