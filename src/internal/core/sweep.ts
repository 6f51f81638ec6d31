/**
 * The sweep: every idle bank that needs a compile at `now` (or was asked for by compileNow) is queued, exactly, from
 * one clock read; parked banks are unparked. It starts where the last one ran out of room, so a full queue cannot
 * starve the banks at the end of the table.
 *
 * @internal
 */
import { isOverdueAt, isStaleAt, triggerReason } from "../../BankCompileState.js"
import { DROPPED_FIRST, NO_SWEEP, QUEUED, type SweepReport } from "./answers.js"
import type { BankLifecycle } from "./bankLifecycle.js"
import {
  DROP_WARNED,
  FORGET,
  IDLE,
  MANUAL,
  OVERDUE,
  PARKED,
  POLICY,
  reasonCode,
  REQUESTED,
  STALE,
  STATUS
} from "./bankTable.js"

/** Why idle bank `i` needs a compile at `now` (-1: it does not); unparks it and marks it stale when it is. */
const dueReason = (core: BankLifecycle, i: number, now: number): number => {
  const { config, table } = core
  const state = table.state
  let s = state[i]!
  if ((s & PARKED) !== 0) state[i] = s &= ~PARKED
  if ((s & REQUESTED) !== 0) return MANUAL
  if ((s & POLICY) !== 0) return core.reasonAt(i, core.configOf(i), now)
  if (!config.enabled) return -1
  const m = table.memories[i]!
  if ((s & OVERDUE) === 0 && isOverdueAt(table.oldestAt[i]!, now, core.maxWaitMillis)) state[i] = s |= OVERDUE
  const overdue = (s & OVERDUE) !== 0
  if (
    m < Math.min(config.sizeThreshold, config.stalenessMinMemories) && table.forgets(i) < config.forgetThreshold &&
    !overdue
  ) {
    return -1
  }
  if ((s & STALE) === 0 && isStaleAt(table.referenceTime(i), now, core.stalenessMillis)) state[i] = s |= STALE
  return reasonCode(triggerReason(m, (s & STALE) !== 0, config, table.forgets(i), overdue))
}

/**
 * Queues every idle bank that needs a compile at `now`. Disabled banks are left alone, and so are banks whose forget
 * delay is running. Once the queue is full, the due banks left out are counted (and warned about once).
 */
export const sweep = (core: BankLifecycle, now: number): SweepReport => {
  if (!core.accepting) return NO_SWEEP
  const { table } = core
  const { size, state } = table
  let queued = 0, notQueued = 0, newlyWarned = 0
  let full = false
  let firstLeftOut = -1
  const start = core.sweepFrom < size ? core.sweepFrom : 0
  for (let n = 0; n < size; n++) {
    const i = start + n < size ? start + n : start + n - size
    if ((state[i]! & STATUS) !== IDLE) continue
    const reason = dueReason(core, i, now)
    if (reason === -1 || (reason === FORGET && table.forgetDue.has(i))) continue
    if (!full) {
      const answer = core.enqueue(i, reason)
      if (answer === QUEUED) {
        queued++
        continue
      }
      full = true // nothing leaves the queue during this synchronous loop
      if (answer === DROPPED_FIRST) newlyWarned++
    } else if ((state[i]! & DROP_WARNED) === 0) {
      state[i] = state[i]! | DROP_WARNED
      newlyWarned++
    }
    if (firstLeftOut === -1) firstLeftOut = i
    notQueued++
  }
  core.sweepFrom = firstLeftOut === -1 ? 0 : firstLeftOut
  return { queued, notQueued, newlyWarned }
}
