/**
 * The budget gate: whether a bank may start a compile now under the cost budget, and what waits for it — the banks
 * held while the global budget is spent (the whole queue; at most one per worker taken from it), and the banks
 * deferred until their own bucket refills. Plus the budget's levels as a store keeps them, and as reads show them.
 *
 * @internal
 */
import { DateTime } from "effect"
import type { PersistedBudget, StoredLevel } from "../../BankStateStore.js"
import { BudgetBucketState, CompileBudgetState, DeferredBank } from "../../CompileBudget.js"
import { DEFERRED, WAIT_BUDGET } from "./answers.js"
import { type BudgetLimits, BudgetBuckets, type GlobalBuckets, type TokenBucket } from "./tokenBucket.js"

const NO_LIMITS: BudgetLimits = { tokens: Infinity, compiles: Infinity, bankTokens: Infinity, periodMillis: 3_600_000 }

/** Global bucket levels as a store keeps them (`null`: that limit is off). */
export type BudgetRow = PersistedBudget

export interface BudgetCounts {
  readonly tokensAvailable: number
  readonly compilesAvailable: number
  readonly deferred: number
}

/** The global buckets as `CompileBudgetState` shows them (null where unlimited). */
export const globalBucketStates = (
  buckets: GlobalBuckets,
  now: number
): Pick<CompileBudgetState, "tokens" | "compiles"> => {
  const state = (b: TokenBucket | undefined, nextStartAt: (b: TokenBucket) => number) =>
    b === undefined ? null : new BudgetBucketState({
      capacity: b.capacity,
      available: b.levelAt(now),
      nextStartAt: DateTime.unsafeMake(nextStartAt(b)),
      fullAt: DateTime.unsafeMake(b.fullAt(now))
    }, true)
  return {
    tokens: state(buckets.tokens, (b) => b.aboveZeroAt(now)),
    compiles: state(buckets.compiles, (b) => b.atLeastOneAt(now))
  }
}

/** The global buckets' levels at `now` (`Infinity` where unlimited), as `stats.budget` shows them. */
export const globalLevels = (buckets: GlobalBuckets, now: number) => ({
  tokensAvailable: buckets.tokens === undefined ? Infinity : buckets.tokens.levelAt(now),
  compilesAvailable: buckets.compiles === undefined ? Infinity : buckets.compiles.levelAt(now)
})

/** A bucket as stored: its level, the level's time and the limit it was measured against. */
const storedLevel = (bucket: TokenBucket | undefined): StoredLevel | null =>
  bucket === undefined ? null : { level: bucket.units / bucket.periodMillis, at: bucket.at, capacity: bucket.capacity }

export class BudgetGate {
  readonly buckets: BudgetBuckets
  /** Banks taken from the queue while the global budget was spent: its head, in order (at most one per worker). */
  readonly held: Array<number> = []
  /** A deferral moved the earliest due time earlier since the last `takeMovedEarlier`. */
  private movedEarlier = false

  constructor(limits: BudgetLimits | undefined, shared: GlobalBuckets | undefined) {
    this.buckets = new BudgetBuckets(limits ?? NO_LIMITS, 0, shared)
  }

  /**
   * Whether bank `i` (its own bucket of `capacity`) may start at `now`: the time it waited for budget (ms; -1 when it
   * did not), and a compile is taken from the global budget. Banks behind the held head wait behind it (FIFO); a
   * spent global budget holds the bank at the head (`WAIT_BUDGET`); a spent own bucket defers it (`DEFERRED`: the
   * caller takes it off the head).
   */
  admit(i: number, capacity: number, now: number): number | typeof WAIT_BUDGET | typeof DEFERRED {
    const { buckets, held } = this
    const atHead = held.length !== 0 && held[0] === i
    if ((held.length !== 0 && !atHead) || (buckets.globalLimited && buckets.opensAt(now) > now)) {
      if (!atHead) held.push(i)
      buckets.waiting(i, now)
      return WAIT_BUDGET
    }
    if (capacity !== Infinity) {
      const due = buckets.bankOpensAt(i, capacity, now)
      if (due > now) {
        this.defer(i, due, now)
        return DEFERRED
      }
    }
    buckets.started(now)
    return buckets.waited(i, now)
  }

