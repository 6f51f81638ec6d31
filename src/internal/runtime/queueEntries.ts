/**
 * The queue's synchronous entry points — `unsafeNotifyRetain` (the hot path), `unsafeNotifyForget` and
 * `unsafeCompileNow` — and the check of their input. Each is one core transition plus carrying out its answer; the
 * retain and forget paths allocate nothing and read the clock only on a bank's first counted retain (and, for banks
 * with a policy or a forget delay to arm, when the rule needs `now`).
 *
 * @internal
 */
import { Effect } from "effect"
import { bankLimitError } from "../../BankLimit.js"
import * as CompileMetrics from "../../CompileMetrics.js"
import { NOTHING } from "../core/compileCore.js"
import { badCountMessage, invalidBankId, isCount } from "../core/inputRules.js"
import { WarningThrottle } from "../core/warningThrottle.js"
import type { RetainTally } from "../workloadLog/tally.js"
import { NO_TAGS, type QueueRuntime } from "./queueRuntime.js"
import { taskClock } from "./taskClock.js"

/** The bank's number, creating the bank; -1 (after a warning) for an invalid id or a new bank past `maxBanks`. */
const bankNumber = (rt: QueueRuntime, bankId: string): number => {
  const i = rt.core.table.index.get(bankId)
  if (i !== undefined) return i
  const invalid = invalidBankId(bankId)
  if (invalid !== undefined) {
    rt.reject(bankId, invalid)
    return -1
  }
  const added = rt.core.add(bankId)
  if (added === -1) refused(rt, bankId)
  return added
}

/** Per queue: the warnings about new banks refused at `maxBanks`. */
const refusals = new WeakMap<QueueRuntime, WarningThrottle>()

/** A new bank refused at `maxBanks`: counted as a rejected request, and warned about (throttled). */
const refused = (rt: QueueRuntime, bankId: string): void => {
  CompileMetrics.retainsRejected.unsafeUpdate(1, NO_TAGS)
  let throttle = refusals.get(rt)
  if (throttle === undefined) refusals.set(rt, throttle = new WarningThrottle())
  const due = throttle.note(rt.now())
  if (due === undefined) return
  const since = due.count === 1 ? "" : ` (${due.count} new banks refused since the last such warning)`
  rt.logFor(bankId, Effect.logWarning(`${bankLimitError(bankId, rt.core.table.maxBanks).message}${since}`))
}

const badCount = (rt: QueueRuntime, bankId: string, count: number): void => rt.reject(bankId, badCountMessage(count))

/** `tally`: the workload log's, when it is on (an array read and an add per retain; see `workloadLog/tally.ts`). */
export const makeNotifyRetain = (
  rt: QueueRuntime,
  tally?: RetainTally
): (bankId: string, count?: number) => void => {
  const core = rt.core
  const index = core.table.index
  const now = taskClock(rt.clock) // memories are stamped with their task's time: one clock read per task
  return (bankId, count = 1) => {
    if (!core.accepting) return
    if (!isCount(count)) return badCount(rt, bankId, count)
    let i = index.get(bankId)
    if (i === undefined && (i = bankNumber(rt, bankId)) === -1) return
    if (!core.isCounted(i)) {
      core.firstRetain(i, rt.now())
      rt.fireSignals()
    }
    rt.countRetains(count)
    if (tally !== undefined) tally.retain(i, count)
    const answer = core.retain(i, count, now())
    if (answer !== NOTHING) rt.answered(i, answer)
  }
}

export const makeNotifyForget = (
  rt: QueueRuntime,
  tally?: RetainTally
): (bankId: string, count?: number) => void => {
  const core = rt.core
  const index = core.table.index
  return (bankId, count = 1) => {
    if (!core.accepting) return
    if (!isCount(count)) return badCount(rt, bankId, count)
    let i = index.get(bankId)
    if (i === undefined && (i = bankNumber(rt, bankId)) === -1) return
    if (tally !== undefined) tally.forget(i, count)
    const answer = core.forget(i, count)
    if (answer !== NOTHING) rt.answered(i, answer)
  }
}

export const makeCompileNow = (rt: QueueRuntime): (bankId: string) => void => (bankId) => {
  if (!rt.core.accepting) return
  const i = bankNumber(rt, bankId)
  if (i === -1) return
  const answer = rt.core.request(i)
  if (answer !== NOTHING) rt.answered(i, answer)
  else if (rt.core.pending.has(i)) rt.queue.promote(i) // asked for while it waited: it is urgent now
}
