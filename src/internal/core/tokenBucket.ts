/**
 * The cost budget's pure parts: a continuously refilled token bucket, and the queue's budget (global token and
 * compile buckets, per-bank token buckets, the banks deferred until their own bucket refills — `deferredBanks.ts`).
 * A limit that changes keeps what was spent (`TokenBucket.resize`). No clock, no Effect:
 * every method is given `now` (epoch millis), so the core and its tests drive it directly.
 *
 * @internal
 */
import type { StoredLevel } from "../../BankStateStore.js"
import { DeferredBanks } from "./deferredBanks.js"

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

  /**
   * From a stored level (tokens), its time and the limit it was measured against: what was spent under that limit
   * stays spent under `capacity` (see `resize`). Without a stored limit (rows written before limits were stored) the
   * level is kept, cut to a smaller capacity.
   */
  static restored(capacity: number, periodMillis: number, stored: StoredLevel): TokenBucket {
    const storedCapacity = stored.capacity
    if (storedCapacity === undefined || !(storedCapacity > 0) || !Number.isFinite(storedCapacity)) {
      return new TokenBucket(capacity, periodMillis, Math.min(stored.level, capacity) * periodMillis, stored.at)
    }
    const bucket = new TokenBucket(
      storedCapacity,
      periodMillis,
      Math.round(Math.min(stored.level, storedCapacity) * periodMillis),
      stored.at
    )
    bucket.resize(capacity, stored.at)
    return bucket
  }

  /**
   * The limit changes at `now` (a restart with another limit, a policy's `bankTokens`): what was spent in the window
   * stays spent, so a raised limit gives its new headroom at once; a lowered one leaves `capacity - spent`, but never
   * less than empty — or than the level was already, when a compile had overshot it (no limit change freezes a
   * bucket for longer than its own debt).
   */
  resize(capacity: number, now: number): void {
    if (capacity === this.capacity) return
    const units = this.unitsAt(now)
    this.units = Math.max(units + (capacity - this.capacity) * this.periodMillis, Math.min(units, 0))
    this.capacity = capacity
    if (now > this.at) this.at = now
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

/** A global bucket restored from a store: its limit when stored (undefined: not stored) and now. */
export interface RestoredBucket {
  readonly name: "tokens" | "compiles"
  readonly storedLimit: number | undefined
  readonly limit: number
  readonly bucket: TokenBucket
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
    bucket.resize(capacity, now)
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
    bucket.resize(capacity, now)
    bucket.take(tokens, now)
    return true
  }

  /** Bank `i`'s level under `capacity` (`Infinity` without a limit). */
  bankLevel(i: number, capacity: number, now: number): number {
    if (capacity === Infinity) return Infinity
    const bucket = this.banks.get(i)
    if (bucket === undefined) return capacity
    bucket.resize(capacity, now)
    return bucket.levelAt(now)
  }

  /**
   * Restores the global levels a store kept (each refills from its stored time; a level saved while a limit was off is
   * ignored). Returns, for each limited bucket restored, its stored limit (undefined: not stored) and its limit now.
   */
  restore(tokens: StoredLevel | undefined, compiles: StoredLevel | undefined): Array<RestoredBucket> {
    const restored: Array<RestoredBucket> = []
    const restoreOne = (name: RestoredBucket["name"], bucket: TokenBucket | undefined, stored: StoredLevel | undefined) => {
      if (bucket === undefined || stored === undefined) return
      const from = TokenBucket.restored(bucket.capacity, this.limits.periodMillis, stored)
      bucket.units = from.units
      bucket.at = from.at
      if (stored.capacity !== bucket.capacity) this.dirty = true // stored again under the limit it has now
      restored.push({ name, storedLimit: stored.capacity ?? undefined, limit: bucket.capacity, bucket })
    }
    restoreOne("tokens", this.tokens, tokens)
    restoreOne("compiles", this.compiles, compiles)
    return restored
  }

  /** Restores bank `i`'s level saved at `stored.at` (under the limit it was saved with, when stored). */
  restoreBank(i: number, capacity: number, stored: StoredLevel): void {
    if (capacity === Infinity) return
    this.banks.set(i, TokenBucket.restored(capacity, this.limits.periodMillis, stored))
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
