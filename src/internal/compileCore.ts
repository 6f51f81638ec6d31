/**
 * The compile queue's synchronous core: the state machine every decision goes through. It owns the bank table, the
 * staleness timeline, the pending and running sets and the queue counters, and exposes each transition as a method.
 * It never runs an Effect, forks a fiber or reads a clock: it is given `now` and answers what the runtime must do
 * (a number on the hot paths, so nothing is allocated there). Tests and the simulation drive it directly.
 *
 * The one thing it asks of the outside is `offer`: the queue's synchronous "take this bank if there is room".
 *
 * @internal
 */
import { DateTime, Option } from "effect"
import { BankCompileState, type BankStatus, isStaleAt, triggers } from "../BankCompileState.js"
import type { PersistedBank } from "../BankStateStore.js"
import type { BankPage, ListBanksOptions } from "../CompileQueue.js"
import type { CompileTriggerConfig } from "../CompileTriggerConfig.js"
import {
  BankTable,
  COUNTED,
  DIRTY,
  DROP_WARNED,
  IDLE,
  PARKED,
  PENDING,
  REQUESTED,
  RUNNING,
  STALE,
  STATUS
} from "./bankTable.js"
import { StalenessTimeline } from "./stalenessTimeline.js"

// ---- answers: what happened to a bank that needed a slot in the queue ----
/** The bank did not need queuing (or was not allowed to be). */
export const NOTHING = 0
/** The bank was put in the queue and is now pending. */
export const QUEUED = 1
/** The queue was full; the bank stays idle and was warned about already. */
export const DROPPED = 2
/** The queue was full; the bank stays idle and this is its first drop since it was last queued: warn once. */
export const DROPPED_FIRST = 3
export type Answer = typeof NOTHING | typeof QUEUED | typeof DROPPED | typeof DROPPED_FIRST

// ---- signals the runtime must fire after a transition (bit flags, see `takeSignals`) ----
/** Nothing is pending or running: wake `drain`. */
export const DRAINED = 1
/** Nothing is queued or running: wake the shutdown's wait. */
export const QUIET = 2
/** The staleness timeline got an entry: wake its watcher. */
export const TIMELINE = 4

export const STATUS_NAMES: ReadonlyArray<BankStatus> = ["idle", "pending", "running"]

const MAX_FAILURES = 0xffff_ffff

export interface CoreOptions {
  readonly config: CompileTriggerConfig
  /** Engine runs per trigger, the first included. */
  readonly maxAttempts: number
  readonly baseDelayMillis: number
  /** `Infinity` when unbounded (only reported: `offer` is what enforces it). */
  readonly maxQueueSize: number
  /** Keep the change list for a store. */
  readonly persistent: boolean
  /** The queue's synchronous offer: true when the bank got a slot. */
  readonly offer: (bank: number) => boolean
}

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

export interface QueueCounts {
  readonly banks: number
  readonly pending: number
  readonly running: number
  readonly queued: number
  readonly capacity: number
}

const NO_SWEEP: SweepReport = { queued: 0, notQueued: 0, newlyWarned: 0 }

const optionalTime = (millis: number): Option.Option<DateTime.Utc> =>
  millis === millis ? Option.some(DateTime.unsafeMake(millis)) : Option.none()

export class CompileCore {
  readonly table = new BankTable()
  readonly timeline: StalenessTimeline
  readonly pending = new Set<number>()
  readonly running = new Set<number>()
  readonly config: CompileTriggerConfig
  readonly stalenessMillis: number
  /** Banks in the queue, or offering themselves to it after a retry delay (may dip below 0 for a moment). */
  inQueue = 0
  /** False from the moment closing begins: retains, compileNow, the sweep and retries stop queuing. */
  accepting = true
  /** Signals raised since the runtime last took them. */
  private signals = 0
  /** Where the next sweep starts: the first bank the last one could not queue. */
  private sweepFrom = 0
  private readonly options: CoreOptions
  private readonly offer: (bank: number) => boolean
  private readonly persistent: boolean

  constructor(options: CoreOptions) {
    this.options = options
    this.config = options.config
    this.stalenessMillis = options.config.stalenessMillis
    this.offer = options.offer
    this.persistent = options.persistent
    this.timeline = new StalenessTimeline((i, due) =>
      (this.table.state[i]! & STALE) === 0 && this.table.referenceTime(i) + this.stalenessMillis === due
    )
  }

