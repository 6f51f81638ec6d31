/**
 * The bank lifecycle: the state machine that takes a bank from idle to pending — the retain and forget hot paths, the
 * trigger rule and its exact re-check, compileNow, policies (`policies.ts`), forget delays, staleness, freshness
 * deadlines (`deadlines.ts`) — and keeps the pending and running sets, the queue counters and the signals.
 * `QueueLifecycle` adds the queue's room and closing, `CompileCore` what happens from a compile's start to its end.
 * Nothing here runs an Effect or reads a clock: it is given `now`.
 *
 * @internal
 */
import { isOverdueAt, isStaleAt, triggerReason, triggers } from "../../BankCompileState.js"
import type { BankPolicy } from "../../BankPolicy.js"
import type { CompileTriggerConfig } from "../../CompileTriggerConfig.js"
import {
  type Answer,
  BUDGET,
  DELAY,
  DRAINED,
  DROPPED,
  DROPPED_FIRST,
  NOTHING,
  QUEUED,
  QUIET,
  RECHECK,
  TIMELINE
} from "./answers.js"
import {
  BankTable,
  COUNTED,
  DEADLINE,
  DIRTY,
  DROP_WARNED,
  FAST_RULE_BITS,
  FORGET,
  IDLE,
  MANUAL,
  OVERDUE,
  PARKED,
  PENDING,
  POLICY,
  reasonCode,
  REQUESTED,
  RUNNING,
  SIZE,
  STALE,
  STALENESS,
  STATUS
} from "./bankTable.js"
import { BudgetGate } from "./budgetGate.js"
import { Deadlines } from "./deadlines.js"
import * as Policies from "./policies.js"
import { QueueRoom } from "./queueRoom.js"
import { StalenessTimeline } from "./stalenessTimeline.js"
import type { CoreOptions } from "./coreOptions.js"

export class BankLifecycle {
  readonly table = new BankTable()
  readonly timeline: StalenessTimeline
  readonly pending = new Set<number>()
  readonly running = new Set<number>()
  readonly config: CompileTriggerConfig
  readonly stalenessMillis: number
  /** The queue's `maxWaitSeconds` in millis (0: off); a policy bank's own is in its config. */
  readonly maxWaitMillis: number
  /** Freshness deadlines: each bank's, and their timeline (`deadlines.ts`). */
  readonly freshness: Deadlines
  /** Banks in the queue, or taken from it and held at its head while the global budget is spent. */
  inQueue = 0
  readonly gate: BudgetGate
  /** False from the moment closing begins: retains, compileNow, the sweep and retries stop queuing. */
  accepting = true
  /** Signals raised since the runtime last took them. */
  protected signals = 0
  /** Where the next sweep starts: the first bank the last one could not queue. */
  sweepFrom = 0
  /** Pending banks (retried, restored, no longer deferred) waiting for room in the full queue, in order. */
  readonly room: QueueRoom
  protected readonly options: CoreOptions
  /** Changes are listed for a store. */
  readonly persistent: boolean
  private readonly offer: (bank: number) => boolean

  constructor(options: CoreOptions) {
    this.options = options
    this.config = options.config
    this.stalenessMillis = options.config.stalenessMillis
    this.maxWaitMillis = options.config.maxWaitMillis
    this.offer = options.offer
    this.persistent = options.persistent
    if (options.maxBanks !== undefined) this.table.maxBanks = options.maxBanks
    this.gate = new BudgetGate(options.budget, options.sharedBudget)
    this.room = new QueueRoom(options.offer)
    this.timeline = new StalenessTimeline((i, due) =>
      (this.table.state[i]! & STALE) === 0 && this.table.referenceTime(i) + this.stalenessMillis === due
    )
    this.freshness = new Deadlines(this.table, this.maxWaitMillis)
  }

  // ---- banks and signals ----

  /** Adds a bank with default state; the caller checked the id. -1, changing nothing, past `maxBanks`. */
  add(bankId: string): number {
    return this.table.add(bankId)
  }

  /** The signals raised since the last call (`DRAINED | QUIET | TIMELINE | BUDGET`), cleared. */
  takeSignals(): number {
    const signals = this.gate.takeMovedEarlier() ? this.signals | BUDGET : this.signals
    this.signals = 0
    return signals
  }

  /** Raises `signal` for the runtime (the core's other modules: a restore, a deferral). */
  raise(signal: number): void {
    this.signals |= signal
  }

