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
import { DROP_WARNED, IDLE, PARKED, PENDING, POLICY, REASON_NAMES, RUNNING, STATUS } from "./bankTable.js"
import type { CompileCore } from "./compileCore.js"
import { select } from "./select.js"

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

/** The nearest rank of percentile `p` (0-1) among `count` values. */
const rank = (p: number, count: number): number => Math.max(0, Math.ceil(p * count) - 1)

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

/** Per core, the ages' buffer, kept between reads (a million banks: 8 MB a scrape otherwise). */
const buffers = new WeakMap<CompileCore, Float64Array>()

const agesBuffer = (core: CompileCore, size: number): Float64Array => {
  let buffer = buffers.get(core)
  if (buffer === undefined || buffer.length < size) buffers.set(core, buffer = new Float64Array(Math.max(1024, Math.ceil(size * 1.25))))
  return buffer
}

/**
 * The ages at `now` and the banks closest to their deadline: one pass over the columns for the banks not running
 * (no lookup but a policy bank's max wait), then the running ones, whose compile took their oldest memories.
 */
const scan = (core: CompileCore, now: number) => {
  const { oldestAt, size, state } = core.table
  const ages = agesBuffer(core, size)
  const closest = new Closest()
  const maxWait = core.maxWaitMillis
  let n = 0
  let overdue = 0
  const note = (i: number, oldest: number, due: number) => {
    ages[n++] = now > oldest ? (now - oldest) / 1000 : 0
    if (due !== due) return
    if (due <= now) overdue++
    closest.offer(i, due)
  }
  for (let i = 0; i < size; i++) {
    const oldest = oldestAt[i]!
    const word = state[i]!
    if (oldest !== oldest || (word & STATUS) === RUNNING) continue
    note(i, oldest, (word & POLICY) !== 0 ? core.deadlineAt(i) : maxWait === 0 ? NaN : oldest + maxWait)
  }
  for (const i of core.running) {
    const oldest = core.table.oldestUncompiledAt(i)
    if (oldest === oldest) note(i, oldest, core.deadlineAt(i))
  }
  return { ages: ages.subarray(0, n), closest, overdue }
}

/** The freshness figures at `now`: the gauges' values. */
export const freshnessFigures = (core: CompileCore, now: number): FreshnessFigures & { readonly banks: Closest } => {
  const { ages, closest, overdue } = scan(core, now)
  const count = ages.length
  if (count === 0) return { banksWaiting: 0, oldestSeconds: 0, p50Seconds: 0, p95Seconds: 0, overdue, banks: closest }
  // Selected in rank order: each call leaves nothing smaller after its rank, so the next may start past it.
  const p50 = rank(0.5, count)
  const p95 = rank(0.95, count)
  const p50Seconds = select(ages, p50, 0, count)
  const p95Seconds = p95 === p50 ? p50Seconds : select(ages, p95, p50 + 1, count)
  const oldestSeconds = p95 === count - 1 ? p95Seconds : select(ages, count - 1, p95 + 1, count)
  return { banksWaiting: count, oldestSeconds, p50Seconds, p95Seconds, overdue, banks: closest }
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
  const forgets = table.forgets(i)
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
