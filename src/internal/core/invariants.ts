/**
 * The invariants of the core's state, as messages for what is broken: the simulation and the model test check them
 * after every step. Each costs a pass over the table: for tests, never for the runtime.
 *
 * @internal
 */
import type { BankLifecycle } from "./bankLifecycle.js"
import { PENDING, RUNNING, STATUS } from "./bankTable.js"

/** Status words and the pending and running sets agree; the sets are disjoint. */
const statusesAgree = (core: BankLifecycle, broken: Array<string>): void => {
  const { pending, running, table } = core
  for (let i = 0; i < table.size; i++) {
    const status = table.state[i]! & STATUS
    const id = table.ids[i]
    if ((status === PENDING) !== pending.has(i)) broken.push(`${id}: status ${status} but pending set ${pending.has(i)}`)
    if ((status === RUNNING) !== running.has(i)) broken.push(`${id}: status ${status} but running set ${running.has(i)}`)
    if (pending.has(i) && running.has(i)) broken.push(`${id}: both pending and running`)
    if (!(table.memories[i]! >= 0) || !(table.forgets(i) >= 0)) broken.push(`${id}: a negative counter`)
    if (table.reasons.has(i) && status !== PENDING && status !== RUNNING) broken.push(`${id}: a reason while idle`)
    if (table.forgetsTaken.has(i) && status !== RUNNING) broken.push(`${id}: forgets taken while not running`)
  }
}

/**
 * The oldest uncompiled memory is known exactly when memories wait: the memories no compile took are counted iff
 * `oldestAt` is set, their wait sum is not negative, and only a running bank has memories taken.
 */
const oldestKnown = (core: BankLifecycle, broken: Array<string>): void => {
  const table = core.table
  for (let i = 0; i < table.size; i++) {
    const id = table.ids[i]
    const taken = table.taken.get(i)
    if (taken !== undefined && (table.state[i]! & STATUS) !== RUNNING) broken.push(`${id}: memories taken while not running`)
    const waiting = table.memories[i]! - (taken?.memories ?? 0)
    const oldest = table.oldestAt[i]!
    if ((waiting > 0) !== (oldest === oldest)) broken.push(`${id}: ${waiting} memories waiting but oldest ${oldest}`)
    if (!(table.waitSumOf(i) >= 0)) broken.push(`${id}: wait sum ${table.waitSumOf(i)}`) // (the tests' clocks never step back)
  }
}

/** Banks waiting for something (budget, room) are pending; the queue holds no more banks than are pending. */
const waitersPending = (core: BankLifecycle, broken: Array<string>): void => {
  const { gate, pending, table } = core
  if (core.inQueue < 0) broken.push(`queue count ${core.inQueue} < 0`)
  if (core.inQueue > pending.size) broken.push(`queue count ${core.inQueue} > ${pending.size} pending banks`)
  for (const i of gate.held) if (!pending.has(i)) broken.push(`${table.ids[i]}: held for the budget but not pending`)
  for (const { i } of gate.buckets.deferred.ordered(Infinity)) {
    if (!pending.has(i)) broken.push(`${table.ids[i]}: deferred but not pending`)
    if (gate.held.includes(i)) broken.push(`${table.ids[i]}: both deferred and held`)
  }
  for (const i of core.room.waiting) if (!pending.has(i)) broken.push(`${table.ids[i]}: waits for room but not pending`)
}

/**
 * What the budget's waiting count adds up (`budget.waiting`, the gauge) are distinct pending banks: the held head is
 * one of the queued banks, and queued, waiting-for-room and deferred banks are never the same bank — so while the
 * global budget is spent, "every queued bank and every one waiting for room, plus the deferred" counts each once.
 */
const budgetWaitersDistinct = (core: BankLifecycle, broken: Array<string>): void => {
  const { gate, pending } = core
  if (gate.held.length > Math.max(core.inQueue, 0)) {
    broken.push(`${gate.held.length} banks held for the budget but only ${core.inQueue} counted in the queue`)
  }
  const waiting = core.inQueue + core.room.size + gate.buckets.deferred.size
  if (waiting > pending.size) {
    broken.push(
      `queued ${core.inQueue} + waiting for room ${core.room.size} + deferred ${gate.buckets.deferred.size} > ${pending.size} pending banks`
    )
  }
}

export const checkInvariants = (core: BankLifecycle): Array<string> => {
  const broken: Array<string> = []
  statusesAgree(core, broken)
  oldestKnown(core, broken)
  waitersPending(core, broken)
  budgetWaitersDistinct(core, broken)
  return broken
}
