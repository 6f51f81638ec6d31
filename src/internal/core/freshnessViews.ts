/**
 * Read views about freshness, built on demand from the bank table (never on the retain path): the ages of the
 * oldest uncompiled memories across banks now (`QueueFreshness`), and one bank's next compile (`NextCompile`) — which
 * rule fires when, or what holds it.
 *
 * @internal
 */
import { DateTime } from "effect"
import type { CompileReason } from "../../CompileEngine.js"
import { BankDeadline, NextCompile, type NextCompileState, QueueFreshness, QueueLanes, RuleForecast } from "../../Freshness.js"
import { STATUS_NAMES } from "./answers.js"
import { DROP_WARNED, IDLE, PARKED, PENDING, REASON_NAMES, RUNNING, STATUS } from "./bankTable.js"
import type { CompileCore } from "./compileCore.js"

/** How many banks `closestToDeadline` lists. */
export const CLOSEST = 10

/** The figures alone (the gauges take these; `QueueFreshness` adds the banks and lanes). */
export interface FreshnessFigures {
  readonly banksWaiting: number
  readonly oldestSeconds: number
  readonly p50Seconds: number
  readonly p95Seconds: number
  readonly overdue: number
}

/** Nearest-rank percentile `p` (0-1) of sorted `values`; 0 when there are none. */
const percentile = (sorted: Float64Array, p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!

/** Keeps the `CLOSEST` earliest deadlines seen, in order (an insertion into a short array). */
class Closest {
  readonly banks: Array<number> = []
  readonly dues: Array<number> = []

  offer(i: number, due: number): void {
    const dues = this.dues
    if (dues.length === CLOSEST && due >= dues[CLOSEST - 1]!) return
    let at = dues.length
    while (at > 0 && dues[at - 1]! > due) at--
    dues.splice(at, 0, due)
    this.banks.splice(at, 0, i)
    if (dues.length > CLOSEST) {
      dues.pop()
      this.banks.pop()
    }
  }
}

/** The ages at `now` and the banks closest to their deadline, in one pass over the table. */
const scan = (core: CompileCore, now: number) => {
  const table = core.table
  const ages = new Float64Array(table.size)
  const closest = new Closest()
  let n = 0
  let overdue = 0
  for (let i = 0; i < table.size; i++) {
    const oldest = table.oldestUncompiledAt(i)
    if (oldest !== oldest) continue
    ages[n++] = Math.max(0, now - oldest) / 1000
    const due = core.deadlineAt(i)
    if (due !== due) continue
    if (due <= now) overdue++
    closest.offer(i, due)
  }
  return { ages: ages.subarray(0, n).sort(), closest, overdue }
}

/** The freshness figures at `now`: the gauges' values. */
export const freshnessFigures = (core: CompileCore, now: number): FreshnessFigures & { readonly banks: Closest } => {
  const { ages, closest, overdue } = scan(core, now)
  return {
    banksWaiting: ages.length,
    oldestSeconds: ages.length === 0 ? 0 : ages[ages.length - 1]!,
    p50Seconds: percentile(ages, 0.5),
    p95Seconds: percentile(ages, 0.95),
    overdue,
    banks: closest
  }
}

/** `CompileQueue.freshness` at `now`, with the queue's lanes. */
export const freshness = (
  core: CompileCore,
  now: number,
  lanes: { readonly urgent: number; readonly deadline: number; readonly ordinary: number }
): QueueFreshness => {
  const { banks, ...figures } = freshnessFigures(core, now)
  const table = core.table
  const closestToDeadline = banks.banks.map((i, n) =>
    new BankDeadline({
      bankId: table.ids[i]!,
      status: STATUS_NAMES[table.state[i]! & STATUS]!,
      oldestMemoryAt: DateTime.unsafeMake(table.oldestUncompiledAt(i)),
      deadlineAt: DateTime.unsafeMake(banks.dues[n]!),
      secondsLeft: (banks.dues[n]! - now) / 1000
    }, true)
  )
  return new QueueFreshness({ ...figures, closestToDeadline, lanes: new QueueLanes(lanes, true) }, true)
}

// ---- one bank's next compile ----

const time = (millis: number) => millis === millis ? DateTime.unsafeMake(millis) : null

const rule = (name: RuleForecast["rule"], at: number, moreNeeded: number | null) =>
  new RuleForecast({ rule: name, at: time(at), moreNeeded }, true)

/** Each rule of idle bank `i`'s effective config and when it would fire, from `now`. */
export const forecasts = (core: CompileCore, i: number, now: number): Array<RuleForecast> => {
  const table = core.table
  const config = core.configOf(i)
  const memories = table.memories[i]!
  const forgets = table.forgets[i]!
  const rules = [rule("size", NaN, Math.max(0, config.sizeThreshold - memories))]
  const reference = table.referenceTime(i)
  if (config.stalenessMillis < Infinity) {
    rules.push(rule("staleness", reference + config.stalenessMillis, Math.max(0, config.stalenessMinMemories - memories)))
  }
  const deadline = core.deadlineAt(i)
  if (deadline === deadline) rules.push(rule("deadline", deadline, null))
  const forgetDue = core.forgetDueAt(i)
  rules.push(
    forgets >= config.forgetThreshold
      ? rule("forget", forgetDue ?? now, 0)
      : rule("forget", NaN, config.forgetThreshold - forgets)
  )
  return rules
}

/** The rule expected to fire first: the earliest one that needs only time, else the one needing fewest memories. */
const firstToFire = (rules: ReadonlyArray<RuleForecast>): RuleForecast | null => {
  let first: RuleForecast | null = null
  for (const r of rules) {
    if (r.at === null || (r.moreNeeded ?? 0) > 0) continue
    if (first === null || DateTime.lessThan(r.at, first.at!)) first = r
  }
  if (first !== null) return first
  for (const r of rules) {
    if (r.rule === "forget" || r.moreNeeded === null) continue
    if (first === null || r.moreNeeded < first.moreNeeded!) first = r
  }
  return first
}

const iso = (t: DateTime.Utc | null) => t === null ? "?" : DateTime.formatIso(t)

/** "3 more memories", "1 more forget". */
const more = (n: number | null, rule: RuleForecast["rule"]): string =>
  `${n} more ${rule === "forget" ? (n === 1 ? "forget" : "forgets") : n === 1 ? "memory" : "memories"}`

const describeRule = (r: RuleForecast): string =>
  r.at !== null && (r.moreNeeded ?? 0) === 0 ? `${r.rule} at ${iso(r.at)}` : `${r.rule} after ${more(r.moreNeeded, r.rule)}`

interface Held {
  readonly state: NextCompileState
  readonly place?: number | undefined
  readonly until?: number | undefined
  readonly message: string
}

/** What holds pending bank `i` (`placeOf`: its place in the bank queue, 0 when not there). */
const pendingHold = (core: CompileCore, i: number, now: number, placeOf: (i: number) => number): Held => {
  const buckets = core.budget
  if (buckets.deferred.has(i)) {
    const due = buckets.bankOpensAt(i, core.bankCapacity(i), now)
    return { state: "deferred", until: due, message: `deferred: its own token budget is spent until ${iso(time(due))}` }
  }
  const held = core.gate.held.indexOf(i)
  const place = held !== -1 ? held + 1 : placeOf(i) + (placeOf(i) > 0 ? core.gate.held.length : 0)
  if (place > 0 && core.gate.closedAt(now)) {
    const opens = buckets.opensAt(now)
    return { state: "waiting_for_budget", place, until: opens, message: `waiting for the global budget until ${iso(time(opens))}` }
  }
  if (place > 0) return { state: "queued", place, message: place === 1 ? "queued: starts next" : `queued: ${place - 1} start before it` }
  const room = core.room.waiting.indexOf(i)
  if (room !== -1) return { state: "waiting_for_room", place: room + 1, message: `waiting for room in the full queue (${room} before it)` }
  const attempt = core.table.attempts.get(i)
  return attempt === undefined
    ? { state: "queued", place: 1, message: "handed to a worker: starts now" }
    : { state: "retrying", message: `attempt ${attempt} failed: retried after its delay` }
}

/** What holds idle bank `i` from compiling, if anything. */
const idleHold = (core: CompileCore, i: number): Held | undefined => {
  const state = core.table.state[i]!
  if ((state & PARKED) !== 0) return { state: "parked", message: "retries spent: the next sweep or compileNow tries again" }
  if (!core.configOf(i).enabled) return { state: "disabled", message: "disabled: only compileNow compiles it" }
  if ((state & DROP_WARNED) !== 0) return { state: "queue_full", message: "due, but the queue was full: the next sweep offers it again" }
  return undefined
}

/** "next: deadline at …, or after 12 more memories (size)". */
const scheduledMessage = (rules: ReadonlyArray<RuleForecast>, next: RuleForecast | null): string => {
  if (next === null) return "no rule can fire"
  const size = rules[0]!
  const orSize = next !== size && (size.moreNeeded ?? 0) > 0 ? `, or ${describeRule(size)}` : ""
  return `next: ${describeRule(next)}${orSize}`
}

/** Bank `i`'s next compile at `now`; `placeOf` says where a bank stands in the bank queue (0: not there). */
export const nextCompile = (core: CompileCore, i: number, now: number, placeOf: (i: number) => number): NextCompile => {
  const table = core.table
  const status = table.state[i]! & STATUS
  const code = table.reasons.get(i)
  const reason = code === undefined || status === IDLE ? null : REASON_NAMES[code]! as CompileReason
  const rules = status === IDLE ? forecasts(core, i, now) : []
  const next = firstToFire(rules)
  const held: Held = status === RUNNING
    ? { state: "running", message: `compiling now (${reason})` }
    : status === PENDING
    ? pendingHold(core, i, now, placeOf)
    : idleHold(core, i) ?? { state: "scheduled", message: scheduledMessage(rules, next) }
  return new NextCompile({
    state: held.state,
    reason,
    place: held.place ?? null,
    until: held.until === undefined ? null : time(held.until),
    next,
    rules,
    message: held.message
  }, true)
}