  // ---- banks and signals ----

  /** Adds a bank with default state; the caller checked the id. */
  add(bankId: string): number {
    return this.table.add(bankId)
  }

  /** The signals raised since the last call (`DRAINED | QUIET | TIMELINE`), cleared. */
  takeSignals(): number {
    const signals = this.signals
    this.signals = 0
    return signals
  }

  private setStatus(i: number, status: number): void {
    const table = this.table
    const byte = table.state[i]!
    const previous = byte & STATUS
    if (previous === status) return
    if (previous === PENDING) this.pending.delete(i)
    else if (previous === RUNNING) this.running.delete(i)
    if (status === PENDING) this.pending.add(i)
    else if (status === RUNNING) this.running.add(i)
    table.state[i] = (byte & ~STATUS) | status
    if (this.persistent) table.markDirty(i)
    if (this.running.size !== 0) return
    if (this.inQueue <= 0) this.signals |= QUIET
    if (this.pending.size === 0) this.signals |= DRAINED
  }

  /** Starts the staleness clock of bank `i` from `reference` (epoch millis). */
  private scheduleStaleness(i: number, reference: number): void {
    if (this.stalenessMillis === 0) {
      this.table.state[i]! |= STALE
      return
    }
    this.timeline.push(i, reference + this.stalenessMillis)
    this.signals |= TIMELINE
  }

  /** Puts an idle bank in the queue if it has room; the answer says what happened. */
  private enqueue(i: number): Answer {
    if (!this.offer(i)) return this.refused(i)
    this.inQueue++
    this.table.state[i]! &= ~(DROP_WARNED | PARKED)
    this.setStatus(i, PENDING)
    return QUEUED
  }

  /** A bank that should be queued but the queue is full: warned about once until it is queued again. */
  private refused(i: number): Answer {
    const state = this.table.state[i]!
    if ((state & DROP_WARNED) !== 0) return DROPPED
    this.table.state[i] = state | DROP_WARNED
    return DROPPED_FIRST
  }

  // ---- the retain hot path: a few array reads and writes and the pure rule; no allocation ----

  /** Whether the bank had a counted retain; if not, the runtime reads the clock once and calls `firstRetain`. */
  isCounted(i: number): boolean {
    return (this.table.state[i]! & COUNTED) !== 0
  }

  firstRetain(i: number, now: number): void {
    const table = this.table
    table.firstRetainAt[i] = now
    table.state[i]! |= COUNTED
    if (table.lastCompileAt[i] !== table.lastCompileAt[i]) this.scheduleStaleness(i, now) // NaN: never compiled
  }

  /** Counts `count` memories; queues the bank when the rule says so and it is idle and not parked. */
  retain(i: number, count: number): Answer {
    const table = this.table
    const state = table.state[i]!
    const memories = (table.memories[i]! += count)
    if (this.persistent && (state & DIRTY) === 0) table.markDirty(i)
    // A pending bank is queued once; a running one is re-checked when its compile ends; a parked one waits for the sweep.
    if ((state & (STATUS | PARKED)) !== 0 || !triggers(memories, (state & STALE) !== 0, this.config)) return NOTHING
    return this.enqueue(i)
  }

  /** `compileNow`: queue regardless of the rule; a running bank is queued again when its compile ends. */
  request(i: number): Answer {
    const status = this.table.state[i]! & STATUS
    if (status === PENDING) return NOTHING
    this.table.state[i]! |= REQUESTED
    return status === IDLE ? this.enqueue(i) : NOTHING
  }

  // ---- compiles ----

  /** A worker took bank `i` from the queue: it runs now. Returns the memories it takes (k). */
  start(i: number): number {
    this.inQueue--
    this.table.state[i]! &= ~REQUESTED
    this.setStatus(i, RUNNING)
    return this.table.memories[i]!
  }

