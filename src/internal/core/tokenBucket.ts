/**
 * The cost budget's pure parts: a continuously refilled token bucket, and the queue's budget (global token and
 * compile buckets, per-bank token buckets, the banks deferred until their own bucket refills). No clock, no Effect:
 * every method is given `now` (epoch millis), so the core and its tests drive it directly.
 *
 * @internal
 */
import type { StoredLevel } from "../../BankStateStore.js"

/**
 * A bucket of `capacity` per `periodMillis`, refilled continuously, that may go negative.
 *
 * Kept in "units" (level × periodMillis): with integer times, amounts and capacities every refill and charge is an
 * integer, so "above 0 at 12 minutes and 1 ms, not at 12 minutes" is exact rather than a float rounding.
 */
export class TokenBucket {
  constructor(
    public capacity: number,
    readonly periodMillis: number,
    /** The level at `at`, in units. */
    public units: number,
    public at: number
  ) {}

  static full(capacity: number, periodMillis: number, now: number): TokenBucket {
    return new TokenBucket(capacity, periodMillis, capacity * periodMillis, now)
  }

  /** From a stored level (tokens) and its time; a level above a smaller capacity is cut to it. */
  static restored(capacity: number, periodMillis: number, level: number, at: number): TokenBucket {
    return new TokenBucket(capacity, periodMillis, Math.min(level, capacity) * periodMillis, at)
  }

  unitsAt(now: number): number {
    const full = this.capacity * this.periodMillis
    const units = this.units + (now > this.at ? (now - this.at) * this.capacity : 0)
    return units < full ? units : full
  }

  levelAt(now: number): number {
    return this.unitsAt(now) / this.periodMillis
  }

  isFullAt(now: number): boolean {
    return this.unitsAt(now) >= this.capacity * this.periodMillis
  }

  /** Subtracts `amount` at `now` (after refilling up to it); the level may go below 0. */
  take(amount: number, now: number): void {
    this.units = this.unitsAt(now) - amount * this.periodMillis
    if (now > this.at) this.at = now
  }

  /** The first millisecond from `now` at which the level is above 0 (`now` when it is already). */
  aboveZeroAt(now: number): number {
    const units = this.unitsAt(now)
    if (units > 0) return now
    return Math.max(now, this.at) + Math.floor(-units / this.capacity) + 1
  }

  /** The first millisecond from `now` at which the level is at least 1 (`now` when it is already). */
  atLeastOneAt(now: number): number {
    const units = this.unitsAt(now)
    if (units >= this.periodMillis) return now
    return Math.max(now, this.at) + Math.ceil((this.periodMillis - units) / this.capacity)
  }

  /** When the bucket is full again (`now` when it is). */
  fullAt(now: number): number {
    const missing = this.capacity * this.periodMillis - this.unitsAt(now)
    return missing <= 0 ? now : Math.max(now, this.at) + Math.ceil(missing / this.capacity)
  }
}

/** The budget's limits; `Infinity` where unlimited. */
export interface BudgetLimits {
  readonly tokens: number
  readonly compiles: number
  readonly bankTokens: number
  readonly periodMillis: number
}


/**
 * Banks whose own bucket is spent, in the order they become due (then the order they were deferred): a binary heap,
 * with stale entries (the bank was re-keyed or left) skipped when they surface.
 */
export class DeferredBanks {
  private readonly heap: Array<{ readonly i: number; readonly due: number; readonly seq: number }> = []
  /** The current due time of each deferred bank. */
  readonly dueOf = new Map<number, number>()
  private seq = 0

  get size(): number {
    return this.dueOf.size
  }

  has(i: number): boolean {
    return this.dueOf.has(i)
  }

  /** Defers bank `i` until `due` (or re-keys it). */
  set(i: number, due: number): void {
    this.dueOf.set(i, due)
    this.push({ i, due, seq: this.seq++ })
  }

  delete(i: number): void {
    this.dueOf.delete(i)
  }

  /** Earliest due time; NaN when none. */
  get nextDue(): number {
    this.dropStale()
    return this.heap.length === 0 ? NaN : this.heap[0]!.due
  }

  /** Removes and returns the banks due by `now`, in due order. */
  popDue(now: number): Array<number> {
    const due: Array<number> = []
    for (;;) {
      this.dropStale()
      const top = this.heap[0]
      if (top === undefined || top.due > now) return due
      this.pop()
      this.dueOf.delete(top.i)
      due.push(top.i)
    }
  }

  /** Deferred banks in due order (for reports). */
  ordered(limit: number): Array<{ readonly i: number; readonly due: number }> {
    return Array.from(this.dueOf, ([i, due]) => ({ i, due })).sort((a, b) => a.due - b.due).slice(0, limit)
  }

  clear(): void {
    this.heap.length = 0
    this.dueOf.clear()
  }

  private dropStale(): void {
    for (;;) {
      const top = this.heap[0]
      if (top === undefined || this.dueOf.get(top.i) === top.due) return
      this.pop()
    }
  }

  private less(a: number, b: number): boolean {
    const x = this.heap[a]!
    const y = this.heap[b]!
    return x.due < y.due || (x.due === y.due && x.seq < y.seq)
  }

  private swap(a: number, b: number): void {
    const heap = this.heap
    const t = heap[a]!
    heap[a] = heap[b]!
    heap[b] = t
  }

  private push(entry: { readonly i: number; readonly due: number; readonly seq: number }): void {
    const heap = this.heap
    heap.push(entry)
    let n = heap.length - 1
    while (n > 0) {
      const parent = (n - 1) >> 1
      if (!this.less(n, parent)) break
      this.swap(n, parent)
      n = parent
    }
  }

