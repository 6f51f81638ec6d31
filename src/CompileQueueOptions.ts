/**
 * Options of `CompileQueue.make` / `CompileQueue.layer`, and their validation.
 *
 * @since 0.1.0
 */
import { Duration, Either, Option, ParseResult, Schema } from "effect"
import { DEFAULT_MAX_BANKS, HARD_MAX_BANKS } from "./BankLimit.js"
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
  /**
   * How long closing the scope lets in-flight and queued compiles finish before interrupting them (default 30
   * seconds). Queued banks a spent cost budget will not let start before then are not waited for.
   */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
  /** With a `BankStateStore`: how often changed banks are written behind (default 1 second). */
  readonly flushInterval?: Duration.DurationInput | undefined
  /** Finished engine runs `recentCompiles` keeps, the oldest dropped first (default 1,000; 0 keeps none). */
  readonly historyCapacity?: number | undefined
  /**
   * The most banks the queue holds (default 1,000,000; at most `HARD_MAX_BANKS`, 16,777,216). A retain, forget,
   * compileNow or policy naming a new bank past it is refused whole, nothing added or counted (`BankLimitError`,
   * or a warning for the methods that never fail); banks the queue knows are never refused. Banks a store restores
   * are all loaded, past it too. See docs/library.md, "How many banks".
   */
  readonly maxBanks?: number | undefined
  /**
   * Cost budgets, as token buckets refilled continuously over `period` (default 1 hour). Every limit is optional, a
   * positive integer; absent = unlimited. See docs/library.md, "Cost budgets".
   */
  readonly budget?: CompileBudgetOptions | undefined
}

/**
 * @since 0.1.0
 */
export interface CompileBudgetOptions {
  /** LLM tokens all compiles may use per period; a compile starts only while more than 0 are left. */
  readonly tokens?: number | undefined
  /** Engine runs per period (each takes 1 when it starts). */
  readonly compiles?: number | undefined
  /** Tokens each bank may use per period (a `BankPolicy` may set its own `bankTokens`). */
  readonly bankTokens?: number | undefined
  /** The period over which each bucket refills completely (default 1 hour). */
  readonly period?: Duration.DurationInput | undefined
}

/**
 * The budget with its default applied; `Infinity` where unlimited.
 *
 * @since 0.1.0
 */
export interface ResolvedCompileBudget {
  readonly tokens: number
  readonly compiles: number
  readonly bankTokens: number
  readonly period: Duration.Duration
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
  readonly maxBanks: number
  readonly budget: ResolvedCompileBudget
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

const limit = (option: string, input: unknown): Either.Either<number, CompileQueueOptionsError> => {
  if (input === undefined) return Either.right(Infinity)
  if (typeof input !== "number" || !Number.isSafeInteger(input) || input < 1) {
    return invalid(option, `${option} must be a positive integer, got ${String(input)}`)
  }
  return Either.right(input)
}

const budget = (input: CompileBudgetOptions | undefined): Either.Either<ResolvedCompileBudget, CompileQueueOptionsError> =>
  Either.gen(function*() {
    if (input === undefined) {
      return { tokens: Infinity, compiles: Infinity, bankTokens: Infinity, period: Duration.hours(1) }
    }
    if (typeof input !== "object" || input === null) {
      return yield* invalid("budget", `budget must be an object, got ${String(input)}`)
    }
    const known = new Set(["tokens", "compiles", "bankTokens", "period"])
    const unknown = Object.keys(input).find((key) => !known.has(key))
    if (unknown !== undefined) return yield* invalid(`budget.${unknown}`, `budget.${unknown} is not a budget option`)
    const tokens = yield* limit("budget.tokens", input.tokens)
    const compiles = yield* limit("budget.compiles", input.compiles)
    const bankTokens = yield* limit("budget.bankTokens", input.bankTokens)
    const period = yield* duration("budget.period", input.period, "1 hour", false)
    if (!Duration.isFinite(period)) return yield* invalid("budget.period", "budget.period must be finite")
    return { tokens, compiles, bankTokens, period }
  })

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
    const maxBanks = yield* integer("maxBanks", options.maxBanks, DEFAULT_MAX_BANKS, 1)
    if (maxBanks > HARD_MAX_BANKS) {
      return yield* invalid("maxBanks", `maxBanks must be at most ${HARD_MAX_BANKS} (HARD_MAX_BANKS), got ${maxBanks}`)
    }
    const resolvedBudget = yield* budget(options.budget)
    return {
      budget: resolvedBudget,
      config,
      maxQueueSize: maxQueueSize <= 0 ? Infinity : maxQueueSize,
      concurrency,
      sweepInterval,
      compileTimeout,
      maxAttempts,
      baseDelay,
      shutdownTimeout,
      flushInterval,
      historyCapacity,
      maxBanks
    }
  })
