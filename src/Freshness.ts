/**
 * How fresh the queue's banks are right now, and when one bank compiles next: the ages of the oldest uncompiled
 * memories across banks with the banks closest to (or past) their deadline (`CompileQueue.freshness`, part of
 * `GET /v1/queue`), and a bank's next compile — which rule fires when, or what holds it (`CompileQueue.nextCompile`,
 * part of `GET /v1/banks/{bankId}`).
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { BankStatus } from "./BankCompileState.js"
import { CompileReason } from "./CompileEngine.js"

/**
 * A bank with a freshness deadline (`maxWaitSeconds`): when its oldest uncompiled memory arrived, when that memory's
 * wait runs out, and the seconds left (negative: late by that much).
 *
 * @since 0.1.0
 */
export class BankDeadline extends Schema.Class<BankDeadline>("BankDeadline")({
  bankId: Schema.String,
  status: BankStatus,
  oldestMemoryAt: Schema.DateTimeUtc,
  deadlineAt: Schema.DateTimeUtc,
  secondsLeft: Schema.Number
}) {}

/**
 * Banks waiting in each lane of the queue: urgent (forget, manual), deadline, ordinary (size, staleness, restored).
 *
 * @since 0.1.0
 */
export class QueueLanes extends Schema.Class<QueueLanes>("QueueLanes")({
  urgent: Schema.NonNegativeInt,
  deadline: Schema.NonNegativeInt,
  ordinary: Schema.NonNegativeInt
}) {}

/**
 * The age, now, of each bank's oldest uncompiled memory, over the banks that have one: the largest and the
 * 50th / 95th percentiles (0 when no bank has one), how many banks are past their deadline, and the banks closest to
 * or past it, the earliest deadline first (at most 10).
 *
 * @since 0.1.0
 */
export class QueueFreshness extends Schema.Class<QueueFreshness>("QueueFreshness")({
  banksWaiting: Schema.NonNegativeInt,
  oldestSeconds: Schema.Number,
  p50Seconds: Schema.Number,
  p95Seconds: Schema.Number,
  overdue: Schema.NonNegativeInt,
  closestToDeadline: Schema.Array(BankDeadline),
  lanes: QueueLanes
}) {}

/**
 * One rule of a bank's trigger and when it would fire: `at` for a rule that fires with time (staleness, deadline, a
 * forget delay), `moreNeeded` for one that needs more memories (size, staleness's minimum) or forgets (forget).
 *
 * @since 0.1.0
 */
export class RuleForecast extends Schema.Class<RuleForecast>("RuleForecast")({
  rule: Schema.Literal("size", "staleness", "deadline", "forget"),
  at: Schema.NullOr(Schema.DateTimeUtc),
  moreNeeded: Schema.NullOr(Schema.NonNegativeInt)
}) {}

/**
 * Where a bank's next compile stands.
 * - `running`: a compile runs now (`reason` says why).
 * - `queued`: waiting for a worker, `place` in the taking order (1: next).
 * - `waiting_for_budget`: the global budget is spent; `until` it opens.
 * - `deferred`: its own token budget is spent; queued again `until`.
 * - `retrying`: a failed compile waits for its retry delay.
 * - `waiting_for_room`: pending, waiting for a slot in the full queue.
 * - `queue_full`: due, but the full queue refused it; the next sweep offers it again.
 * - `parked`: retries spent; the next sweep (or `compileNow`) tries again.
 * - `disabled`: `enabled` is false: only `compileNow` compiles it.
 * - `scheduled`: idle; `next` is the first rule expected to fire, `rules` all of them.
 *
 * @since 0.1.0
 */
export const NextCompileState = Schema.Literal(
  "running",
  "queued",
  "waiting_for_budget",
  "deferred",
  "retrying",
  "waiting_for_room",
  "queue_full",
  "parked",
  "disabled",
  "scheduled"
)

/** @since 0.1.0 */
export type NextCompileState = typeof NextCompileState.Type

/**
 * When a bank compiles next and why (see `NextCompileState`), with a sentence saying the same.
 *
 * @since 0.1.0
 */
export class NextCompile extends Schema.Class<NextCompile>("NextCompile")({
  state: NextCompileState,
  reason: Schema.NullOr(CompileReason),
  place: Schema.NullOr(Schema.Int),
  until: Schema.NullOr(Schema.DateTimeUtc),
  next: Schema.NullOr(RuleForecast),
  rules: Schema.Array(RuleForecast),
  message: Schema.String
}) {}