  /** Bank `i` left the queue's head for good (it runs, is skipped or deferred). */
  leftHead(i: number): void {
    if (this.held.length !== 0 && this.held[0] === i) this.held.shift()
  }

  /** Bank `i` no longer waits (skipped before it started). */
  forget(i: number): void {
    this.buckets.waitingSince.delete(i)
  }

  /** Defers bank `i` until `due`. */
  defer(i: number, due: number, now: number): void {
    const deferred = this.buckets.deferred
    this.buckets.waiting(i, now)
    const before = deferred.nextDue
    deferred.set(i, due)
    if (!(before <= due)) this.movedEarlier = true
  }

  /** A deferred bank's own capacity changed (its policy): re-keyed by its new due time. */
  redefer(i: number, capacity: number, now: number): void {
    if (!this.buckets.deferred.has(i)) return
    this.defer(i, capacity === Infinity ? now : this.buckets.bankOpensAt(i, capacity, now), now)
  }

  /** Whether the earliest deferred due time moved earlier since the last call (the runtime re-arms its timer). */
  takeMovedEarlier(): boolean {
    const moved = this.movedEarlier
    this.movedEarlier = false
    return moved
  }

  /** The head bank waiting for the global budget, else -1. */
  nextHeld(): number {
    return this.held.length === 0 ? -1 : this.held[0]!
  }

  /**
   * Banks held for the global budget at `now`, of the `queued` ones (in the queue, held at its head included, or
   * waiting for a slot in it). While the budget is spent no worker takes anything, so every one of them waits for it;
   * while it lets compiles start, only a bank a worker took and holds at the head (until the worker takes it again).
   */
  heldAt(now: number, queued: number): number {
    return this.closedAt(now) ? queued : this.held.length
  }

  /** Whether the global budget lets no compile start at `now`. */
  closedAt(now: number): boolean {
    const buckets = this.buckets
    return buckets.globalLimited && buckets.opensAt(now) > now
  }

  /**
   * Whether the global budget lets no compile start before `deadline` (`now` ≤ `deadline`): its buckets' next opening
   * (`nextStartAt`, computed from their refill at `now`) is at or after it. Charges only move the opening later, so
   * this stays true once it holds.
   */
  closedUntil(deadline: number, now: number): boolean {
    const buckets = this.buckets
    return buckets.globalLimited && buckets.opensAt(now) >= deadline
  }

  /** Nothing waits any more (the queue shut down; deferred banks stay pending, and so in a store). */
  clear(): void {
    this.held.length = 0
    this.buckets.deferred.clear()
  }

  // ---- as a store keeps it ----

  /** Bank `i`'s own bucket as stored; null while it is full (or unlimited). */
  bankRow(i: number): StoredLevel | null {
    const bucket = this.buckets.banks.get(i)
    return bucket === undefined ? null : storedLevel(bucket)
  }

  /** The global levels, when they changed since the last call (undefined when they did not). */
  row(): BudgetRow | undefined {
    const buckets = this.buckets
    if (!buckets.dirty) return undefined
    buckets.dirty = false
    return { tokens: storedLevel(buckets.tokens), compiles: storedLevel(buckets.compiles) }
  }

  // ---- as reads show it ----

  /** The budget in full at `now`; `idOf` and `capacityOf` name a bank and its own limit. */
  state(
    now: number,
    queued: number,
    idOf: (i: number) => string,
    capacityOf: (i: number) => number
  ): CompileBudgetState {
    const buckets = this.buckets
    const { bankTokens, periodMillis } = buckets.limits
    const deferred = buckets.deferred.ordered(1000).map(({ due, i }) => {
      const capacity = capacityOf(i)
      return new DeferredBank({
        bankId: idOf(i),
        capacity,
        tokensAvailable: buckets.bankLevel(i, capacity, now),
        dueAt: DateTime.unsafeMake(due)
      }, true)
    })
    return new CompileBudgetState({
      periodSeconds: periodMillis / 1000,
      ...globalBucketStates(buckets, now),
      bankTokens: Number.isFinite(bankTokens) ? bankTokens : null,
      waiting: this.heldAt(now, queued),
      deferredCount: buckets.deferred.size,
      deferred
    }, true)
  }

  /** The budget at `now` for `stats` (`Infinity` where unlimited). */
  counts(now: number): BudgetCounts {
    return { ...globalLevels(this.buckets, now), deferred: this.buckets.deferred.size }
  }
}