  private pop(): void {
    const heap = this.heap
    const last = heap.pop()!
    if (heap.length === 0) return
    heap[0] = last
    let n = 0
    for (;;) {
      const left = 2 * n + 1
      const right = left + 1
      let smallest = n
      if (left < heap.length && this.less(left, smallest)) smallest = left
      if (right < heap.length && this.less(right, smallest)) smallest = right
      if (smallest === n) return
      this.swap(n, smallest)
      n = smallest
    }
  }
}

/** The global token and compile buckets (absent when unlimited). */
export interface GlobalBuckets {
  readonly tokens: TokenBucket | undefined
  readonly compiles: TokenBucket | undefined
}

/**
 * Full global buckets for `limits`. Several queues may share one pair (cluster mode: a runner's partitions), each
 * keeping its own per-bank buckets and deferred banks.
 */
export const globalBuckets = (limits: BudgetLimits, now: number): GlobalBuckets => ({
  tokens: Number.isFinite(limits.tokens) ? TokenBucket.full(limits.tokens, limits.periodMillis, now) : undefined,
  compiles: Number.isFinite(limits.compiles) ? TokenBucket.full(limits.compiles, limits.periodMillis, now) : undefined
})

/**
 * The queue's budget: the global buckets (absent when unlimited), the per-bank buckets that are not full, the
 * deferred banks, and since when each waiting bank has waited (for the time-waited histogram).
 */
export class BudgetBuckets {
  readonly tokens: TokenBucket | undefined
  readonly compiles: TokenBucket | undefined
  /** Sparse: per-bank buckets charged within the last period (absent: full). */
  readonly banks = new Map<number, TokenBucket>()
  readonly deferred = new DeferredBanks()
  /** Banks waiting for budget (at the head or deferred): since when. */
  readonly waitingSince = new Map<number, number>()
  /** The global levels changed since the last flush. */
  dirty = false

  constructor(readonly limits: BudgetLimits, now: number, shared?: GlobalBuckets) {
    const global = shared ?? globalBuckets(limits, now)
    this.tokens = global.tokens
    this.compiles = global.compiles
  }

  /** Whether a global limit is set (else no compile ever waits at the head). */
  get globalLimited(): boolean {
    return this.tokens !== undefined || this.compiles !== undefined
  }

  /** When the global buckets next let a compile start: `now` when they do already. */
  opensAt(now: number): number {
    const tokens = this.tokens === undefined ? now : this.tokens.aboveZeroAt(now)
    const compiles = this.compiles === undefined ? now : this.compiles.atLeastOneAt(now)
    return tokens > compiles ? tokens : compiles
  }

  /** A compile starts: it takes one from the compiles bucket. */
  started(now: number): void {
    if (this.compiles === undefined) return
    this.compiles.take(1, now)
    this.dirty = true
  }

  /** When bank `i`'s own bucket of `capacity` is above 0: `now` when it is (or it has no limit). */
  bankOpensAt(i: number, capacity: number, now: number): number {
    const bucket = this.banks.get(i)
    if (bucket === undefined || capacity === Infinity) return now
    bucket.capacity = capacity
    if (bucket.isFullAt(now)) {
      this.banks.delete(i) // full again: forget it (its stored row refills to full as well)
      return now
    }
    return bucket.aboveZeroAt(now)
  }

  /** A compile of bank `i` (own capacity `capacity`) used `tokens`. Returns whether the bank's bucket changed. */
  charge(i: number, capacity: number, tokens: number, now: number): boolean {
    if (this.tokens !== undefined && tokens > 0) {
      this.tokens.take(tokens, now)
      this.dirty = true
    }
    if (capacity === Infinity || tokens <= 0) return false
    let bucket = this.banks.get(i)
    if (bucket === undefined) this.banks.set(i, bucket = TokenBucket.full(capacity, this.limits.periodMillis, now))
    bucket.capacity = capacity
    bucket.take(tokens, now)
    return true
  }

  /** Bank `i`'s level under `capacity` (`Infinity` without a limit). */
  bankLevel(i: number, capacity: number, now: number): number {
    if (capacity === Infinity) return Infinity
    const bucket = this.banks.get(i)
    if (bucket === undefined) return capacity
    bucket.capacity = capacity
    return bucket.levelAt(now)
  }

  /** Restores the global levels saved at `at`; a level saved while a limit was off is ignored. */
  restore(tokens: StoredLevel | undefined, compiles: StoredLevel | undefined): void {
    if (this.tokens !== undefined && tokens !== undefined) {
      const restored = TokenBucket.restored(this.tokens.capacity, this.limits.periodMillis, tokens.level, tokens.at)
      this.tokens.units = restored.units
      this.tokens.at = restored.at
    }
    if (this.compiles !== undefined && compiles !== undefined) {
      const restored = TokenBucket.restored(this.compiles.capacity, this.limits.periodMillis, compiles.level, compiles.at)
      this.compiles.units = restored.units
      this.compiles.at = restored.at
    }
  }

  /** Restores bank `i`'s level saved at `at`. */
  restoreBank(i: number, capacity: number, level: number, at: number): void {
    if (capacity === Infinity) return
    this.banks.set(i, TokenBucket.restored(capacity, this.limits.periodMillis, level, at))
  }

  /** Starts the wait clock of bank `i` (once per wait). */
  waiting(i: number, now: number): void {
    if (!this.waitingSince.has(i)) this.waitingSince.set(i, now)
  }

  /** Bank `i` starts: how long it waited for budget (milliseconds), or -1 when it did not. */
  waited(i: number, now: number): number {
    const since = this.waitingSince.get(i)
    if (since === undefined) return -1
    this.waitingSince.delete(i)
    return now - since
  }
}
