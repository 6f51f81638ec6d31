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
import {
  BankCompileState,
  type BankStatus,
  isStaleAt,
  type TriggerReason,
  triggerReason,
  triggers
} from "../../BankCompileState.js"
import { type BankPolicy, effectiveConfig } from "../../BankPolicy.js"
import type { PersistedBank, PersistedBudget, StoredLevel } from "../../BankStateStore.js"
import { BudgetBucketState, CompileBudgetState, DeferredBank } from "../../CompileBudget.js"
import type { CompileJob } from "../../CompileEngine.js"
import type { BankPage, ListBanksOptions } from "../../CompileQueue.js"
import type { CompileTriggerConfig } from "../../CompileTriggerConfig.js"
import {
  BankTable,
  COUNTED,
  DIRTY,
  DROP_WARNED,
  FORGET,
  IDLE,
  MANUAL,
  PARKED,
  PENDING,
  POLICY,
  REASON_NAMES,
  REQUESTED,
  RESTORED,
  RUNNING,
  SIZE,
  STALE,
  STALENESS,
  STATUS
} from "./bankTable.js"
import { StalenessTimeline } from "./stalenessTimeline.js"
import { type BudgetLimits, CompileBudget, type GlobalBuckets, type TokenBucket } from "./tokenBucket.js"

// ---- answers: what happened to a bank that needed a slot in the queue ----
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

/** `start`'s answer for a bank disabled while it waited in the queue: it is idle again, the engine is not called. */
export const SKIPPED = -1
/**
 * `start`'s answer while the global budget is spent: the bank stays at the head of the queue (`nextHeld`), pending,
 * and the worker waits for the budget to open before it takes anything.
 */
export const WAIT_BUDGET = -2
/** `start`'s answer for a bank whose own bucket is spent: deferred (pending, no worker, no queue slot) until it refills. */
export const DEFERRED = -3

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
  /** The cost budget (absent: no global or default per-bank limit; a policy's `bankTokens` still applies). */
  readonly budget?: BudgetLimits | undefined
  /** Global buckets shared with other queues (cluster mode); absent: this queue's own, from `budget`. */
  readonly sharedBudget?: GlobalBuckets | undefined
}

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

/** A trigger reason as an index into REASON_NAMES; -1 for none. */
const reasonCode = (reason: TriggerReason | undefined): number =>
  reason === undefined ? -1 : REASON_NAMES.indexOf(reason)

const optionalTime = (millis: number): Option.Option<DateTime.Utc> =>
  millis === millis ? Option.some(DateTime.unsafeMake(millis)) : Option.none()