  /** Moves bank `i` to `status`, keeping the pending and running sets and raising `DRAINED` / `QUIET`. */
  setStatus(i: number, status: number): void {
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
  protected scheduleStaleness(i: number, reference: number): void {
    if ((this.table.state[i]! & POLICY) !== 0) return // a policy bank's staleness is computed exactly, from `now`
    if (this.stalenessMillis === 0) {
      this.table.state[i]! |= STALE
      return
    }
    this.timeline.push(i, reference + this.stalenessMillis)
    this.signals |= TIMELINE
  }

  /** Puts an idle bank in the queue for `reason` if it has room (dropping its forget delay); says what happened. */
  enqueue(i: number, reason: number): Answer {
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

  /**
   * Why idle bank `i` needs a compile at `now` under `config` (size, staleness, deadline, forget), exactly; -1 when
   * it does not.
   */
  reasonAt(i: number, config: CompileTriggerConfig, now: number): number {
    const table = this.table
    const stale = isStaleAt(table.referenceTime(i), now, config.stalenessMillis)
    const overdue = isOverdueAt(table.oldestAt[i]!, now, config.maxWaitMillis)
    return reasonCode(triggerReason(table.memories[i]!, stale, config, table.forgets(i), overdue))
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
  protected forgetTriggered(i: number, config: CompileTriggerConfig): Answer {
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

  /** Counts `count` memories that arrived at `now` (their task's); queues the bank when the rule says so. */
  retain(i: number, count: number, now: number): Answer {
    const table = this.table
    const state = table.state[i]!
    const memories = (table.memories[i]! += count)
    const oldest = table.oldestAt[i]!
    // The first memory no compile has taken starts the bank's wait (out of line: once per compile cycle).
    if (oldest !== oldest) this.firstWaiting(i, state, now)
    else table.addWaitSum(i, count * (now - oldest)) // a clock stepping back is clamped where the wait is read
    if (this.persistent && (state & DIRTY) === 0) table.markDirty(i)
    // The common retain ends at once: an idle bank with no policy, neither stale nor overdue, below the threshold.
    if ((state & FAST_RULE_BITS) === 0 && memories < this.config.sizeThreshold) return NOTHING
    // A pending bank is queued once; a running one is re-checked when its compile ends; a parked one waits for the
    // sweep; a policy bank leaves the fast rule (one bit tested: banks without a policy pay nothing for policies).
    if ((state & (STATUS | PARKED | POLICY)) !== 0) return (state & (STATUS | PARKED)) === 0 ? RECHECK : NOTHING
    const config = this.config
    if (!triggers(memories, (state & STALE) !== 0, config)) {
      return (state & OVERDUE) === 0 || !config.enabled ? NOTHING : this.enqueue(i, DEADLINE)
    }
    return this.enqueue(i, memories >= config.sizeThreshold ? SIZE : STALENESS)
  }

  /** Bank `i` had no memory waiting: this retain's time is its oldest (and its deadline goes on the timeline). */
  private firstWaiting(i: number, state: number, now: number): void {
    this.table.oldestAt[i] = now
    if (this.maxWaitMillis !== 0 || (state & POLICY) !== 0) this.freshness.schedule(i)
  }

  /**
   * Counts `count` forgotten memories. An idle bank whose rule now holds is queued (size and staleness first), or
   * its forget delay is armed; forgets for a running bank count towards the re-check at its end (a delay may be
   * armed already), a pending one's compile takes them along, a parked one waits for the sweep.
   */
  forget(i: number, count: number): Answer {
    const table = this.table
    const state = table.state[i]!
    const forgets = table.forgets(i) + count
    table.setForgets(i, forgets)
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

  // ---- forget delays, compileNow, policies ----

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

  /** Gives bank `i` its own policy; the answer is the re-check's at `now` (an idle bank whose rule holds is queued). */
  setPolicy(i: number, policy: BankPolicy, now: number): Answer {
    return Policies.set(this, i, policy, now)
  }

  /** Drops bank `i`'s policy: the queue's config applies again; re-checked like `setPolicy`. */
  clearPolicy(i: number, now: number): Answer {
    return Policies.clear(this, i, now)
  }

  policyOf(i: number): BankPolicy | undefined {
    return this.table.policies.get(i)?.policy
  }

  /** Bank `i`'s own token capacity: its policy's `bankTokens`, else the budget's; `Infinity` for none. */
  bankCapacity(i: number): number {
    const own = (this.table.state[i]! & POLICY) === 0 ? undefined : this.table.policies.get(i)!.policy?.bankTokens
    return own ?? this.gate.buckets.limits.bankTokens
  }

  // ---- staleness ----

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

  // ---- freshness deadlines (`deadlines.ts`) ----

  /** Bank `i`'s `maxWaitSeconds` in millis, its policy's or the queue's; 0: the rule is off for it. */
  maxWaitMillisOf(i: number): number {
    return this.freshness.maxWaitMillisOf(i)
  }

  /** When bank `i`'s oldest uncompiled memory reaches its max wait (epoch millis); NaN: no memory waits, or no rule. */
  deadlineAt(i: number): number {
    return this.freshness.deadlineAt(i)
  }
}
