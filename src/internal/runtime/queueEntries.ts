/**
 * The queue's synchronous entry points — `unsafeNotifyRetain` (the hot path), `unsafeNotifyForget` and
 * `unsafeCompileNow`, each with its scoped form — and the check of their input. Each is one core transition plus
 * carrying out its answer; the plain retain and forget paths allocate nothing and read the clock only on a bank's
 * first counted retain (and, for banks with a policy or a forget delay to arm, when the rule needs `now`). The scoped
 * forms allocate only for a bank's or a scope's first mention (`dirtyScopes.ts`).
 *
 * @internal
 */
import { Effect } from "effect"
import { bankLimitError } from "../../BankLimit.js"
import * as CompileMetrics from "../../CompileMetrics.js"
import { NOTHING } from "../core/compileCore.js"
import {
  areScopeNames,
  type CompileNowOptions,
  invalidScopes,
  MAX_SCOPES_PER_WRITE,
  type WriteOptions
} from "../../DirtyScopes.js"
import { badCountMessage, invalidBankId, isCount } from "../core/inputRules.js"
import { WarningThrottle } from "../core/warningThrottle.js"
import type { Tally } from "../workloadLog/tally.js"
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

/** Notes the scopes a write to bank `i` named, before it is counted (so the compile it may queue takes them). */
const noteScopes = (rt: QueueRuntime, i: number, scopes: ReadonlyArray<string>, memories: number, forgets: number) => {
  const core = rt.core
  core.table.scopes.note(i, scopes, memories, forgets, core.config.maxScopesPerBank)
  if (core.persistent) core.table.markDirty(i)
}

/**
 * A scoped write's bank number, its count and scopes checked whole first (an invalid count or scope counts nothing,
 * with a warning); -1 when refused. Allocates nothing for a valid write.
 */
const scopedBank = (rt: QueueRuntime, bankId: string, count: number, scopes: ReadonlyArray<string> | undefined) => {
  if (!isCount(count)) {
    badCount(rt, bankId, count)
    return -1
  }
  if (scopes !== undefined && !areScopeNames(scopes)) {
    rt.reject(bankId, invalidScopes(scopes)!)
    return -1
  }
  return bankNumber(rt, bankId)
}

/**
 * The fast path of a scoped write to existing bank `i`: a valid count naming only scopes the bank's dirty set holds
 * (each checked when first named) is noted there, and true; else false, nothing noted, and the write takes the whole
 * check (`scopedBank`).
 */
const notedAsKnown = (rt: QueueRuntime, i: number, count: number, scopes: unknown, forget: boolean): boolean =>
  isCount(count) && Array.isArray(scopes) && scopes.length <= MAX_SCOPES_PER_WRITE &&
  rt.core.table.scopes.noteKnown(
    i,
    scopes as ReadonlyArray<string>,
    forget ? 0 : count,
    forget ? count : 0,
    rt.core.config.maxScopesPerBank
  )

/** Bank `i`'s first counted retain: it starts its staleness clock. */
const firstRetain = (rt: QueueRuntime, i: number): void => {
  rt.core.firstRetain(i, rt.now())
  rt.fireSignals()
}

/**
 * `tally`: the workload log's when it is on, a cluster partition's unstored counts (an array read and an add per
 * retain; see `workloadLog/tally.ts`).
 */
export const makeNotifyRetain = (
  rt: QueueRuntime,
  tally?: Tally
): (bankId: string, count?: number | WriteOptions) => void => {
  const core = rt.core
  const index = core.table.index
  // Memories are stamped with their task's time (one clock read per task); the retains metric waits for the task end.
  const now = taskClock(rt.clock, rt.retainsTaskEnded)
  const counted = (i: number, count: number): void => {
    if (!core.isCounted(i)) firstRetain(rt, i)
    rt.unpublishedRetains += count
    if (tally !== undefined) tally.retain(i, count)
    const answer = core.retain(i, count, now())
    if (answer !== NOTHING) rt.answered(i, answer)
  }
  // The options form leaves at the count check, which it fails: a plain count pays nothing for it.
  const withScopes = (bankId: string, options: WriteOptions): void => {
    const count = options.count ?? 1
    const scopes = options.scopes
    const known = index.get(bankId)
    if (known !== undefined && notedAsKnown(rt, known, count, scopes, false)) return counted(known, count)
    const i = scopedBank(rt, bankId, count, scopes)
    if (i === -1) return
    if (scopes !== undefined && scopes.length > 0) noteScopes(rt, i, scopes, count, 0)
    counted(i, count)
  }
  return (bankId, count = 1) => {
    if (!core.accepting) return
    if (!isCount(count as number)) {
      return typeof count === "object" && count !== null ? withScopes(bankId, count) : badCount(rt, bankId, count)
    }
    let i = index.get(bankId)
    if (i === undefined && (i = bankNumber(rt, bankId)) === -1) return
    // `counted`, written out: V8 inlined it into this function in some processes and not in others (B2 then differed
    // by 10 %); one function leaves it nothing to decide.
    if (!core.isCounted(i)) firstRetain(rt, i)
    rt.unpublishedRetains += count as number
    if (tally !== undefined) tally.retain(i, count as number)
    const answer = core.retain(i, count as number, now())
    if (answer !== NOTHING) rt.answered(i, answer)
  }
}

export const makeNotifyForget = (
  rt: QueueRuntime,
  tally?: Tally
): (bankId: string, count?: number | WriteOptions) => void => {
  const core = rt.core
  const index = core.table.index
  const counted = (i: number, count: number): void => {
    if (tally !== undefined) tally.forget(i, count)
    const answer = core.forget(i, count)
    if (answer !== NOTHING) rt.answered(i, answer)
  }
  const withScopes = (bankId: string, options: WriteOptions): void => {
    const count = options.count ?? 1
    const scopes = options.scopes
    const known = index.get(bankId)
    if (known !== undefined && notedAsKnown(rt, known, count, scopes, true)) return counted(known, count)
    const i = scopedBank(rt, bankId, count, scopes)
    if (i === -1) return
    if (scopes !== undefined && scopes.length > 0) noteScopes(rt, i, scopes, 0, count)
    counted(i, count)
  }
  return (bankId, count = 1) => {
    if (!core.accepting) return
    if (!isCount(count as number)) {
      return typeof count === "object" && count !== null ? withScopes(bankId, count) : badCount(rt, bankId, count)
    }
    let i = index.get(bankId)
    if (i === undefined && (i = bankNumber(rt, bankId)) === -1) return
    counted(i, count as number)
  }
}

export const makeCompileNow = (rt: QueueRuntime): (bankId: string, options?: CompileNowOptions) => void =>
(bankId, options) => {
  if (!rt.core.accepting) return
  const scopes = options?.scopes
  const invalid = scopes === undefined ? undefined : invalidScopes(scopes)
  if (invalid !== undefined) return rt.reject(bankId, invalid)
  const i = bankNumber(rt, bankId)
  if (i === -1) return
  if (scopes !== undefined) noteScopes(rt, i, scopes, 0, 0)
  const answer = rt.core.request(i)
  if (answer !== NOTHING) rt.answered(i, answer)
  else if (rt.core.pending.has(i)) rt.queue.promote(i) // asked for while it waited: it is urgent now
}