export class CompileCore {
  readonly table = new BankTable()
  readonly timeline: StalenessTimeline
  readonly pending = new Set<number>()
  readonly running = new Set<number>()
  readonly config: CompileTriggerConfig
  readonly stalenessMillis: number
  /** Banks in the queue, or taken from it and held at its head while the global budget is spent. */
  inQueue = 0
  readonly budget: CompileBudget
  /** Banks taken from the queue while the global budget was spent: its head, in order (at most one per worker). */
  private readonly held: Array<number> = []
  /** Pending banks (retried, restored, no longer deferred) waiting for room in the full queue, in order. */
  private readonly waitingRoom: Array<number> = []
  private waitingHead = 0
  /** How long the bank `start` just let run had waited for budget (ms); -1 when it had not. */
  waitedMillis = -1
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
    this.budget = new CompileBudget(options.budget ?? NO_LIMITS, 0, options.sharedBudget)
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
    if ((this.table.state[i]! & POLICY) !== 0) return // a policy bank's staleness is computed exactly, from `now`
    if (this.stalenessMillis === 0) {
      this.table.state[i]! |= STALE
      return
    }
    this.timeline.push(i, reference + this.stalenessMillis)
    this.signals |= TIMELINE
  }

  /** Puts an idle bank in the queue for `reason` if it has room (dropping its forget delay); says what happened. */
  private enqueue(i: number, reason: number): Answer {
    if (!this.offer(i)) return this.refused(i)
    const table = this.table
    this.inQueue++
    table.state[i]! &= ~(DROP_WARNED | PARKED)
    table.reasons.set(i, reason)
    if (table.forgetDue.size !== 0) table.forgetDue.delete(i) // this compile takes the forgets along
    this.setStatus(i, PENDING)
    return QUEUED
  }

  /** The effective config of bank `i`: its policy's, else the queue's. */
  configOf(i: number): CompileTriggerConfig {
    return (this.table.state[i]! & POLICY) === 0 ? this.config : this.table.policies.get(i)!.config
  }

  /** Why bank `i` needs a compile at `now` under `config` (size, staleness, forget), exactly; -1 when it does not. */
  private reasonAt(i: number, config: CompileTriggerConfig, now: number): number {
    const table = this.table
    const stale = isStaleAt(table.referenceTime(i), now, config.stalenessMillis)
    return reasonCode(triggerReason(table.memories[i]!, stale, config, table.forgets[i]!))
  }

  /**
   * The exact rule for an idle bank at `now`, with its effective config (policy banks, policy changes, delays that
   * ran out): queue it, have its forget delay armed, or nothing. `delayOver`: the forget delay has run out.
   */
  recheck(i: number, now: number, delayOver = false): Answer {
    if ((this.table.state[i]! & STATUS) !== IDLE || !this.accepting) return NOTHING
    const config = this.configOf(i)
    const reason = this.reasonAt(i, config, now)
    if (reason === -1) return NOTHING
    return reason === FORGET && !delayOver ? this.forgetTriggered(i, config) : this.enqueue(i, reason)
  }

  /** The forget rule holds for idle bank `i`: queue it now without a delay; else its delay is armed once. */
  private forgetTriggered(i: number, config: CompileTriggerConfig): Answer {
    if (config.forgetDelaySeconds === 0) return this.enqueue(i, FORGET)
    return this.table.forgetDue.has(i) ? NOTHING : DELAY
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
    // A pending bank is queued once; a running one is re-checked when its compile ends; a parked one waits for the
    // sweep; a policy bank leaves the fast rule (one bit tested: banks without a policy pay nothing for policies).
    if ((state & (STATUS | PARKED | POLICY)) !== 0) return (state & (STATUS | PARKED)) === 0 ? RECHECK : NOTHING
    const config = this.config
    if (!triggers(memories, (state & STALE) !== 0, config)) return NOTHING
    return this.enqueue(i, memories >= config.sizeThreshold ? SIZE : STALENESS)
  }

  /**
   * Counts `count` forgotten memories. An idle bank whose rule now holds is queued (size and staleness first), or
   * its forget delay is armed; forgets for a running bank count towards the re-check at its end (a delay may be
   * armed already), a pending one's compile takes them along, a parked one waits for the sweep.
   */
  forget(i: number, count: number): Answer {
    const table = this.table
    const state = table.state[i]!
    const forgets = (table.forgets[i]! += count)
    if (this.persistent && (state & DIRTY) === 0) table.markDirty(i)
    const status = state & STATUS
    if (status === PENDING || (state & PARKED) !== 0) return NOTHING
    if (status === IDLE && (state & POLICY) !== 0) return RECHECK
    const config = this.configOf(i)
    if (!config.enabled) return NOTHING
    if (status === RUNNING) {
      if (forgets - (table.forgetsTaken.get(i) ?? 0) < config.forgetThreshold) return NOTHING
      return config.forgetDelaySeconds === 0 || table.forgetDue.has(i) ? NOTHING : DELAY
    }
    const memories = table.memories[i]!
    if (triggers(memories, (state & STALE) !== 0, config)) {
      return this.enqueue(i, memories >= config.sizeThreshold ? SIZE : STALENESS)
    }
    return forgets < config.forgetThreshold ? NOTHING : this.forgetTriggered(i, config)
  }

  /** Arms bank `i`'s forget delay from `now`: returns its length in milliseconds (the runtime's timer). */
  armForget(i: number, now: number): number {
    const delay = this.configOf(i).forgetDelayMillis
    this.table.forgetDue.set(i, now + delay)
    return delay
  }

  /** The forget delay armed to end at `due` ran out: queue the bank unless it was queued or re-armed meanwhile. */
  forgetDelayOver(i: number, due: number, now: number): Answer {
    const table = this.table
    if (table.forgetDue.get(i) !== due) return NOTHING
    table.forgetDue.delete(i)
    // Still running: the re-check at its end queues it (its delay is over).
    return this.recheck(i, now, true)
  }

  /** When bank `i`'s forget delay ends (epoch millis); undefined when none is armed. */
  forgetDueAt(i: number): number | undefined {
    return this.table.forgetDue.get(i)
  }

  /** `compileNow`: queue regardless of the rule; a running bank is queued again when its compile ends. */
  request(i: number): Answer {
    const status = this.table.state[i]! & STATUS
    if (status === PENDING) {
      this.table.reasons.set(i, MANUAL) // explicit wins: compiled even if disabled before a worker reaches it
      return NOTHING
    }
    this.table.state[i]! |= REQUESTED
    return status === IDLE ? this.enqueue(i, MANUAL) : NOTHING
  }

  // ---- policies ----

  /** Gives bank `i` its own policy; the answer is the re-check's at `now` (an idle bank whose rule holds is queued). */
  setPolicy(i: number, policy: BankPolicy, now: number): Answer {
    const table = this.table
    table.policies.set(i, { policy, config: effectiveConfig(this.config, policy) })
    table.state[i]! |= POLICY
    if (this.persistent) table.markDirty(i)
    this.redefer(i, now)
    return this.recheck(i, now)
  }

  /**
   * Drops bank `i`'s policy: the queue's config applies again. The staleness timeline takes entries only in due
   * order, so a bank not yet stale keeps having its staleness computed exactly until its next compile puts it back
   * on the timeline. Then re-checks it like `setPolicy`.
   */
  clearPolicy(i: number, now: number): Answer {
    const table = this.table
    const entry = table.policies.get(i)
    if (entry === undefined || entry.policy === undefined) return NOTHING
    if (this.persistent) table.markDirty(i)
    const reference = table.referenceTime(i)
    if (reference === reference && !isStaleAt(reference, now, this.stalenessMillis)) {
      table.policies.set(i, { policy: undefined, config: this.config })
    } else {
      table.policies.delete(i)
      table.state[i] = (table.state[i]! & ~POLICY) | (reference === reference ? STALE : 0)
    }
    this.redefer(i, now)
    return this.recheck(i, now)
  }

  policyOf(i: number): BankPolicy | undefined {
    return this.table.policies.get(i)?.policy
  }

  // ---- compiles ----

  /**
   * A worker took bank `i` from the queue: it runs now, taking its memories (k, the answer) and forgets (kept for
   * `job` and `succeeded`). A bank disabled while it waited (unless asked for by compileNow) is `SKIPPED`: idle,
   * counters kept. With a cost budget, at `now`: `WAIT_BUDGET` (held at the head) or `DEFERRED` (see `budgetCheck`);
   * `now` matters only then (callers without a budget may leave it out).
   */
  start(i: number, now = 0): number {
    const table = this.table
    const reason = table.reasons.get(i) ?? MANUAL
    this.waitedMillis = -1
    if (reason !== MANUAL && !this.configOf(i).enabled) {
      this.leaveHead(i)
      this.budget.waitingSince.delete(i)
      table.state[i]! &= ~REQUESTED
      table.reasons.delete(i)
      table.attempts.delete(i)
      this.setStatus(i, IDLE)
      return SKIPPED
    }
    const answer = this.budgetCheck(i, now)
    if (answer !== 0) return answer
    this.leaveHead(i)
    table.state[i]! &= ~REQUESTED
    this.setStatus(i, RUNNING)
    const forgets = table.forgets[i]!
    if (forgets > 0) table.forgetsTaken.set(i, forgets)
    return table.memories[i]!
  }

  /** The bank left the queue (or its head) for good: it runs, is skipped or is deferred. */
  private leaveHead(i: number): void {
    this.inQueue--
    if (this.held.length !== 0 && this.held[0] === i) this.held.shift()
  }

  /**
   * The budget at `start`: 0 when bank `i` may run now (a compile is taken from the global budget). Banks behind
   * the held head wait behind it (FIFO); a spent global budget holds the bank at the head; a spent own bucket defers it.
   */
  private budgetCheck(i: number, now: number): number {
    const budget = this.budget
    const held = this.held
    const atHead = held.length !== 0 && held[0] === i
    if ((held.length !== 0 && !atHead) || (budget.globalLimited && budget.opensAt(now) > now)) {
      if (!atHead) held.push(i)
      budget.waiting(i, now)
      return WAIT_BUDGET
    }
    const capacity = this.bankCapacity(i)
    if (capacity !== Infinity) {
      const due = budget.bankOpensAt(i, capacity, now)
      if (due > now) {
        this.leaveHead(i)
        this.defer(i, due, now)
        return DEFERRED
      }
    }
    budget.started(now)
    this.waitedMillis = budget.waited(i, now)
    return 0
  }

  private defer(i: number, due: number, now: number): void {
    const deferred = this.budget.deferred
    this.budget.waiting(i, now)
    const before = deferred.nextDue
    deferred.set(i, due)
    if (!(before <= due)) this.signals |= BUDGET
  }

  /** Bank `i`'s own token capacity: its policy's `bankTokens`, else the budget's; `Infinity` for none. */
  bankCapacity(i: number): number {
    const own = (this.table.state[i]! & POLICY) === 0 ? undefined : this.table.policies.get(i)!.policy?.bankTokens
    return own ?? this.budget.limits.bankTokens
  }

  /** The head bank waiting for the global budget, else -1: a worker takes it before anything in the queue. */
  nextHeld(): number {
    return this.held.length === 0 ? -1 : this.held[0]!
  }

  /** Banks waiting for budget: held at the head or deferred. */
  get waitingForBudget(): number {
    return this.held.length + this.budget.deferred.size
  }

  /** A compile of bank `i` ended with a result that used `tokens`: charged to the global and the bank's bucket. */
  charge(i: number, tokens: number, now: number): void {
    if (this.budget.charge(i, this.bankCapacity(i), tokens, now) && this.persistent) this.table.markDirty(i)
  }

  /** When the earliest deferred bank is due (epoch millis); NaN when none is deferred. */
  get nextDeferredDue(): number {
    return this.budget.deferred.nextDue
  }

  /** The deferred banks due by `now`, in due order: offer each to the queue again with `requeue`. */
  deferredDue(now: number): Array<number> {
    return this.budget.deferred.popDue(now)
  }

  /** A deferred bank's own capacity may have changed (policy): re-key it by its new due time. */
  private redefer(i: number, now: number): void {
    if (!this.budget.deferred.has(i)) return
    const capacity = this.bankCapacity(i)
    this.defer(i, capacity === Infinity ? now : this.budget.bankOpensAt(i, capacity, now), now)
  }

  /**
   * A pending bank (retry delay over, restored, no longer deferred) back into the queue: at once when it has room
   * (and nobody waits for room before it), else when a worker frees a slot (`fillRoom`). True when it is queued now.
   */
  requeue(i: number): boolean {
    if (!this.accepting) return false
    if (this.waitingHead === this.waitingRoom.length && this.offer(i)) {
      this.inQueue++
      return true
    }
    this.waitingRoom.push(i)
    return false
  }

  /** A worker took a bank, so the queue has room: banks waiting for it go in, in order. Returns how many. */
  fillRoom(): number {
    const room = this.waitingRoom
    let moved = 0
    while (this.accepting && this.waitingHead < room.length && this.offer(room[this.waitingHead]!)) {
      this.waitingHead++
      this.inQueue++
      moved++
    }
    if (this.waitingHead === room.length && room.length !== 0) {
      room.length = 0
      this.waitingHead = 0
    }
    return moved
  }

  /** What the engine is told about the compile `start(i)` began, which took `memories`. */
  job(i: number, memories: number): CompileJob {
    const table = this.table
    return {
      bankId: table.ids[i]!,
      reason: REASON_NAMES[table.reasons.get(i) ?? MANUAL]!,
      memories,
      forgets: table.forgetsTaken.get(i) ?? 0,
      attempt: (table.attempts.get(i) ?? 0) + 1
    }
  }

  /**
   * The engine run succeeded at `now` (with `error` when the result reported one). The `taken` memories are consumed,
   * those that arrived meanwhile stay; the answer is the re-check's.
   */
  succeeded(i: number, taken: number, now: number, error: string | undefined): Answer {
    const table = this.table
    table.memories[i]! -= taken
    const forgetsTaken = table.forgetsTaken.get(i)
    if (forgetsTaken !== undefined) {
      table.forgets[i]! -= forgetsTaken // forgets that arrived during the compile stay counted
      table.forgetsTaken.delete(i)
    }
    table.reasons.delete(i)
    table.lastCompileAt[i] = now
    table.consecutiveFailures[i] = 0
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
    // Re-check only when memories or forgets arrived during the compile: with sizeThreshold 0 an empty bank would loop.
    const state = table.state[i]!
    const rest = table.memories[i]!
    const restForgets = table.forgets[i]!
    if (!this.accepting) return NOTHING
    if ((state & REQUESTED) !== 0) return this.enqueue(i, MANUAL)
    if (rest === 0 && restForgets === 0) return NOTHING
    if ((state & POLICY) !== 0) return this.recheck(i, now, !table.forgetDue.has(i))
    const config = this.config
    if (rest > 0 && triggers(rest, (state & STALE) !== 0, config)) {
      return this.enqueue(i, rest >= config.sizeThreshold ? SIZE : STALENESS)
    }
    // Forgets that reached the threshold during the compile armed a delay then (queued when it ends), or had none.
    if (!config.enabled || restForgets < config.forgetThreshold || table.forgetDue.has(i)) return NOTHING
    return this.enqueue(i, FORGET)
  }

  /** The engine run failed: retry while attempts remain (pending, no worker held), else idle and parked. */
  failed(i: number, message: string): FailureAnswer {
    const table = this.table
    table.consecutiveFailures[i] = Math.min(table.consecutiveFailures[i]! + 1, MAX_FAILURES)
    table.lastError.set(i, message)
    table.forgetsTaken.delete(i) // a failed compile consumes nothing
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

  /**
   * Queues every idle bank that needs a compile at `now` (or was asked for by compileNow); unparks idle banks.
   * Disabled banks are left alone, and so are banks whose forget delay is running.
   */
  sweep(now: number): SweepReport {
    if (!this.accepting) return NO_SWEEP
    const config = this.config
    const { enabled, forgetThreshold, sizeThreshold, stalenessMinMemories } = config
    const lowest = Math.min(sizeThreshold, stalenessMinMemories)
    const { table, stalenessMillis } = this
    const { forgets, memories, size, state } = table
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
      let reason: number
      if ((s & REQUESTED) !== 0) reason = MANUAL
      else if ((s & POLICY) !== 0) reason = this.reasonAt(i, this.configOf(i), now)
      else {
        if (!enabled) continue
        const m = memories[i]!
        if (m < lowest && forgets[i]! < forgetThreshold) continue
        if ((s & STALE) === 0 && isStaleAt(table.referenceTime(i), now, stalenessMillis)) state[i] = s |= STALE
        reason = reasonCode(triggerReason(m, (s & STALE) !== 0, config, forgets[i]!))
      }
      if (reason === -1 || (reason === FORGET && table.forgetDue.has(i))) continue
      if (!full) {
        const answer = this.enqueue(i, reason)
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
      table.forgets[i] = bank.forgets ?? 0
      if (bank.policy != null) {
        table.policies.set(i, { policy: bank.policy, config: effectiveConfig(this.config, bank.policy) })
        table.state[i]! |= POLICY // its staleness is computed exactly: no timeline entry
      }
      if (bank.budget != null) this.budget.restoreBank(i, this.bankCapacity(i), bank.budget.level, bank.budget.at)
      const reference = table.referenceTime(i)
      if (reference === reference && (table.state[i]! & POLICY) === 0) {
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
      table.reasons.set(i, RESTORED)
      this.setStatus(i, PENDING)
    }
    table.takeDirty() // what was just loaded is what is stored
    return requeued
  }

  /** Idle banks with forgets counted (after a restore, their forget delays are armed afresh). */
  idleWithForgets(): Array<number> {
    const { forgets, size, state } = this.table
    const banks: Array<number> = []
    for (let i = 0; i < size; i++) if (forgets[i]! > 0 && (state[i]! & STATUS) === IDLE) banks.push(i)
    return banks
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
      status: status === IDLE && (state & REQUESTED) !== 0 ? "pending" : STATUS_NAMES[status]!,
      forgets: table.forgets[i]!,
      policy: table.policies.get(i)?.policy ?? null,
      budget: this.bankBudgetRow(i)
    }
  }

  /** Bank `i`'s own bucket as stored: its level and the time of that level; null while it is full (or unlimited). */
  private bankBudgetRow(i: number): StoredLevel | null {
    const bucket = this.budget.banks.get(i)
    return bucket === undefined ? null : { level: bucket.units / bucket.periodMillis, at: bucket.at }
  }

  /** The global levels, when they changed since the last call (undefined when they did not). */
  budgetRow(): BudgetRow | undefined {
    const budget = this.budget
    if (!budget.dirty) return undefined
    budget.dirty = false
    const level = (bucket: CompileBudget["tokens"]): StoredLevel | null =>
      bucket === undefined ? null : { level: bucket.units / bucket.periodMillis, at: bucket.at }
    return { tokens: level(budget.tokens), compiles: level(budget.compiles) }
  }

  /** A failed flush: the global levels are saved again next time. */
  budgetUnsaved(): void {
    this.budget.dirty = true
  }

  /** Loads the global levels a store kept: a restart does not refill a spent budget. */
  restoreBudget(row: BudgetRow): void {
    this.budget.restore(row.tokens ?? undefined, row.compiles ?? undefined)
  }

  /** The budget in full at `now` (`CompileQueue.budget`, `GET /v1/budget`). */
  budgetState(now: number): CompileBudgetState {
    const budget = this.budget
    const { bankTokens, periodMillis } = budget.limits
    const deferred = budget.deferred.ordered(1000).map(({ due, i }) => {
      const capacity = this.bankCapacity(i)
      return new DeferredBank({
        bankId: this.table.ids[i]!,
        capacity,
        tokensAvailable: budget.bankLevel(i, capacity, now),
        dueAt: DateTime.unsafeMake(due)
      }, true)
    })
    return new CompileBudgetState({
      periodSeconds: periodMillis / 1000,
      ...globalBucketStates(budget, now),
      bankTokens: Number.isFinite(bankTokens) ? bankTokens : null,
      waiting: this.held.length,
      deferredCount: budget.deferred.size,
      deferred
    }, true)
  }

  /** The budget at `now` for `stats` (`Infinity` where unlimited). */
  budgetCounts(now: number): BudgetCounts {
    const budget = this.budget
    return { ...globalLevels(budget, now), deferred: budget.deferred.size }
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
    this.held.length = 0
    this.waitingRoom.length = 0
    this.waitingHead = 0
    this.budget.deferred.clear() // deferred banks stay pending (and so in a store)
    return held
  }

  // ---- reads ----

  snapshot(i: number): BankCompileState {
    const table = this.table
    return new BankCompileState({
      bankId: table.ids[i]!,
      memoriesSinceLastCompile: table.memories[i]!,
      forgetsSinceLastCompile: table.forgets[i]!,
      lastCompileAt: optionalTime(table.lastCompileAt[i]!),
      firstRetainAt: optionalTime(table.firstRetainAt[i]!),
      status: STATUS_NAMES[table.state[i]! & STATUS]!,
      consecutiveFailures: table.consecutiveFailures[i]!,
      lastError: Option.fromNullable(table.lastError.get(i)),
      policy: Option.fromNullable(table.policies.get(i)?.policy)
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
      queued: this.inQueue,
      capacity: this.options.maxQueueSize
    }
  }
}
