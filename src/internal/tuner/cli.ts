/**
 * `effect-compile-trigger tune …` (and `npm run tune -- …`): the threshold tuner's command line, on @effect/cli —
 * reads or generates the workload, replays it for every combination of the settings grid, prints the table (or
 * JSON), writes the report page. Loaded by `bin.ts` only for `tune`, so the service never loads it.
 *
 * @internal
 */
import { Command, Options, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Duration, Effect, Either, Option, ParseResult, Schema } from "effect"
import { access, constants, writeFile } from "node:fs/promises"
import { dirname } from "node:path"
import { createRequire } from "node:module"
import { CompileTriggerConfig } from "../../CompileTriggerConfig.js"
import { resolve } from "../../CompileQueueOptions.js"
import { missingPeers, missingPeersMessage, REPORT_PEERS } from "../service/optionalPeers.js"
import { progressBar } from "./progress.js"
import { readLog } from "./readLog.js"
import { formatTable, reportHtml } from "./report.js"
import { type EngineModel, queueOptions, type TuneSettings, type Workload } from "./replay.js"
import { combinations, type SettingsGrid, tune } from "./tune.js"
import { colourOnlyOnTerminals } from "./terminalColour.js"
import { synthetic } from "./workload.js"

/** A flag or the log is wrong: one line, exit 1, nothing written. */
export class TuneInputError extends Schema.TaggedError<TuneInputError>()("TuneInputError", {
  message: Schema.String
}) {}

const fail = (message: string) => Effect.fail(new TuneInputError({ message }))

const list = (name: string, description: string, fallback: string) =>
  Options.text(name).pipe(
    Options.withDescription(`${description}; a comma-separated list of candidates (default ${fallback})`),
    Options.withDefault(fallback)
  )

const number = (name: string, description: string, fallback: number, integer = false) =>
  (integer ? Options.integer(name) : Options.float(name)).pipe(
    Options.withDescription(`${description} (default ${fallback})`),
    Options.withDefault(fallback)
  )

const options = {
  log: Options.text("log").pipe(
    Options.withDescription(
      "workload log: JSON Lines, one {\"t\", \"bankId\", \"count\"?, \"op\"?} a line, in time order; or a directory " +
        "of such files (the service's WORKLOAD_LOG_DIR), read in name order as one log"
    ),
    Options.optional
  ),
  synthetic: Options.boolean("synthetic").pipe(Options.withDescription("generate the workload instead of reading a log")),
  banks: number("banks", "synthetic: number of banks", 1000, true),
  days: number("days", "synthetic: days", 30, true),
  retainsPerDay: number("retains-per-day", "synthetic: retains a day, over all banks", 10_000, true),
  forgetsPerDay: number("forgets-per-day", "synthetic: forgets a day, over all banks", 0, true),
  seed: number("seed", "synthetic: random seed", 1, true),
  size: list("size", "sizeThreshold", "50"),
  stalenessDays: list("staleness-days", "stalenessDays", "7"),
  stalenessMin: list("staleness-min", "stalenessMinMemories", "10"),
  forgetThreshold: list("forget-threshold", "forgetThreshold", "1"),
  forgetDelay: list("forget-delay", "forgetDelaySeconds", "0"),
  maxWait: list("max-wait", "maxWaitSeconds (the freshness deadline; 0 = off)", "0"),
  budgetTokens: list("budget-tokens", "budget.tokens: LLM tokens all compiles may use per --budget-period, or none", "none"),
  budgetCompiles: list("budget-compiles", "budget.compiles: engine runs per --budget-period, or none", "none"),
  budgetPeriod: Options.text("budget-period").pipe(
    Options.withDescription("budget.period: the budget refills completely over this, e.g. \"1 hour\", \"1 day\" (default 1 hour)"),
    Options.withDefault("1 hour")
  ),
  compileSeconds: number("compile-seconds", "engine model: latency of one compile, seconds", 60),
  tokensBase: number("tokens-base", "engine model: tokens of a compile, fixed part", 2000),
  tokensPerMemory: number("tokens-per-memory", "engine model: tokens of a compile per memory it consumes", 100),
  tokensPerScope: number(
    "tokens-per-scope",
    "engine model: tokens per scope a compile rebuilds (its dirty scopes; all the bank's when it names none)",
    0
  ),
  wholeBank: Options.boolean("whole-bank").pipe(
    Options.withDescription("engine model: every compile rebuilds all of its bank's scopes (the cost without targeted compiles)")
  ),
  concurrency: number("concurrency", "compiles at once", 4, true),
  sweepInterval: Options.text("sweep-interval").pipe(
    Options.withDescription("how often the queue sweeps for stale banks, e.g. \"1 hour\", \"15 minutes\" (default 1 hour)"),
    Options.withDefault("1 hour")
  ),
  maxQueueSize: number("max-queue-size", "banks that may wait in the queue; 0 = unbounded", 0, true),
  json: Options.boolean("json").pipe(Options.withDescription("print one JSON array (an object per combination) instead of the table")),
  out: Options.file("out").pipe(Options.withDescription("write the report page (self-contained HTML) here"), Options.optional)
}