  /**
   * The engine run succeeded at `now` (with `error` when the result reported one). The `taken` memories are consumed,
   * those that arrived meanwhile stay; the answer is the re-check's.
   */
  succeeded(i: number, taken: number, now: number, error: string | undefined): Answer {
    const table = this.table
    table.memories[i]! -= taken
    table.lastCompileAt[i] = now
    table.consecutiveFailures[i] = 0
    table.attempts.delete(i)
    if (error !== undefined) table.lastError.set(i, error)
    else table.lastError.delete(i)
    table.state[i]! &= ~(STALE | PARKED)
    this.scheduleStaleness(i, now)
    this.setStatus(i, IDLE)
    // Re-check only when memories arrived during the compile: with sizeThreshold 0 an empty bank would loop.
    const state = table.state[i]!
    const rest = table.memories[i]!
    if (!this.accepting) return NOTHING
    if ((state & REQUESTED) !== 0 || (rest > 0 && triggers(rest, (state & STALE) !== 0, this.config))) {
      return this.enqueue(i)
    }
    return NOTHING
  }

  /** The engine run failed: retry while attempts remain (pending, no worker held), else idle and parked. */
  failed(i: number, message: string): FailureAnswer {
    const table = this.table
    table.consecutiveFailures[i] = Math.min(table.consecutiveFailures[i]! + 1, MAX_FAILURES)
    table.lastError.set(i, message)
    const attempt = (table.attempts.get(i) ?? 0) + 1
    if (this.accepting && attempt < this.options.maxAttempts) {
      table.attempts.set(i, attempt)
      this.setStatus(i, PENDING)
      return { attempt, retry: true }
    }
    table.attempts.delete(i)
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
    this.setStatus(i, PENDING)
  }

  /** A pending bank (retry delay over, or restored) may offer itself to the queue again. */
  mayRequeue(_i: number): boolean {
    return this.accepting
  }

  /** The queue took a bank that `mayRequeue` let offer itself. */
  requeued(_i: number): void {
    this.inQueue++
  }

  // ---- staleness and the sweep ----

  /** When the staleness timeline's next entry is due (epoch millis); NaN when it is empty. */
  get nextStaleDue(): number {
    return this.timeline.nextDue
  }

  /** Marks every bank whose staleness came due by `now` (outdated entries are skipped). */
  staleDue(now: number): void {
    this.timeline.popDue(now, this.markStale)
  }

  private readonly markStale = (i: number, due: number): void => {
    if (this.table.referenceTime(i) + this.stalenessMillis === due) this.table.state[i]! |= STALE
  }

  /** Queues every idle bank that needs a compile at `now` (or was asked for by compileNow); unparks idle banks. */
  sweep(now: number): SweepReport {
    if (!this.accepting) return NO_SWEEP
    const config = this.config
    const { sizeThreshold, stalenessMinMemories } = config
    const lowest = Math.min(sizeThreshold, stalenessMinMemories)
    const { table, stalenessMillis } = this
    const { memories, size, state } = table
    let queued = 0
    let notQueued = 0
    let newlyWarned = 0
    let full = false
    let firstLeftOut = -1
    // Start where the last sweep ran out of room, so a full queue cannot starve the banks at the end of the table.
    const start = this.sweepFrom < size ? this.sweepFrom : 0
    for (let n = 0; n < size; n++) {
      const i = start + n < size ? start + n : start + n - size
      let s = state[i]!
      if ((s & STATUS) !== IDLE) continue
      if ((s & PARKED) !== 0) state[i] = s &= ~PARKED
      const m = memories[i]!
      if (m < lowest && (s & REQUESTED) === 0) continue
      let stale = (s & STALE) !== 0
      if (!stale && isStaleAt(table.referenceTime(i), now, stalenessMillis)) {
        stale = true
        state[i] = s |= STALE
      }
      if ((s & REQUESTED) === 0 && !triggers(m, stale, config)) continue
      if (!full) {
        const answer = this.enqueue(i)
        if (answer === QUEUED) {
          queued++
          continue
        }
        full = true // nothing leaves the queue during this synchronous loop
        if (answer === DROPPED_FIRST) newlyWarned++
      } else if ((s & DROP_WARNED) === 0) {
        state[i] = s | DROP_WARNED
        newlyWarned++
      }
      if (firstLeftOut === -1) firstLeftOut = i
      notQueued++
    }
    this.sweepFrom = firstLeftOut === -1 ? 0 : firstLeftOut
    return { queued, notQueued, newlyWarned }
  }

  // ---- persistence ----

