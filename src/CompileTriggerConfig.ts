/**
 * Thresholds that decide when a bank needs a compile.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/** Milliseconds in one day: staleness is configured in days, measured in milliseconds. */
export const MILLIS_PER_DAY = 86_400_000

/**
 * `new CompileTriggerConfig({})` gives the defaults; an invalid value throws a `ParseError` naming the field.
 *
 * @since 0.1.0
 */
export class CompileTriggerConfig extends Schema.Class<CompileTriggerConfig>("CompileTriggerConfig")({
  /** Compile once this many memories arrived since the last compile. */
  sizeThreshold: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 50 }),
  /** A bank whose last compile (or first retain, if it never compiled) is this old is stale. */
  stalenessDays: Schema.optionalWith(Schema.NonNegative.pipe(Schema.finite()), { default: () => 7 }),
  /** A stale bank compiles only once it has at least this many new memories. */
  stalenessMinMemories: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 10 })
}) {
  /** `stalenessDays` in milliseconds, the unit every clock comparison uses. */
  get stalenessMillis(): number {
    return this.stalenessDays * MILLIS_PER_DAY
  }
}

/**
 * What `CompileQueueOptions.config` accepts: a config, or the fields to build one from.
 *
 * @since 0.1.0
 */
export type CompileTriggerConfigInput = CompileTriggerConfig | ConstructorParameters<typeof CompileTriggerConfig>[0]
