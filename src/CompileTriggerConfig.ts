/**
 * Thresholds that decide when a bank needs a compile.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { mustBe } from "./internal/core/inputRules.js"

/** Milliseconds in one day: staleness is configured in days, measured in milliseconds. */
export const MILLIS_PER_DAY = 86_400_000

/**
 * Largest `stalenessDays`: 10 years. Longer is no staleness rule at all (set `stalenessMinMemories` or `enabled`
 * instead), and the bound keeps every deadline computed from it a valid date.
 *
 * @since 0.1.0
 */
export const MAX_STALENESS_DAYS = 3650

/**
 * Largest `forgetDelaySeconds`: 10 years (315,360,000 s), for the same reason.
 *
 * @since 0.1.0
 */
export const MAX_FORGET_DELAY_SECONDS = 315_360_000

/**
 * Largest `maxWaitSeconds`: 10 years (315,360,000 s), for the same reason.
 *
 * @since 0.1.0
 */
export const MAX_WAIT_SECONDS = 315_360_000

/**
 * The seven settings, unset: one definition of each field's validation, shared by `CompileTriggerConfig` (which fills
 * in the defaults) and `BankPolicy` (where every field is optional). Each names itself and the value it got when it
 * refuses one (`sizeThreshold must be a non-negative integer, got -1`).
 *
 * @since 0.1.0
 */
export const triggerFields = {
  /** Whether the rule (and the sweep) may queue a bank at all; `compileNow` compiles regardless. */
  enabled: Schema.Boolean.annotations({ message: mustBe("enabled", "true or false") }),
  /** Compile once this many memories arrived since the last compile. */
  sizeThreshold: Schema.NonNegativeInt.annotations({ message: mustBe("sizeThreshold", "a non-negative integer") }),
  /** A bank whose last compile (or first retain, if it never compiled) is this old is stale. */
  stalenessDays: Schema.Number.pipe(Schema.between(0, MAX_STALENESS_DAYS)).annotations({
    message: mustBe("stalenessDays", `a number of days from 0 to ${MAX_STALENESS_DAYS} (10 years)`)
  }),
  /** A stale bank compiles only once it has at least this many new memories. */
  stalenessMinMemories: Schema.NonNegativeInt.annotations({
    message: mustBe("stalenessMinMemories", "a non-negative integer")
  }),
  /** Compile once this many memories were forgotten since the last compile. */
  forgetThreshold: Schema.Int.pipe(Schema.greaterThanOrEqualTo(1)).annotations({
    message: mustBe("forgetThreshold", "an integer of at least 1")
  }),
  /** A forget-triggered compile is queued this long after the forget that reached the threshold. */
  forgetDelaySeconds: Schema.Number.pipe(Schema.between(0, MAX_FORGET_DELAY_SECONDS)).annotations({
    message: mustBe("forgetDelaySeconds", `a number of seconds from 0 to ${MAX_FORGET_DELAY_SECONDS} (10 years)`)
  }),
  /**
   * Compile once the bank's oldest uncompiled memory is this old, whatever the count (reason `deadline`); 0 turns the
   * rule off (the default). A memory then waits at most this long plus the time a free worker and the budget take.
   */
  maxWaitSeconds: Schema.Number.pipe(Schema.between(0, MAX_WAIT_SECONDS)).annotations({
    message: mustBe("maxWaitSeconds", `a number of seconds from 0 (off) to ${MAX_WAIT_SECONDS} (10 years)`)
  })
} as const

/**
 * `new CompileTriggerConfig({})` gives the defaults; an invalid value throws a `ParseError` naming the field.
 *
 * @since 0.1.0
 */
export class CompileTriggerConfig extends Schema.Class<CompileTriggerConfig>("CompileTriggerConfig")({
  enabled: Schema.optionalWith(triggerFields.enabled, { default: () => true }),
  sizeThreshold: Schema.optionalWith(triggerFields.sizeThreshold, { default: () => 50 }),
  stalenessDays: Schema.optionalWith(triggerFields.stalenessDays, { default: () => 7 }),
  stalenessMinMemories: Schema.optionalWith(triggerFields.stalenessMinMemories, { default: () => 10 }),
  forgetThreshold: Schema.optionalWith(triggerFields.forgetThreshold, { default: () => 1 }),
  forgetDelaySeconds: Schema.optionalWith(triggerFields.forgetDelaySeconds, { default: () => 0 }),
  maxWaitSeconds: Schema.optionalWith(triggerFields.maxWaitSeconds, { default: () => 0 }),
  /** Past this many distinct dirty scopes a bank is marked "all scopes" (the queue's alone: not a policy field). */
  maxScopesPerBank: Schema.optionalWith(
    Schema.Int.pipe(Schema.between(1, 100_000)).annotations({
      message: mustBe("maxScopesPerBank", "an integer from 1 to 100000")
    }),
    { default: () => 64 }
  )
}) {
  /** `stalenessDays` in milliseconds, the unit every clock comparison uses. */
  get stalenessMillis(): number {
    return this.stalenessDays * MILLIS_PER_DAY
  }

  /** `forgetDelaySeconds` in milliseconds. */
  get forgetDelayMillis(): number {
    return this.forgetDelaySeconds * 1000
  }

  /** `maxWaitSeconds` in milliseconds; 0 when the rule is off. */
  get maxWaitMillis(): number {
    return this.maxWaitSeconds * 1000
  }
}

/**
 * What `CompileQueueOptions.config` accepts: a config, or the fields to build one from.
 *
 * @since 0.1.0
 */
export type CompileTriggerConfigInput = CompileTriggerConfig | ConstructorParameters<typeof CompileTriggerConfig>[0]
