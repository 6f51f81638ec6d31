/**
 * Options of `CompileQueue.make` / `CompileQueue.layer`, and their validation.
 *
 * @since 0.1.0
 */
import { Duration, Either, Option, ParseResult, Schema } from "effect"
import { CompileTriggerConfig, type CompileTriggerConfigInput } from "./CompileTriggerConfig.js"

/**
 * All optional. Durations take any `DurationInput` (`"30 seconds"`, `Duration.minutes(5)`, millis as a number).
 *
 * @since 0.1.0
 */
export interface CompileQueueOptions {
  /** Trigger thresholds (default `new CompileTriggerConfig({})`); a plain object is validated into one. */
  readonly config?: CompileTriggerConfigInput | undefined
  /** Banks that may wait in the queue at once (default 100). 0 or less: unbounded. */
  readonly maxQueueSize?: number | undefined
  /** Compiles of distinct banks that may run at once (default 1). */
  readonly concurrency?: number | undefined
  /** How often idle banks are checked for staleness and dropped banks re-offered (default 1 hour). */
  readonly sweepInterval?: Duration.DurationInput | undefined
  /** An engine run longer than this is interrupted and counts as a failure (default: no limit). */
  readonly compileTimeout?: Duration.DurationInput | undefined
  readonly retry?: {
    /** Engine runs per trigger, the first included (default 3; 1 = no retry). */
    readonly maxAttempts?: number | undefined
    /** Delay before the 2nd attempt; doubled for each later one, times a random factor in [0.5, 1.5] (default 1 second). */
    readonly baseDelay?: Duration.DurationInput | undefined
  } | undefined
  /** How long closing the scope lets in-flight and queued compiles finish before interrupting them (default 30 seconds). */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
  /** With a `BankStateStore`: how often changed banks are written behind (default 1 second). */
  readonly flushInterval?: Duration.DurationInput | undefined
  /** Finished engine runs `recentCompiles` keeps, the oldest dropped first (default 1,000; 0 keeps none). */
  readonly historyCapacity?: number | undefined
}

/**
 * An option given to `CompileQueue.make` / `layer` is invalid. Raised as a defect at construction.
 *
 * @since 0.1.0
 */
export class CompileQueueOptionsError extends Schema.TaggedError<CompileQueueOptionsError>()(
  "CompileQueueOptionsError",
  { option: Schema.String, message: Schema.String }
) {}

/**
 * Options with every default applied and every value checked.
 *
 * @since 0.1.0
 */
export interface ResolvedCompileQueueOptions {
  readonly config: CompileTriggerConfig
  /** `Infinity` when unbounded. */
  readonly maxQueueSize: number
  readonly concurrency: number
  readonly sweepInterval: Duration.Duration
  readonly compileTimeout: Option.Option<Duration.Duration>
  readonly maxAttempts: number
  readonly baseDelay: Duration.Duration
  readonly shutdownTimeout: Duration.Duration
  readonly flushInterval: Duration.Duration
  readonly historyCapacity: number
}

const invalid = (option: string, message: string) => Either.left(new CompileQueueOptionsError({ option, message }))

const duration = (
  option: string,
  input: Duration.DurationInput | undefined,
  fallback: Duration.DurationInput,
  allowZero: boolean
): Either.Either<Duration.Duration, CompileQueueOptionsError> => {
  if (input === undefined) return Either.right(Duration.decode(fallback))
  // Duration.decode silently turns negative numbers into zero: reject them before it sees them.
  const negative = (typeof input === "number" && !(input >= 0)) || (typeof input === "string" && /^\s*-/.test(input)) ||
    (typeof input === "bigint" && input < 0n)
  const decoded = negative ? Option.none() : Duration.decodeUnknown(input)
  if (Option.isNone(decoded)) return invalid(option, `${option} must be a non-negative duration, got ${String(input)}`)
  if (!allowZero && Duration.isZero(decoded.value)) return invalid(option, `${option} must be greater than zero`)
  return Either.right(decoded.value)
}

const integer = (
  option: string,
  input: number | undefined,
  fallback: number,
  min: number
): Either.Either<number, CompileQueueOptionsError> => {
  if (input === undefined) return Either.right(fallback)
  if (!Number.isSafeInteger(input) || input < min) {
    return invalid(option, `${option} must be an integer >= ${min}, got ${String(input)}`)
  }
  return Either.right(input)
}

const triggerConfig = (
  input: CompileTriggerConfigInput | undefined
): Either.Either<CompileTriggerConfig, CompileQueueOptionsError> => {
  if (input === undefined) return Either.right(new CompileTriggerConfig({}))
  if (input instanceof CompileTriggerConfig) return Either.right(input)
  return Schema.decodeUnknownEither(CompileTriggerConfig)(input, { onExcessProperty: "error" }).pipe(
    Either.mapLeft((error) =>
      new CompileQueueOptionsError({
        option: "config",
        message: `config is invalid: ${ParseResult.TreeFormatter.formatErrorSync(error)}`
      })
    )
  )
}

/**
 * Applies defaults and checks every option; the error names the first invalid one.
 *
 * @since 0.1.0
 */
export const resolve = (
  options: CompileQueueOptions = {}
): Either.Either<ResolvedCompileQueueOptions, CompileQueueOptionsError> =>
  Either.gen(function*() {
    const config = yield* triggerConfig(options.config)
    if (options.maxQueueSize !== undefined && !Number.isSafeInteger(options.maxQueueSize)) {
      return yield* invalid("maxQueueSize", `maxQueueSize must be an integer, got ${String(options.maxQueueSize)}`)
    }
    const maxQueueSize = options.maxQueueSize ?? 100
    const concurrency = yield* integer("concurrency", options.concurrency, 1, 1)
    const sweepInterval = yield* duration("sweepInterval", options.sweepInterval, "1 hour", false)
    const compileTimeout = options.compileTimeout === undefined
      ? Option.none()
      : Option.some(yield* duration("compileTimeout", options.compileTimeout, 0, false))
    const maxAttempts = yield* integer("retry.maxAttempts", options.retry?.maxAttempts, 3, 1)
    const baseDelay = yield* duration("retry.baseDelay", options.retry?.baseDelay, "1 second", true)
    const shutdownTimeout = yield* duration("shutdownTimeout", options.shutdownTimeout, "30 seconds", true)
    const flushInterval = yield* duration("flushInterval", options.flushInterval, "1 second", false)
    const historyCapacity = yield* integer("historyCapacity", options.historyCapacity, 1000, 0)
    return {
      config,
      maxQueueSize: maxQueueSize <= 0 ? Infinity : maxQueueSize,
      concurrency,
      sweepInterval,
      compileTimeout,
      maxAttempts,
      baseDelay,
      shutdownTimeout,
      flushInterval,
      historyCapacity
    }
  })
