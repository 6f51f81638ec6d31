/**
 * The queue's memory of compiles: the records `recentCompiles` returns (the last finished engine runs) and the
 * compiles running now (`runningCompiles`).
 *
 * @since 0.1.0
 */
import { Option, Schema } from "effect"
import { CompileReason, MemoryWait } from "./CompileEngine.js"

/**
 * How an engine run ended: `success`, `reported_error` (a result with `error` set: it still counts as a compile) or
 * `failure` (a `CompileError`, a timeout or a defect: retried with backoff). The `outcome` tag of
 * `compile_trigger_compiles_total`.
 *
 * @since 0.1.0
 */
export const CompileOutcome = Schema.Literal("success", "reported_error", "failure")

/** @since 0.1.0 */
export type CompileOutcome = typeof CompileOutcome.Type

/**
 * One finished engine run. Encodes to JSON with times as ISO strings and no `error` as `null`.
 *
 * @since 0.1.0
 */
export class CompileRecord extends Schema.Class<CompileRecord>("CompileRecord")({
  bankId: Schema.String,
  reason: CompileReason,
  startedAt: Schema.DateTimeUtc,
  endedAt: Schema.DateTimeUtc,
  outcome: CompileOutcome,
  /** Memories the run was asked to consume (`CompileJob.memories`). */
  memories: Schema.NonNegativeInt,
  /** Forgotten memories the run was asked to consume (`CompileJob.forgets`). */
  forgets: Schema.NonNegativeInt,
  /** `CompileResult.tokensUsed`; 0 for a `failure` (there is no result). */
  tokensUsed: Schema.NonNegativeInt,
  /** The result's `error` (`reported_error`) or the failure's message (`failure`). */
  error: Schema.OptionFromNullOr(Schema.String),
  /** How long the memories the run was asked to consume waited for it (`CompileJob.memoryWait`); `null`: none. */
  memoryWait: Schema.optionalWith(Schema.OptionFromNullOr(MemoryWait), { default: () => Option.none() })
}) {}

/**
 * A compile running now.
 *
 * @since 0.1.0
 */
export class RunningCompile extends Schema.Class<RunningCompile>("RunningCompile")({
  bankId: Schema.String,
  reason: CompileReason,
  startedAt: Schema.DateTimeUtc,
  memories: Schema.NonNegativeInt,
  forgets: Schema.NonNegativeInt,
  /** 1 for the trigger's first engine run, more on retries. */
  attempt: Schema.Int,
  /** How long the memories it consumes waited for it (`CompileJob.memoryWait`); `null`: none. */
  memoryWait: Schema.optionalWith(Schema.OptionFromNullOr(MemoryWait), { default: () => Option.none() })
}) {}

/**
 * Options of `recentCompiles`; all optional.
 *
 * @since 0.1.0
 */
export interface RecentCompilesOptions {
  /** At most this many records (default: all the history holds, up to `historyCapacity`). */
  readonly limit?: number | undefined
  /** Only this bank's compiles. */
  readonly bankId?: string | undefined
  /** Only compiles that ended this way. */
  readonly outcome?: CompileOutcome | undefined
}
