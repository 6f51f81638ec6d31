/**
 * The compile queue's synchronous core: the bank lifecycle (`bankLifecycle.ts`, `queueLifecycle.ts`) and what
 * happens from a compile's start to its end — the budget gate at the start, the job the engine is told, success with its re-check, failure
 * with its retry — plus the views the runtime needs (store rows, read views, the sweep, the budget). It never runs an
 * Effect, forks a fiber or reads a clock: it is given `now` and answers what the runtime must do. Tests and the
 * simulation drive it directly; `invariantViolations` says what a test should never see.
 *
 * The one thing it asks of the outside is `offer`: the queue's synchronous "take this bank if there is room".
 *
 * @internal
 */
import { type BankCompileState, type BankStatus, triggers } from "../../BankCompileState.js"
import type { PersistedBank } from "../../BankStateStore.js"
import type { CompileBudgetState } from "../../CompileBudget.js"
import type { CompileJob } from "../../CompileEngine.js"
import type { FencingToken } from "../../FencingToken.js"
import {
  type Answer,
  DEFERRED,
  type FailureAnswer,
  NOTHING,
  SKIPPED,
  type Start,
  type SweepReport,
  WAIT_BUDGET
} from "./answers.js"
import {
  DEADLINE,
  FORGET,
  IDLE,
  MANUAL,
  OVERDUE,
  PARKED,
  PENDING,
  POLICY,
  REASON_NAMES,
  REQUESTED,
  RUNNING,
  SIZE,
  STALE,
  STALENESS,
  STATUS
} from "./bankTable.js"
import type { BudgetCounts, BudgetRow } from "./budgetGate.js"
import { memoryWaitAt, withMemoryWait } from "./deadlines.js"
import { checkInvariants } from "./invariants.js"
import { QueueLifecycle } from "./queueLifecycle.js"
import * as ReadViews from "./readViews.js"
import { restoreBanks, rowOf } from "./storeRows.js"
import { sweep } from "./sweep.js"
import type { BudgetBuckets, RestoredBucket } from "./tokenBucket.js"

export * from "./answers.js"
export { type BudgetCounts, type BudgetRow, globalBucketStates, globalLevels } from "./budgetGate.js"
export type { CoreOptions } from "./coreOptions.js"

export class CompileCore extends QueueLifecycle {
  /** The budget's buckets (global and per bank) and the deferred banks. */
  get budget(): BudgetBuckets {
    return this.gate.buckets
  }

  // ---- a compile's start ----

  /**
   * A worker took bank `i` from the queue: it runs now, taking its memories and forgets (kept for `job` and
   * `succeeded`). A bank disabled while it waited (unless asked for by compileNow) is `SKIPPED`: idle, counters
   * kept. With a cost budget, at `now`: `WAIT_BUDGET` (held at the head) or `DEFERRED` (its own bucket is spent).
   * A run's memories are split off at `now` (its snapshot): their wait is measured to it (`memoryWait`), and retains
   * from now on wait for the next compile.
   */
  start(i: number, now = 0): Start {
    const table = this.table
    const reason = table.reasons.get(i) ?? MANUAL
    if (reason !== MANUAL && !this.configOf(i).enabled) {
      this.leaveHead(i)
      this.gate.forget(i)
      table.state[i]! &= ~REQUESTED
      table.reasons.delete(i)
      table.attempts.delete(i)
      this.setStatus(i, IDLE)
      return SKIPPED
    }
    const admitted = this.gate.admit(i, this.bankCapacity(i), now)
    if (admitted === WAIT_BUDGET) return WAIT_BUDGET
    this.leaveHead(i)
    if (typeof admitted !== "number") return DEFERRED
    table.state[i]! &= ~(REQUESTED | OVERDUE)
    this.setStatus(i, RUNNING)
    const forgets = table.forgets(i)
    if (forgets > 0) table.forgetsTaken.set(i, forgets)
    const memories = table.memories[i]!
    table.scopes.take(i, memories, forgets)
    const taken = table.takeMemories(i, memories)
    if (taken !== undefined) taken.memoryWait = memoryWaitAt(taken.oldestAt, taken.waitSum, memories, now)
    return { _tag: "Run", memories, waitedMillis: admitted, memoryWait: taken?.memoryWait }
  }

  /** The bank left the queue (or its head) for good: it runs, is skipped or is deferred. */
  private leaveHead(i: number): void {
    this.inQueue--
    this.gate.leftHead(i)
  }