type Parsed = {
  readonly [K in keyof typeof options]: (typeof options)[K] extends Options.Options<infer A> ? A : never
}

/** The candidates of one grid flag, each checked as that field of `CompileTriggerConfig`. */
const candidates = (flag: string, field: keyof TuneSettings, text: string): Either.Either<Array<number>, string> => {
  const parts = text.split(",").map((part) => part.trim())
  const values: Array<number> = []
  for (const part of parts) {
    const value = part.length === 0 ? NaN : Number(part)
    if (!Number.isFinite(value)) return Either.left(`--${flag}: ${JSON.stringify(part)} is not a number (in ${JSON.stringify(text)})`)
    const checked = Schema.decodeUnknownEither(CompileTriggerConfig)({ [field]: value })
    if (Either.isLeft(checked)) {
      // The field is optional in the schema: skip the "Expected undefined" branch, keep the reason the number failed.
      const issues = ParseResult.ArrayFormatter.formatErrorSync(checked.left)
      const reason = issues.find((issue) => !issue.message.startsWith("Expected undefined")) ?? issues[0]
      return Either.left(`--${flag} ${part}: ${reason?.message ?? "invalid"}`)
    }
    if (!values.includes(value)) values.push(value)
  }
  return Either.right(values)
}

/** The candidates of a budget flag: positive integers, or `none` (unlimited). */
const budgetCandidates = (flag: string, text: string): Either.Either<Array<number | null>, string> => {
  const values: Array<number | null> = []
  for (const part of text.split(",").map((part) => part.trim())) {
    const value = part === "none" ? null : Number(part)
    if (value !== null && !(Number.isSafeInteger(value) && value > 0)) {
      return Either.left(`--${flag}: ${JSON.stringify(part)} is not a positive integer or none (in ${JSON.stringify(text)})`)
    }
    if (!values.includes(value)) values.push(value)
  }
  return Either.right(values)
}

/** A duration flag: "1 hour", "15 minutes", or a number of seconds. */
const durationFlag = (flag: string, text: string): Either.Either<number, string> => {
  const trimmed = text.trim()
  const decoded = /^\d+(\.\d+)?$/.test(trimmed) ? Option.some(Duration.seconds(Number(trimmed))) : Duration.decodeUnknown(trimmed)
  return Option.isSome(decoded) && Duration.toMillis(decoded.value) > 0 && Number.isFinite(Duration.toMillis(decoded.value))
    ? Either.right(Duration.toMillis(decoded.value))
    : Either.left(`--${flag} must be a positive duration such as "1 hour" or "900 seconds", got ${JSON.stringify(text)}`)
}

