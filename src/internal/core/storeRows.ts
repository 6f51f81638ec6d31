/**
 * The store-row codec of the bank table: a bank as a `PersistedBank` row, and the rows a store kept loaded back
 * into the columns (banks stored as pending or running come back pending, to be queued again).
 *
 * @internal
 */
import { isStaleAt } from "../../BankCompileState.js"
import { effectiveConfig } from "../../BankPolicy.js"
import type { PersistedBank } from "../../BankStateStore.js"
import { STATUS_NAMES, TIMELINE } from "./answers.js"
import type { BankLifecycle } from "./bankLifecycle.js"
import { COUNTED, HARD_MAX_BANKS, IDLE, PENDING, POLICY, REQUESTED, RESTORED, STALE, STATUS } from "./bankTable.js"

/** Loads one stored bank into the columns; returns its index. */
const load = (core: BankLifecycle, bank: PersistedBank, now: number): number => {
  const table = core.table
  // Every stored bank is loaded, past `maxBanks` too (a lowered maximum refuses new banks, it drops none).
  const i = table.index.get(bank.bankId) ?? table.add(bank.bankId, HARD_MAX_BANKS)
  if (i === -1) throw new RangeError(`the store holds more than ${HARD_MAX_BANKS} banks: more than one queue can hold`)
  table.memories[i] = bank.memories
  table.lastCompileAt[i] = bank.lastCompileAt ?? NaN
  table.firstRetainAt[i] = bank.firstRetainAt ?? NaN
  table.setConsecutiveFailures(i, bank.consecutiveFailures)
  if (bank.lastError !== null) table.lastError.set(i, bank.lastError)
  table.state[i] = bank.firstRetainAt !== null ? COUNTED : 0
  table.setForgets(i, bank.forgets ?? 0)
  // Rows stored before the oldest memory was kept: it arrived after the reference time (a lower bound, so a deadline
  // comes early rather than late), and their wait sum is unknown (0: every memory counted as the oldest).
  const reference = table.referenceTime(i)
  const oldest = bank.oldestMemoryAt ?? (reference === reference ? reference : now)
  table.oldestAt[i] = bank.memories > 0 ? oldest : NaN
  table.setWaitSum(i, bank.memories > 0 ? Math.max(0, bank.memoryWaitSum ?? 0) : 0)
  if (bank.policy != null) {
    table.policies.set(i, { policy: bank.policy, config: effectiveConfig(core.config, bank.policy) })
    table.state[i]! |= POLICY // its staleness is computed exactly: no timeline entry
  }
  if (bank.budget != null) core.gate.buckets.restoreBank(i, core.bankCapacity(i), bank.budget)
  if (bank.scopes != null) table.scopes.restore(i, bank.scopes, core.config.maxScopesPerBank)
  return i
}

/** Loads stored banks at `now`. Returns the banks stored as pending or running, now pending again, in order. */
export const restoreBanks = (core: BankLifecycle, banks: ReadonlyArray<PersistedBank>, now: number): Array<number> => {
  const table = core.table
  const due: Array<number> = []
  const requeued: Array<number> = []
  for (const bank of banks) {
    const i = load(core, bank, now)
    const reference = table.referenceTime(i)
    if (reference === reference && (table.state[i]! & POLICY) === 0) {
      if (isStaleAt(reference, now, core.stalenessMillis)) table.state[i]! |= STALE
      else due.push(i)
    }
    if (bank.status !== "idle") requeued.push(i)
  }
  // The staleness timeline takes entries in due order.
  due.sort((a, b) => table.referenceTime(a) - table.referenceTime(b))
  for (const i of due) core.timeline.push(i, table.referenceTime(i) + core.stalenessMillis)
  core.raise(TIMELINE)
  restoreDeadlines(core)
  for (const i of requeued) {
    table.state[i]! |= REQUESTED
    table.reasons.set(i, RESTORED)
    core.setStatus(i, PENDING)
  }
  table.takeDirty() // what was just loaded is what is stored
  return requeued
}

/**
 * Deadlines of the loaded banks onto the timeline, in due order: the watcher's first round queues those that passed
 * while the process was down, the others come due on time.
 */
const restoreDeadlines = (core: BankLifecycle): void => {
  const table = core.table
  const waiting: Array<number> = []
  for (let i = 0; i < table.size; i++) {
    if (table.oldestAt[i] === table.oldestAt[i] && core.freshness.maxWaitMillisOf(i) !== 0) waiting.push(i)
  }
  waiting.sort((a, b) => table.oldestAt[a]! - table.oldestAt[b]!)
  for (const i of waiting) core.freshness.schedule(i)
}

/** Bank `i` as a store row. */
export const rowOf = (core: BankLifecycle, i: number): PersistedBank => {
  const table = core.table
  const state = table.state[i]!
  const status = state & STATUS
  const last = table.lastCompileAt[i]!
  const first = table.firstRetainAt[i]!
  const oldest = table.oldestUncompiledAt(i) // a running compile's memories still wait: stored with the rest
  return {
    bankId: table.ids[i]!,
    memories: table.memories[i]!,
    lastCompileAt: last === last ? last : null,
    firstRetainAt: first === first ? first : null,
    consecutiveFailures: table.consecutiveFailures(i),
    lastError: table.lastError.get(i) ?? null,
    // A compileNow the queue could not take yet still needs a compile.
    status: status === IDLE && (state & REQUESTED) !== 0 ? "pending" : STATUS_NAMES[status]!,
    forgets: table.forgets(i),
    policy: table.policies.get(i)?.policy ?? null,
    budget: core.gate.bankRow(i),
    oldestMemoryAt: oldest === oldest ? oldest : null,
    memoryWaitSum: oldest === oldest ? table.uncompiledWaitSum(i) : 0,
    scopes: table.scopes.row(i)
  }
}
