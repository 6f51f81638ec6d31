/**
 * What the core answers: the codes a transition returns (a number on the hot paths, so nothing is allocated there),
 * the answers of a compile's start and end, and the signals the runtime must fire after a transition.
 *
 * @internal
 */
import type { BankStatus } from "../../BankCompileState.js"
import type { MemoryWait } from "../../CompileEngine.js"

// ---- what happened to a bank that needed a slot in the queue ----

/** The bank did not need queuing (or was not allowed to be). */
export const NOTHING = 0
/** The bank was put in the queue and is now pending. */
export const QUEUED = 1
/** The queue was full; the bank stays idle and was warned about already. */
export const DROPPED = 2
/** The queue was full; the bank stays idle and this is its first drop since it was last queued: warn once. */
export const DROPPED_FIRST = 3
/** The bank has a policy: ask `recheck(i, now)` for the exact answer (the fast rule does not apply to it). */
export const RECHECK = 4
/** The forget rule holds and the bank's forget delay is not running yet: arm it with `armForget(i, now)`. */
export const DELAY = 5
export type Answer =
  | typeof NOTHING
  | typeof QUEUED
  | typeof DROPPED
  | typeof DROPPED_FIRST
  | typeof RECHECK
  | typeof DELAY

// ---- a compile's start ----

/**
 * `start`'s answer when the bank runs now: it takes `memories`, which waited `memoryWait` (none when it takes none);
 * `waitedMillis` it waited for budget (-1: none).
 */
export interface Run {
  readonly _tag: "Run"
  readonly memories: number
  readonly waitedMillis: number
  readonly memoryWait: MemoryWait | undefined
}
/** `start`'s answer for a bank disabled while it waited in the queue: it is idle again, the engine is not called. */
export const SKIPPED = { _tag: "Skipped" } as const
/**
 * `start`'s answer while the global budget is spent: the bank stays at the head of the queue (`nextHeld`), pending,
 * and the worker waits for the budget to open before it takes anything.
 */
export const WAIT_BUDGET = { _tag: "WaitBudget" } as const
/** `start`'s answer for a bank whose own bucket is spent: deferred (pending, no worker, no queue slot) until it refills. */
export const DEFERRED = { _tag: "Deferred" } as const
export type Start = Run | typeof SKIPPED | typeof WAIT_BUDGET | typeof DEFERRED

// ---- a compile's end, the sweep, the counts ----

/** What a failed engine run leads to. */
export interface FailureAnswer {
  /** Engine runs spent on this trigger so far, this one included. */
  readonly attempt: number
  /** True: the bank stays pending and is offered again after `retryDelay(attempt, jitter)`. False: it is idle. */
  readonly retry: boolean
}

export interface SweepReport {
  readonly queued: number
  /** Due banks the full queue could not take. */
  readonly notQueued: number
  /** Of those, the ones not warned about before. */
  readonly newlyWarned: number
}

export const NO_SWEEP: SweepReport = { queued: 0, notQueued: 0, newlyWarned: 0 }

export interface QueueCounts {
  readonly banks: number
  readonly pending: number
  readonly running: number
  readonly queued: number
  readonly capacity: number
}

// ---- signals the runtime must fire after a transition (bit flags, see `takeSignals`) ----

/** Nothing is pending or running: wake `drain`. */
export const DRAINED = 1
/** Nothing is queued or running: wake the shutdown's wait. */
export const QUIET = 2
/** The staleness timeline got an entry: wake its watcher. */
export const TIMELINE = 4
/** The deferred banks' earliest due time moved earlier: re-arm their timer. */
export const BUDGET = 8

export const STATUS_NAMES: ReadonlyArray<BankStatus> = ["idle", "pending", "running"]