const grid = (p: Parsed): Either.Either<SettingsGrid, string> =>
  Either.all({
    sizeThreshold: candidates("size", "sizeThreshold", p.size),
    stalenessDays: candidates("staleness-days", "stalenessDays", p.stalenessDays),
    stalenessMinMemories: candidates("staleness-min", "stalenessMinMemories", p.stalenessMin),
    forgetThreshold: candidates("forget-threshold", "forgetThreshold", p.forgetThreshold),
    forgetDelaySeconds: candidates("forget-delay", "forgetDelaySeconds", p.forgetDelay),
    maxWaitSeconds: candidates("max-wait", "maxWaitSeconds", p.maxWait),
    budgetTokens: budgetCandidates("budget-tokens", p.budgetTokens),
    budgetCompiles: budgetCandidates("budget-compiles", p.budgetCompiles)
  })

const FLAG_OF_OPTION: Readonly<Record<string, string>> = {
  concurrency: "--concurrency",
  sweepInterval: "--sweep-interval",
  maxQueueSize: "--max-queue-size",
  "budget.tokens": "--budget-tokens",
  "budget.compiles": "--budget-compiles",
  "budget.period": "--budget-period"
}

/** The engine model, with the queue's own validation of the options it feeds (the error names the flag). */
const engineModel = (p: Parsed, grid: ReadonlyArray<TuneSettings>): Either.Either<EngineModel, string> => {
  if (!(p.compileSeconds >= 0)) return Either.left(`--compile-seconds must be >= 0, got ${p.compileSeconds}`)
  if (!(p.tokensBase >= 0)) return Either.left(`--tokens-base must be >= 0, got ${p.tokensBase}`)
  if (!(p.tokensPerMemory >= 0)) return Either.left(`--tokens-per-memory must be >= 0, got ${p.tokensPerMemory}`)
  if (!(p.tokensPerScope >= 0)) return Either.left(`--tokens-per-scope must be >= 0, got ${p.tokensPerScope}`)
  const interval = durationFlag("sweep-interval", p.sweepInterval)
  if (Either.isLeft(interval)) return Either.left(interval.left)
  const budgetPeriod = durationFlag("budget-period", p.budgetPeriod)
  if (Either.isLeft(budgetPeriod)) return Either.left(budgetPeriod.left)
  const model: EngineModel = {
    compileSeconds: p.compileSeconds,
    tokensBase: p.tokensBase,
    tokensPerMemory: p.tokensPerMemory,
    tokensPerScope: p.tokensPerScope,
    wholeBank: p.wholeBank,
    concurrency: p.concurrency,
    sweepIntervalMillis: interval.right,
    maxQueueSize: p.maxQueueSize,
    budgetPeriodMillis: budgetPeriod.right
  }
  if (p.maxQueueSize < 0) return Either.left(`--max-queue-size must be >= 0 (0 = unbounded), got ${p.maxQueueSize}`)
  for (const settings of grid) {
    const resolved = resolve(queueOptions(settings, model))
    if (Either.isLeft(resolved)) {
      return Either.left(`${FLAG_OF_OPTION[resolved.left.option] ?? resolved.left.option}: ${resolved.left.message}`)
    }
  }
  return Either.right(model)
}

const workload = (p: Parsed): Effect.Effect<{ readonly workload: Workload; readonly source: string }, TuneInputError> => {
  if (Option.isSome(p.log) && p.synthetic) return fail("give either --log <file> or --synthetic, not both")
  if (Option.isSome(p.log)) {
    const file = p.log.value
    return readLog(file).pipe(
      Effect.mapError((message) => new TuneInputError({ message: `${file}: ${message}` })),
      Effect.map((w) => ({ workload: w, source: `log ${file}` }))
    )
  }
  if (!p.synthetic) return fail("give a workload: --log <file> (JSON Lines) or --synthetic")
  if (p.banks < 1) return fail(`--banks must be >= 1, got ${p.banks}`)
  if (p.days < 1) return fail(`--days must be >= 1, got ${p.days}`)
  if (p.retainsPerDay < 0) return fail(`--retains-per-day must be >= 0, got ${p.retainsPerDay}`)
  if (p.forgetsPerDay < 0) return fail(`--forgets-per-day must be >= 0, got ${p.forgetsPerDay}`)
  const options = { banks: p.banks, days: p.days, retainsPerDay: p.retainsPerDay, forgetsPerDay: p.forgetsPerDay, seed: p.seed }
  return Effect.sync(() => ({
    workload: synthetic(options),
    source: `synthetic (--banks ${p.banks} --days ${p.days} --retains-per-day ${p.retainsPerDay} --forgets-per-day ${p.forgetsPerDay} --seed ${p.seed})`
  }))
}

