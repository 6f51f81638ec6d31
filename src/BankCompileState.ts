/**
 * A bank's trigger state, and the pure decision of whether it needs a compile.
 *
 * @since 0.1.0
 */
import { DateTime, Option, Schema } from "effect"
import { BankPolicy, effectiveConfig } from "./BankPolicy.js"
import type { CompileTriggerConfig } from "./CompileTriggerConfig.js"
import { DirtyScopesState } from "./DirtyScopes.js"

/**
 * `idle`: nothing scheduled. `pending`: waiting in the queue or for a retry. `running`: its compile runs now.
 *
 * @since 0.1.0
 */
export const BankStatus = Schema.Literal("idle", "pending", "running")

/** @since 0.1.0 */
export type BankStatus = typeof BankStatus.Type

const OptionalTime = Schema.optionalWith(Schema.OptionFromNullOr(Schema.DateTimeUtc), {
  default: () => Option.none()
})

/**
 * An immutable snapshot of one bank. Encodes to JSON (times as ISO strings, absent values as `null`).
 *
 * @since 0.1.0
 */
export class BankCompileState extends Schema.Class<BankCompileState>("BankCompileState")({
  bankId: Schema.String,
  memoriesSinceLastCompile: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 0 }),
  /** Memories forgotten since the last compile. */
  forgetsSinceLastCompile: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 0 }),
  /** Finish time of the last compile that counted. */
  lastCompileAt: OptionalTime,
  /** When the bank's first counted retain arrived; set once, never changed. */
  firstRetainAt: OptionalTime,
  status: Schema.optionalWith(BankStatus, { default: () => "idle" as const }),
  consecutiveFailures: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 0 }),
  lastError: Schema.optionalWith(Schema.OptionFromNullOr(Schema.String), { default: () => Option.none() }),
  /** The bank's own settings (`setPolicy`); `null` in JSON when it has none. */
  policy: Schema.optionalWith(Schema.OptionFromNullOr(BankPolicy), { default: () => Option.none() }),
  /** When the oldest memory no compile has consumed yet arrived (a running compile's memories included). */
  oldestMemoryAt: OptionalTime,
  /**
   * When that memory's `maxWaitSeconds` runs out: the bank is queued for reason `deadline` then. In the past, the
   * bank is late by the difference (waiting for a worker, the budget or room in the queue). None while the rule is
   * off or no memory waits.
   */
  deadlineAt: OptionalTime,
  /** The scopes writes named since a compile consumed them (absent: none named). */
  dirtyScopes: Schema.optional(DirtyScopesState)
}) {}

/**
 * Why the rule says a bank needs a compile, the first that holds in this order: `size`, `staleness`, `deadline` (the
 * oldest uncompiled memory is `maxWaitSeconds` old), `forget`.
 *
 * @since 0.1.0
 */
export type TriggerReason = "size" | "staleness" | "deadline" | "forget"

/**
 * The trigger rule on plain numbers: the one decision shared by `shouldTrigger`, the retain and forget paths and the
 * sweep. `isStale` is whether the bank's reference time is at least `stalenessDays` old; `isOverdue` whether its
 * oldest uncompiled memory is at least `maxWaitSeconds` old (false while that rule is off). Nothing triggers while
 * `config.enabled` is false. `forgets` defaults to 0, which leaves only the size and staleness rules (the ones that
 * queue at once).
 *
 * @since 0.1.0
 */
export const triggers = (
  memories: number,
  isStale: boolean,
  config: CompileTriggerConfig,
  forgets = 0,
  isOverdue = false
): boolean =>
  config.enabled &&
  (memories >= config.sizeThreshold || (isStale && memories >= config.stalenessMinMemories) || isOverdue ||
    forgets >= config.forgetThreshold)

/**
 * `triggers` with its reason: `"size"`, else `"staleness"`, else `"deadline"`, else `"forget"`; `undefined` when the
 * bank needs no compile.
 *
 * @since 0.1.0
 */