  /** What the engine is told about the compile `start(i)` began, which took `memories`, under `fencingToken`. */
  job(i: number, memories: number, fencingToken: FencingToken): CompileJob {
    const table = this.table
    const scopes = table.scopes.jobScopes(i)
    const job: CompileJob = {
      bankId: table.ids[i]!,
      reason: REASON_NAMES[table.reasons.get(i) ?? MANUAL]!,
      memories,
      forgets: table.forgetsTaken.get(i) ?? 0,
      attempt: (table.attempts.get(i) ?? 0) + 1,
      fencingToken,
      ...withMemoryWait(table.taken.get(i)?.memoryWait)
    }
    return scopes === undefined ? job : { ...job, scopes }
  }

  // ---- a compile's end ----

  /**
   * The engine run succeeded at `now` (with `error` when the result reported one). The `taken` memories are consumed,
   * those that arrived meanwhile stay, and so do the dirty scopes a non-empty `scopesCompiled` left out; the answer is
   * the re-check's.
   */
  succeeded(
    i: number,
    taken: number,
    now: number,
    error: string | undefined,
    scopesCompiled: ReadonlyArray<string> = []
  ): Answer {
    const table = this.table
    table.memories[i]! -= taken
    table.taken.delete(i) // consumed: what arrived since the snapshot (the columns) is all that waits
    table.scopes.consumed(i, scopesCompiled, this.config.maxScopesPerBank)
    const forgetsTaken = table.forgetsTaken.get(i)
    if (forgetsTaken !== undefined) {
      table.setForgets(i, table.forgets(i) - forgetsTaken) // forgets that arrived during the compile stay counted
      table.forgetsTaken.delete(i)
    }
    table.reasons.delete(i)
    table.lastCompileAt[i] = now
    table.setConsecutiveFailures(i, 0)
    table.attempts.delete(i)
    if (error !== undefined) table.lastError.set(i, error)
    else table.lastError.delete(i)
    table.state[i]! &= ~(STALE | PARKED)
    if ((table.state[i]! & POLICY) !== 0 && table.policies.get(i)!.policy === undefined) {
      table.policies.delete(i) // a cleared policy: back on the timeline, in due order from now on
      table.state[i]! &= ~POLICY
    }
    this.scheduleStaleness(i, now)
    this.setStatus(i, IDLE)
    return this.afterSuccess(i, now)
  }

  /**
   * The re-check after a success: only when memories or forgets arrived during the compile (with sizeThreshold 0 an
   * empty bank would loop), or compileNow asked again.
   */
  private afterSuccess(i: number, now: number): Answer {
    const table = this.table
    const state = table.state[i]!
    const rest = table.memories[i]!
    const restForgets = table.forgets(i)
    if (!this.accepting) return NOTHING
    if ((state & REQUESTED) !== 0) return this.enqueue(i, MANUAL)
    if (rest === 0 && restForgets === 0) return NOTHING
    if ((state & POLICY) !== 0) return this.recheck(i, now, !table.forgetDue.has(i))
    const config = this.config
    if (rest > 0 && triggers(rest, (state & STALE) !== 0, config)) {
      return this.enqueue(i, rest >= config.sizeThreshold ? SIZE : STALENESS)
    }
    // A deadline of memories that arrived during the compile came while it ran.
    if (rest > 0 && (state & OVERDUE) !== 0 && config.enabled) return this.enqueue(i, DEADLINE)
    // Forgets that reached the threshold during the compile armed a delay then (queued when it ends), or had none.
    if (!config.enabled || restForgets < config.forgetThreshold || table.forgetDue.has(i)) return NOTHING
    return this.enqueue(i, FORGET)
  }

  /** The engine run failed: retry while attempts remain (pending, no worker held), else idle and parked. */
  failed(i: number, message: string): FailureAnswer {
    const table = this.table
    table.setConsecutiveFailures(i, table.consecutiveFailures(i) + 1)
    table.lastError.set(i, message)
    table.forgetsTaken.delete(i) // a failed compile consumes nothing
    this.freshness.waitAgain(i)
    table.scopes.putBack(i, this.config.maxScopesPerBank)
    const attempt = (table.attempts.get(i) ?? 0) + 1
    if (this.accepting && attempt < this.options.maxAttempts) {
      table.attempts.set(i, attempt)
      this.setStatus(i, PENDING)
      return { attempt, retry: true }
    }
    table.attempts.delete(i)
    table.reasons.delete(i)
    if (this.accepting) table.state[i]! |= PARKED
    this.setStatus(i, IDLE)
    return { attempt, retry: false }
  }

  /** Milliseconds before the retry after failed `attempt`, for a random `jitter` in [0.5, 1.5]. */
  retryDelay(attempt: number, jitter: number): number {
    return this.options.baseDelayMillis * 2 ** (attempt - 1) * jitter
  }

  /** Cut off by shutdown: the compile did not happen, so the bank stays pending. */
  interrupted(i: number): void {
    this.table.forgetsTaken.delete(i)
    this.freshness.waitAgain(i)
    this.table.scopes.putBack(i, this.config.maxScopesPerBank)
    this.setStatus(i, PENDING)
  }

