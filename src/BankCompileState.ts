/**
 * A bank's trigger state, and the pure decision of whether it needs a compile.
 *
 * @since 0.1.0
 */
import { DateTime, Option, Schema } from "effect"
import type { CompileTriggerConfig } from "./CompileTriggerConfig.js"

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
  /** Finish time of the last compile that counted. */
  lastCompileAt: OptionalTime,
  /** When the bank's first counted retain arrived; set once, never changed. */
  firstRetainAt: OptionalTime,
  status: Schema.optionalWith(BankStatus, { default: () => "idle" as const }),
  consecutiveFailures: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 0 }),
  lastError: Schema.optionalWith(Schema.OptionFromNullOr(Schema.String), { default: () => Option.none() })
}) {}

/**
 * The trigger rule on plain numbers: the one decision shared by `shouldTrigger`, the retain hot path and the sweep.
 * `isStale` is whether the bank's reference time is at least `stalenessDays` old.
 *
 * @since 0.1.0
 */
export const triggers = (memories: number, isStale: boolean, config: CompileTriggerConfig): boolean =>
  memories >= config.sizeThreshold || (isStale && memories >= config.stalenessMinMemories)

/**
 * Whether a reference time (epoch millis, `NaN` when there is none) is stale at `nowMillis`. Inclusive.
 *
 * @since 0.1.0
 */
export const isStaleAt = (referenceMillis: number, nowMillis: number, stalenessMillis: number): boolean =>
  nowMillis - referenceMillis >= stalenessMillis // false when referenceMillis is NaN

/**
 * The time staleness is measured from: the last compile, or the first retain when the bank never compiled.
 *
 * @since 0.1.0
 */
export const referenceTime = (state: BankCompileState): Option.Option<DateTime.Utc> =>
  Option.orElse(state.lastCompileAt, () => state.firstRetainAt)

/**
 * Pure: does this bank need a compile at `now`? True when `memoriesSinceLastCompile >= sizeThreshold`, or when it has at
 * least `stalenessMinMemories` and its reference time is at least `stalenessDays` old. Comparisons are inclusive.
 *
 * @since 0.1.0
 */
export const shouldTrigger = (state: BankCompileState, config: CompileTriggerConfig, now: DateTime.Utc): boolean => {
  const reference = referenceTime(state)
  const stale = Option.isSome(reference) &&
    isStaleAt(DateTime.toEpochMillis(reference.value), DateTime.toEpochMillis(now), config.stalenessMillis)
  return triggers(state.memoriesSinceLastCompile, stale, config)
}