export const triggerReason = (
  memories: number,
  isStale: boolean,
  config: CompileTriggerConfig,
  forgets = 0,
  isOverdue = false
): TriggerReason | undefined =>
  !config.enabled ?
    undefined :
    memories >= config.sizeThreshold ?
    "size" :
    isStale && memories >= config.stalenessMinMemories ?
    "staleness" :
    isOverdue ?
    "deadline" :
    forgets >= config.forgetThreshold ?
    "forget" :
    undefined

/**
 * Whether a reference time (epoch millis, `NaN` when there is none) is stale at `nowMillis`. Inclusive.
 *
 * @since 0.1.0
 */
export const isStaleAt = (referenceMillis: number, nowMillis: number, stalenessMillis: number): boolean =>
  // As a sum, the way the staleness timeline files it (see `isOverdueAt`). False when referenceMillis is NaN.
  referenceMillis + stalenessMillis <= nowMillis

/**
 * Whether a bank whose oldest uncompiled memory arrived at `oldestMillis` (`NaN`: none) is due under `maxWaitMillis`
 * (0: the rule is off) at `nowMillis`. Inclusive.
 *
 * @since 0.1.0
 */
export const isOverdueAt = (oldestMillis: number, nowMillis: number, maxWaitMillis: number): boolean =>
  // The deadline as a sum, exactly as the deadline timeline computes it: `now - oldest >= maxWait` disagreed with it
  // in the last bit for fractional waits (the sum rounds at epoch magnitudes), and an entry found due but "not
  // overdue" was pushed again at the same time, for ever. False when oldestMillis is NaN.
  maxWaitMillis > 0 && oldestMillis + maxWaitMillis <= nowMillis

/**
 * The time staleness is measured from: the last compile, or the first retain when the bank never compiled.
 *
 * @since 0.1.0
 */
export const referenceTime = (state: BankCompileState): Option.Option<DateTime.Utc> =>
  Option.orElse(state.lastCompileAt, () => state.firstRetainAt)

/**
 * Whether the bank's reference time is at least its effective `stalenessDays` old at `now`. Inclusive.
 */
const isStale = (state: BankCompileState, config: CompileTriggerConfig, now: DateTime.Utc): boolean => {
  const reference = referenceTime(state)
  return Option.isSome(reference) &&
    isStaleAt(DateTime.toEpochMillis(reference.value), DateTime.toEpochMillis(now), config.stalenessMillis)
}

/**
 * Pure: does this bank need a compile at `now`? With the bank's effective config `c` (its policy over `config`): when
 * `c.enabled` and `memoriesSinceLastCompile >= c.sizeThreshold`, or it has at least `c.stalenessMinMemories` and its
 * reference time is at least `c.stalenessDays` old, or its oldest uncompiled memory (`oldestMemoryAt`) is at least
 * `c.maxWaitSeconds` old (when that is not 0), or `forgetsSinceLastCompile >= c.forgetThreshold`. Comparisons are
 * inclusive.
 *
 * @since 0.1.0
 */
export const shouldTrigger = (state: BankCompileState, config: CompileTriggerConfig, now: DateTime.Utc): boolean =>
  compileReason(state, config, now) !== undefined

/**
 * `shouldTrigger` with its reason (`"size"`, else `"staleness"`, else `"deadline"`, else `"forget"`); `undefined` when
 * it is false.
 *
 * @since 0.1.0
 */
export const compileReason = (
  state: BankCompileState,
  config: CompileTriggerConfig,
  now: DateTime.Utc
): TriggerReason | undefined => {
  const effective = effectiveConfig(config, state.policy)
  const oldest = Option.match(state.oldestMemoryAt, { onNone: () => NaN, onSome: DateTime.toEpochMillis })
  return triggerReason(
    state.memoriesSinceLastCompile,
    isStale(state, effective, now),
    effective,
    state.forgetsSinceLastCompile,
    isOverdueAt(oldest, DateTime.toEpochMillis(now), effective.maxWaitMillis)
  )
}