  /** Loads stored banks at `now`. Returns the banks stored as pending or running, now pending again, in order. */
  restore(banks: ReadonlyArray<PersistedBank>, now: number): Array<number> {
    const table = this.table
    const due: Array<number> = []
    const requeued: Array<number> = []
    for (const bank of banks) {
      const i = table.index.get(bank.bankId) ?? table.add(bank.bankId)
      table.memories[i] = bank.memories
      table.lastCompileAt[i] = bank.lastCompileAt ?? NaN
      table.firstRetainAt[i] = bank.firstRetainAt ?? NaN
      table.consecutiveFailures[i] = Math.min(bank.consecutiveFailures, MAX_FAILURES)
      if (bank.lastError !== null) table.lastError.set(i, bank.lastError)
      table.state[i] = bank.firstRetainAt !== null ? COUNTED : 0
      const reference = table.referenceTime(i)
      if (reference === reference) {
        if (isStaleAt(reference, now, this.stalenessMillis)) table.state[i]! |= STALE
        else due.push(i)
      }
      if (bank.status !== "idle") requeued.push(i)
    }
    // The staleness timeline takes entries in due order.
    due.sort((a, b) => table.referenceTime(a) - table.referenceTime(b))
    for (const i of due) this.timeline.push(i, table.referenceTime(i) + this.stalenessMillis)
    this.signals |= TIMELINE
    for (const i of requeued) {
      table.state[i]! |= REQUESTED
      this.setStatus(i, PENDING)
    }
    table.takeDirty() // what was just loaded is what is stored
    return requeued
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
    const table = this.table
    const state = table.state[i]!
    const status = state & STATUS
    const last = table.lastCompileAt[i]!
    const first = table.firstRetainAt[i]!
    return {
      bankId: table.ids[i]!,
      memories: table.memories[i]!,
      lastCompileAt: last === last ? last : null,
      firstRetainAt: first === first ? first : null,
      consecutiveFailures: table.consecutiveFailures[i]!,
      lastError: table.lastError.get(i) ?? null,
      // A compileNow the queue could not take yet still needs a compile.
      status: status === IDLE && (state & REQUESTED) !== 0 ? "pending" : STATUS_NAMES[status]!
    }
  }

  // ---- closing ----

  /** Closing begins: nothing is queued from now on. */
  close(): void {
    this.accepting = false
  }

  /** The queue was shut down (its banks stay pending): returns how many it held. */
  queueShutDown(): number {
    const held = this.inQueue
    this.inQueue = 0
    return held
  }

  // ---- reads ----

  snapshot(i: number): BankCompileState {
    const table = this.table
    return new BankCompileState({
      bankId: table.ids[i]!,
      memoriesSinceLastCompile: table.memories[i]!,
      lastCompileAt: optionalTime(table.lastCompileAt[i]!),
      firstRetainAt: optionalTime(table.firstRetainAt[i]!),
      status: STATUS_NAMES[table.state[i]! & STATUS]!,
      consecutiveFailures: table.consecutiveFailures[i]!,
      lastError: Option.fromNullable(table.lastError.get(i))
    }, true) // built from checked state: skip validation
  }

  statusOf(i: number): BankStatus {
    return STATUS_NAMES[this.table.state[i]! & STATUS]!
  }

  /** Banks in first-seen order from `cursor`, optionally only those with one status. */
  page(options?: ListBanksOptions): BankPage {
    const table = this.table
    const limit = Math.min(1000, Math.max(1, Math.trunc(options?.limit ?? 100)))
    const wanted = options?.status === undefined ? -1 : STATUS_NAMES.indexOf(options.status)
    const from = Number(options?.cursor ?? 0)
    const banks: Array<BankCompileState> = []
    let i = Number.isSafeInteger(from) && from > 0 ? from : 0
    for (; i < table.size && banks.length < limit; i++) {
      if (wanted === -1 || (table.state[i]! & STATUS) === wanted) banks.push(this.snapshot(i))
    }
    return { banks, nextCursor: i < table.size ? Option.some(String(i)) : Option.none() }
  }

  /** The ids of a set of banks (`pending`, `running`). */
  idsOf(banks: ReadonlySet<number>): ReadonlySet<string> {
    return new Set(Array.from(banks, (i) => this.table.ids[i]!))
  }

  counts(): QueueCounts {
    return {
      banks: this.table.size,
      pending: this.pending.size,
      running: this.running.size,
      queued: Math.max(0, this.inQueue),
      capacity: this.options.maxQueueSize
    }
  }
}