const writeReport = (file: string, html: () => Promise<string>) =>
  Effect.tryPromise({
    try: async () => writeFile(file, await html()),
    catch: (error) => new TuneInputError({ message: `cannot write ${file}: ${error instanceof Error ? error.message : String(error)}` })
  })

/** Before any replay: the report's directory must exist and be writable (a bad --out changes nothing). */
const checkWritable = (file: string) =>
  Effect.tryPromise({
    try: () => access(dirname(file), constants.W_OK),
    catch: (error) =>
      new TuneInputError({ message: `--out ${file}: cannot write there: ${error instanceof Error ? error.message : String(error)}` })
  })

const run = (p: Parsed) =>
  Effect.gen(function*() {
    const settings = yield* Either.match(grid(p), { onLeft: fail, onRight: (g) => Effect.succeed(combinations(g)) })
    const model = yield* Either.match(engineModel(p, settings), { onLeft: fail, onRight: Effect.succeed })
    if (Option.isSome(p.out)) {
      const missing = missingPeers(REPORT_PEERS)
      if (missing.length > 0) return yield* fail(missingPeersMessage("--out (the report page)", missing))
      yield* checkWritable(p.out.value)
    }
    const { source, workload: events } = yield* workload(p)
    if (events.length === 0) return yield* fail("the workload has no events")
    const progress = progressBar(settings.length, events.length)
    const result = tune(events, settings, model, progress?.update)
    progress?.done()
    yield* p.json ? Console.log(JSON.stringify(result.rows, null, 2)) : Effect.sync(() => process.stdout.write(formatTable(result)))
    if (Option.isSome(p.out)) {
      const file = p.out.value
      const perScope = p.tokensPerScope === 0
        ? ""
        : ` + ${p.tokensPerScope} × ${p.wholeBank ? "all the bank's scopes" : "scopes rebuilt"}`
      const engine = `${p.compileSeconds} s a compile, ${p.tokensBase} + ${p.tokensPerMemory} × memories${perScope} tokens, ` +
        `concurrency ${p.concurrency}, sweep every ${p.sweepInterval}, budget period ${p.budgetPeriod}`
      yield* writeReport(file, () => reportHtml(result, { source, engine }))
      yield* Console.error(`report written to ${file}`)
    }
  })

export const tuneCommand = Command.make("tune", options, run).pipe(
  Command.withDescription(
    "Replays a retain log (or a synthetic month) through the real CompileQueue for every combination of candidate " +
      "settings, in virtual time, and reports cost (compiles, tokens) against freshness (retain to compiled)."
  )
)

const version = (createRequire(import.meta.url)("../../../package.json") as { readonly version: string }).version

const cli = Command.run(Command.make("effect-compile-trigger").pipe(Command.withSubcommands([tuneCommand])), {
  name: "effect-compile-trigger",
  version
})

/**
 * Runs the command line `argv` (node, script, "tune", …); our errors as one line on stderr, exit 1. Help and errors
 * are styled only on a terminal.
 */
export const main = (argv: ReadonlyArray<string>): void =>
  cli(argv).pipe(
    colourOnlyOnTerminals,
    Effect.catchIf(
      (error): error is TuneInputError => error instanceof TuneInputError,
      (error) =>
        Effect.zipRight(Console.error(`effect-compile-trigger tune: ${error.message}`), Effect.sync(() => {
          process.exitCode = 1
        }))
    ),
    Effect.catchIf(ValidationError.isValidationError, () =>
      Effect.sync(() => {
        process.exitCode = 1 // @effect/cli printed it already
      })),
    Effect.provide(NodeContext.layer),
    (program) => NodeRuntime.runMain(program, { disableErrorReporting: false, disablePrettyLogger: true })
  )