  // ---- the budget ----

  /** The head bank waiting for the global budget, else -1: a worker takes it before anything in the queue. */
  nextHeld(): number {
    return this.gate.nextHeld()
  }

  /**
   * Banks held for the global budget at `now`: while it is spent, every bank queued or waiting for a slot (nothing
   * reaches a worker before it opens); otherwise only a held head (`budgetGate.ts`). `budget.waiting`.
   */
  heldForBudget(now: number): number {
    return this.gate.heldAt(now, this.inQueue + this.room.size)
  }

  /** Banks waiting for budget at `now`: held for the global budget, or deferred by their own (the gauge). */
  waitingForBudget(now: number): number {
    return this.heldForBudget(now) + this.gate.buckets.deferred.size
  }

  /** Whether the global budget lets no compile start before `deadline` (a closing queue waits for none of them). */
  budgetClosedUntil(deadline: number, now: number): boolean {
    return this.gate.closedUntil(deadline, now)
  }

  /** A compile of bank `i` ended with a result that used `tokens`: charged to the global and the bank's bucket. */
  charge(i: number, tokens: number, now: number): void {
    if (this.gate.buckets.charge(i, this.bankCapacity(i), tokens, now) && this.persistent) this.table.markDirty(i)
  }

  /** When the earliest deferred bank is due (epoch millis); NaN when none is deferred. */
  get nextDeferredDue(): number {
    return this.gate.buckets.deferred.nextDue
  }

  /** The deferred banks due by `now`, in due order: offer each to the queue again with `requeue`. */
  deferredDue(now: number): Array<number> {
    return this.gate.buckets.deferred.popDue(now)
  }

  /** The budget in full at `now` (`CompileQueue.budget`, `GET /v1/budget`). */
  budgetState(now: number): CompileBudgetState {
    return this.gate.state(now, this.inQueue + this.room.size, (i) => this.table.ids[i]!, (i) => this.bankCapacity(i))
  }

  /** The budget at `now` for `stats` (`Infinity` where unlimited). */
  budgetCounts(now: number): BudgetCounts {
    return this.gate.counts(now)
  }

  // ---- persistence ----

  /** Loads stored banks at `now`. Returns the banks stored as pending or running, now pending again, in order. */
  restore(banks: ReadonlyArray<PersistedBank>, now: number): Array<number> {
    return restoreBanks(this, banks, now)
  }

  /** Idle banks with forgets counted (after a restore, their forget delays are armed afresh). */
  idleWithForgets(): Array<number> {
    const table = this.table
    return table.banksWithForgets().filter((i) => (table.state[i]! & STATUS) === IDLE)
  }

  /** Banks changed since the last `changed()` (0 without a store). */
  get unflushed(): number {
    return this.table.dirtyBanks
  }

  /** The banks changed since the last call, oldest change first (empty without a store). */
  changed(): Int32Array {
    return this.table.takeDirty()
  }

  /** A flush of `banks` failed or was cut off: list them again (banks changed since are listed already). */
  unsaved(banks: Int32Array): void {
    for (let n = 0; n < banks.length; n++) this.table.markDirty(banks[n]!)
  }

  /** Bank `i` as a store row. */
  row(i: number): PersistedBank {
    return rowOf(this, i)
  }

  /** The global levels, when they changed since the last call (undefined when they did not). */
  budgetRow(): BudgetRow | undefined {
    return this.gate.row()
  }

  /** A failed flush: the global levels are saved again next time. */
  budgetUnsaved(): void {
    this.gate.buckets.dirty = true
  }

  /**
   * Loads the global levels a store kept: a restart does not refill a spent budget, and keeps what was spent under a
   * changed limit. Returns the buckets restored, with their stored and current limits.
   */
  restoreBudget(row: BudgetRow): Array<RestoredBucket> {
    return this.gate.buckets.restore(row.tokens ?? undefined, row.compiles ?? undefined)
  }

  // ---- the sweep and reads ----

  /** Queues every idle bank that triggers at `now` (see `sweep.ts`). */
  sweep(now: number): SweepReport {
    return sweep(this, now)
  }

  snapshot(i: number): BankCompileState {
    return ReadViews.snapshot(this.table, i, this.deadlineAt(i))
  }

  statusOf(i: number): BankStatus {
    return ReadViews.statusOf(this.table, i)
  }

  /** Banks in first-seen order from `cursor`, optionally only those with one status. */
  page(options?: ReadViews.PageOptions): ReadViews.Page {
    return ReadViews.page(this.table, options, (i) => this.deadlineAt(i))
  }

  /** The invariants the tests hold the core to, broken ones as messages (empty: all hold). */
  invariantViolations(): Array<string> {
    return checkInvariants(this)
  }
}
