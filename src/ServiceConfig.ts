/**
 * The service's settings, read from environment variables with Effect `Config`. Every value is checked at startup; the
 * error names the variable.
 *
 * @since 0.1.0
 */
import { Config, ConfigError, Duration, Either, LogLevel, Option, Redacted } from "effect"
import { DEFAULT_MAX_BANKS, HARD_MAX_BANKS } from "./BankLimit.js"
import {
  DEFAULT_HEADERS_TIMEOUT_MILLIS,
  DEFAULT_KEEP_ALIVE_TIMEOUT_MILLIS,
  DEFAULT_REQUEST_TIMEOUT_MILLIS,
  defaultMaxConnections
} from "./internal/http/connectionLimits.js"
import { CompileTriggerConfig, MAX_FORGET_DELAY_SECONDS, MAX_STALENESS_DAYS, MAX_WAIT_SECONDS } from "./CompileTriggerConfig.js"

/**
 * Where compiles go: a webhook (`COMPILE_WEBHOOK_URL`), or a dry run that only logs them.
 *
 * @since 0.1.0
 */
export type EngineSettings =
  | ({
    readonly _tag: "Webhook"
    readonly url: URL
    readonly token: Option.Option<Redacted.Redacted>
    /** `COMPILE_WEBHOOK_CANCEL_URL`: where a compile cut off is told (`WebhookEngineOptions.cancelUrl`). */
    readonly cancelUrl: Option.Option<URL>
  } & WebhookGuards)
  | { readonly _tag: "DryRun" }

/**
 * How the webhook's calls are signed and its answers bounded.
 *
 * @since 0.1.0
 */
export interface WebhookGuards {
  /** `COMPILE_WEBHOOK_MAX_RESPONSE`: largest answer body read, in bytes. */
  readonly maxResponseBytes: number
  /** `COMPILE_WEBHOOK_READ_TIMEOUT`: the answer's body must arrive within this long of its headers. */
  readonly readTimeout: Duration.Duration
  /** `COMPILE_WEBHOOK_SECRET`: signs every call. */
  readonly secret: Option.Option<Redacted.Redacted>
  /** `COMPILE_WEBHOOK_SECRET_PREVIOUS`: during a rotation, signs every call too. */
  readonly previousSecret: Option.Option<Redacted.Redacted>
}

/**
 * @since 0.1.0
 */
export interface ServiceConfig {
  readonly host: string
  readonly port: number
  readonly trigger: CompileTriggerConfig
  /** `Infinity` when unbounded. */
  readonly maxQueueSize: number
  readonly concurrency: number
  readonly sweepInterval: Duration.Duration
  readonly compileTimeout: Duration.Duration
  readonly shutdownTimeout: Duration.Duration
  /** How often changed banks are written to the store. */
  readonly flushInterval: Duration.Duration
  /**
   * `ACK_MODE`: `memory` (default) answers a write once it is counted in memory (a crash loses at most the last flush
   * interval); `durable` answers it once the flush holding it committed (503 when the store fails).
   */
  readonly ackMode: AckMode
  readonly engine: EngineSettings
  /** When set, every `/v1` route requires `Authorization: Bearer <token>`. */
  readonly apiToken: Option.Option<Redacted.Redacted>
  readonly logFormat: "pretty" | "json"
  readonly logLevel: LogLevel.LogLevel
  /** `COMPILE_BUDGET_*`: the cost budget (each limit `None` when unset: unlimited). */
  readonly budget: BudgetSettings
  /** `COMPILE_MAX_BANKS`: the most banks the service holds (default 1,000,000); new banks past it are refused (507). */
  readonly maxBanks: number
  /** `HTTP_*`: the bounds of the server's connections. */
  readonly http: HttpSettings
  /** `WORKLOAD_LOG_*`: the workload log for the tuner, `None` (off) while `WORKLOAD_LOG_DIR` is unset. */
  readonly workloadLog: Option.Option<WorkloadLogSettings>
}

/**
 * The workload log: retains and forgets per bank per minute, in the tuner's format, one file per UTC day
 * (docs/tuner.md, "On your own traffic").
 *
 * @since 0.1.0
 */
export interface WorkloadLogSettings {
  /** `WORKLOAD_LOG_DIR`: where the daily files go (created if missing). */
  readonly dir: string
  /** `WORKLOAD_LOG_RETENTION_DAYS`: whole UTC days of files kept, today's included (default 30); older ones are deleted. */
  readonly retentionDays: number
}

/**
 * What a client that opens connections and sends nothing, or trickles its headers, can hold (docs/service.md,
 * "Connections").
 *
 * @since 0.1.0
 */
export interface HttpSettings {
  /** `HTTP_HEADERS_TIMEOUT`: a connection's first request's headers, complete, within this long (default 10 s). */
  readonly headersTimeout: Duration.Duration
  /** `HTTP_REQUEST_TIMEOUT`: the whole request, body included (default 30 s). */
  readonly requestTimeout: Duration.Duration
  /** `HTTP_KEEP_ALIVE_TIMEOUT`: a kept-alive connection idle this long between requests is closed (default 5 s). */
  readonly keepAliveTimeout: Duration.Duration
  /** `HTTP_MAX_CONNECTIONS`: open connections at most (default 10,000, or half the open-file limit when lower). */
  readonly maxConnections: number
}

/**
 * When a write is acknowledged: once counted in memory, or once stored.
 *
 * @since 0.1.0
 */
export type AckMode = "memory" | "durable"

/**
 * @since 0.1.0
 */
export interface BudgetSettings {
  /** `COMPILE_BUDGET_TOKENS`: LLM tokens all compiles may use per period. */
  readonly tokens: Option.Option<number>
  /** `COMPILE_BUDGET_COMPILES`: engine runs per period. */
  readonly compiles: Option.Option<number>
  /** `COMPILE_BUDGET_BANK_TOKENS`: tokens each bank may use per period (a policy's `bankTokens` overrides it). */
  readonly bankTokens: Option.Option<number>
  /** `COMPILE_BUDGET_PERIOD`: the refill period (default 1 hour). */
  readonly period: Duration.Duration
}

/** Service defaults where they differ from the library's (a sidecar serves many banks and calls a slow endpoint). */
export const defaults = {
  host: "127.0.0.1",
  port: 8787,
  maxQueueSize: 10_000,
  concurrency: 4,
  sweepInterval: "1 hour",
  compileTimeout: "5 minutes",
  shutdownTimeout: "25 seconds",
  flushInterval: "1 second",
  /**
   * A forget burst (a user or an agent cleaning up a bank) arrives over seconds to a minute: one minute folds it into
   * one compile, while a page still citing a forgotten memory waits about as long as one compile takes anyway.
   */
  forgetDelay: "1 minute",
  budgetPeriod: "1 hour",
  /** A month: what the tuner replays by default. */
  workloadLogRetentionDays: 30
} as const

type Parse<A> = (raw: string) => Either.Either<A, string>

/**
 * One variable: unset or empty → `None`; otherwise parsed, and a bad value is `InvalidData` naming the variable.
 */
const variable = <A>(name: string, parse: Parse<A>): Config.Config<Option.Option<A>> =>
  Config.option(Config.string(name)).pipe(
    Config.mapOrFail((raw) => {
      if (Option.isNone(raw) || raw.value.trim() === "") return Either.right(Option.none())
      return Either.match(parse(raw.value.trim()), {
        onLeft: (problem) =>
          Either.left(ConfigError.InvalidData([name], `${name} ${problem}, got ${JSON.stringify(raw.value)}`)),
        onRight: (value) => Either.right(Option.some(value))
      })
    })
  )

const withDefault = <A>(config: Config.Config<Option.Option<A>>, fallback: A): Config.Config<A> =>
  Config.map(config, Option.getOrElse(() => fallback))

const integer = (min: number, max: number = Number.MAX_SAFE_INTEGER): Parse<number> => (raw) => {
  const value = /^[+-]?\d+$/.test(raw) ? Number(raw) : NaN
  return Number.isSafeInteger(value) && value >= min && value <= max
    ? Either.right(value)
    : Either.left(max === Number.MAX_SAFE_INTEGER ? `must be an integer >= ${min}` : `must be an integer from ${min} to ${max}`)
}

const nonNegativeNumber = (max: number): Parse<number> => (raw) => {
  const value = /^\+?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(raw) ? Number(raw) : NaN
  return Number.isFinite(value) && value <= max
    ? Either.right(value)
    : Either.left(`must be a non-negative number of at most ${max}`)
}

/** An Effect duration ("30 seconds", "5 minutes", "500 millis") or a bare number of milliseconds, at most `max`. */
const duration = (allowZero: boolean, max?: Duration.Duration): Parse<Duration.Duration> => (raw) => {
  const decoded = /^\d+(\.\d+)?$/.test(raw)
    ? Option.some(Duration.millis(Number(raw)))
    : /^-/.test(raw)
    ? Option.none()
    : Duration.decodeUnknown(raw)
  if (Option.isNone(decoded)) return Either.left(`must be a duration such as "30 seconds" or a number of milliseconds`)
  if (!allowZero && Duration.isZero(decoded.value)) return Either.left("must be greater than zero")
  if (max !== undefined && Duration.greaterThan(decoded.value, max)) {
    return Either.left(`must be at most ${Duration.format(max)}`)
  }
  return Either.right(decoded.value)
}

const string: Parse<string> = Either.right

const httpUrl: Parse<URL> = (raw) => {
  try {
    const url = new URL(raw)
    return url.protocol === "http:" || url.protocol === "https:"
      ? Either.right(url)
      : Either.left("must be an http:// or https:// URL")
  } catch {
    return Either.left("must be an http:// or https:// URL")
  }
}

const oneOf = <const L extends ReadonlyArray<string>>(...literals: L): Parse<L[number]> => (raw) => {
  const value = raw.toLowerCase()
  return literals.includes(value) ? Either.right(value) : Either.left(`must be one of ${literals.join(", ")}`)
}

/** By label or name, any case: `warn` or `warning`, `off` or `none`. */
const logLevel: Parse<LogLevel.LogLevel> = (raw) => {
  const wanted = raw.toUpperCase()
  const level = LogLevel.allLevels.find((level) => level.label === wanted || level._tag.toUpperCase() === wanted)
  return level === undefined
    ? Either.left(`must be one of ${LogLevel.allLevels.map((level) => level.label.toLowerCase()).join(", ")}`)
    : Either.right(level)
}

/**
 * A secret: unset → `None`; set but empty → an error, so that a missing secret never silently turns auth off.
 */
const secret = (name: string): Config.Config<Option.Option<Redacted.Redacted>> =>
  Config.option(Config.string(name)).pipe(
    Config.mapOrFail((raw) =>
      Option.isNone(raw)
        ? Either.right(Option.none())
        : raw.value.trim() === ""
        ? Either.left(ConfigError.InvalidData([name], `${name} is set but empty (unset it instead)`))
        : Either.right(Option.some(Redacted.make(raw.value.trim())))
    )
  )

// --- webhook guards: answer limits and signing ---------------------------------------------------------------

const webhookGuards: Config.Config<WebhookGuards> = Config.all({
  maxResponseBytes: withDefault(variable("COMPILE_WEBHOOK_MAX_RESPONSE", integer(1)), 1024 * 1024),
  readTimeout: withDefault(variable("COMPILE_WEBHOOK_READ_TIMEOUT", duration(false)), Duration.seconds(30)),
  secret: secret("COMPILE_WEBHOOK_SECRET"),
  previousSecret: secret("COMPILE_WEBHOOK_SECRET_PREVIOUS")
}).pipe(
  Config.mapOrFail((guards) =>
    Option.isSome(guards.previousSecret) && Option.isNone(guards.secret)
      ? Either.left(
        ConfigError.InvalidData(
          ["COMPILE_WEBHOOK_SECRET_PREVIOUS"],
          "COMPILE_WEBHOOK_SECRET_PREVIOUS is set but COMPILE_WEBHOOK_SECRET is not (the previous secret only signs alongside a current one)"
        )
      )
      : Either.right(guards)
  )
)

const engine: Config.Config<EngineSettings> = Config.all({
  url: variable("COMPILE_WEBHOOK_URL", httpUrl),
  token: secret("COMPILE_WEBHOOK_TOKEN"),
  cancelUrl: variable("COMPILE_WEBHOOK_CANCEL_URL", httpUrl),
  guards: webhookGuards
}).pipe(
  Config.mapOrFail(({ cancelUrl, guards, token, url }) =>
    Option.match(url, {
      onNone: () =>
        Option.isSome(cancelUrl)
          ? Either.left(
            ConfigError.InvalidData(
              ["COMPILE_WEBHOOK_CANCEL_URL"],
              "COMPILE_WEBHOOK_CANCEL_URL is set but COMPILE_WEBHOOK_URL is not (cancel calls are the webhook's)"
            )
          )
          : Either.right<EngineSettings>({ _tag: "DryRun" }),
      onSome: (url) => Either.right<EngineSettings>({ _tag: "Webhook", url, token, cancelUrl, ...guards })
    })
  )
)

/** A duration variable with its default. */
const durationVariable = (name: string, allowZero: boolean, fallback: Duration.DurationInput) =>
  withDefault(variable(name, duration(allowZero)), Duration.decode(fallback))

const boolean: Parse<boolean> = (raw) => {
  const value = raw.toLowerCase()
  return value === "true" ? Either.right(true) : value === "false" ? Either.right(false) : Either.left("must be true or false")
}

const libraryDefaults = new CompileTriggerConfig({})

const budget: Config.Config<BudgetSettings> = Config.all({
  tokens: variable("COMPILE_BUDGET_TOKENS", integer(1)),
  compiles: variable("COMPILE_BUDGET_COMPILES", integer(1)),
  bankTokens: variable("COMPILE_BUDGET_BANK_TOKENS", integer(1)),
  period: durationVariable("COMPILE_BUDGET_PERIOD", false, defaults.budgetPeriod)
})

/**
 * The budget settings as `CompileQueueOptions.budget`.
 *
 * @since 0.1.0
 */
export const budgetOptions = (settings: BudgetSettings) => ({
  tokens: Option.getOrUndefined(settings.tokens),
  compiles: Option.getOrUndefined(settings.compiles),
  bankTokens: Option.getOrUndefined(settings.bankTokens),
  period: settings.period
})

const trigger: Config.Config<CompileTriggerConfig> = Config.all({
  enabled: withDefault(variable("COMPILE_DEFAULT_ENABLED", boolean), libraryDefaults.enabled),
  forgetThreshold: withDefault(variable("COMPILE_FORGET_THRESHOLD", integer(1)), libraryDefaults.forgetThreshold),
  forgetDelaySeconds: Config.map(
    withDefault(
      variable("COMPILE_FORGET_DELAY", duration(true, Duration.seconds(MAX_FORGET_DELAY_SECONDS))),
      Duration.decode(defaults.forgetDelay)
    ),
    (delay) => Duration.toMillis(delay) / 1000
  ),
  maxWaitSeconds: Config.map(
    withDefault(variable("COMPILE_MAX_WAIT", duration(true, Duration.seconds(MAX_WAIT_SECONDS))), Duration.zero),
    (wait) => Duration.toMillis(wait) / 1000
  ),
  sizeThreshold: withDefault(variable("COMPILE_SIZE_THRESHOLD", integer(0)), libraryDefaults.sizeThreshold),
  stalenessDays: withDefault(
    variable("COMPILE_STALENESS_DAYS", nonNegativeNumber(MAX_STALENESS_DAYS)),
    libraryDefaults.stalenessDays
  ),
  stalenessMinMemories: withDefault(
    variable("COMPILE_STALENESS_MIN_MEMORIES", integer(0)),
    libraryDefaults.stalenessMinMemories
  ),
  maxScopesPerBank: withDefault(variable("COMPILE_MAX_SCOPES_PER_BANK", integer(1)), libraryDefaults.maxScopesPerBank)
}).pipe(Config.map((fields) => new CompileTriggerConfig(fields)))

/** @since 0.1.0 */
export const defaultLogLevel: LogLevel.LogLevel = LogLevel.Info

/**
 * `LOG_FORMAT` and `LOG_LEVEL` alone, so that the error about any other variable is logged in the chosen format.
 *
 * @since 0.1.0
 */
export const logging: Config.Config<Pick<ServiceConfig, "logFormat" | "logLevel">> = Config.all({
  logFormat: withDefault(variable("LOG_FORMAT", oneOf("pretty", "json")), "pretty" as const),
  logLevel: withDefault(variable("LOG_LEVEL", logLevel), defaultLogLevel)
})

const millis = (ms: number) => Duration.millis(ms)

/** `HTTP_*`; the header deadline may not be longer than the request's (the headers are part of the request). */
const http: Config.Config<HttpSettings> = Config.all({
  headersTimeout: durationVariable("HTTP_HEADERS_TIMEOUT", true, millis(DEFAULT_HEADERS_TIMEOUT_MILLIS)),
  requestTimeout: durationVariable("HTTP_REQUEST_TIMEOUT", true, millis(DEFAULT_REQUEST_TIMEOUT_MILLIS)),
  keepAliveTimeout: durationVariable("HTTP_KEEP_ALIVE_TIMEOUT", false, millis(DEFAULT_KEEP_ALIVE_TIMEOUT_MILLIS)),
  maxConnections: Config.map(variable("HTTP_MAX_CONNECTIONS", integer(1)), Option.getOrElse(defaultMaxConnections))
}).pipe(Config.mapOrFail((settings) => {
  const [headers, request] = [settings.headersTimeout, settings.requestTimeout]
  return Duration.isZero(request) || Duration.lessThanOrEqualTo(headers, request)
    ? Either.right(settings)
    : Either.left(ConfigError.InvalidData(
      ["HTTP_HEADERS_TIMEOUT"],
      `HTTP_HEADERS_TIMEOUT (${Duration.format(headers)}) must not be longer than HTTP_REQUEST_TIMEOUT (${
        Duration.format(request)
      })`
    ))
}))

/** `WORKLOAD_LOG_DIR` and `WORKLOAD_LOG_RETENTION_DAYS`; a retention without a directory is an error. */
const workloadLog: Config.Config<Option.Option<WorkloadLogSettings>> = Config.all({
  dir: variable("WORKLOAD_LOG_DIR", string),
  retentionDays: variable("WORKLOAD_LOG_RETENTION_DAYS", integer(1, 36_500))
}).pipe(
  Config.mapOrFail(({ dir, retentionDays }) =>
    Option.isNone(dir)
      ? Option.isSome(retentionDays)
        ? Either.left(ConfigError.InvalidData(
          ["WORKLOAD_LOG_RETENTION_DAYS"],
          "WORKLOAD_LOG_RETENTION_DAYS is set but WORKLOAD_LOG_DIR is not (the retention is the log's)"
        ))
        : Either.right(Option.none())
      : Either.right(Option.some({
        dir: dir.value,
        retentionDays: Option.getOrElse(retentionDays, () => defaults.workloadLogRetentionDays)
      }))
  )
)

/**
 * The whole configuration, from environment variables (see docs/service.md, "Configuration").
 *
 * @since 0.1.0
 */
export const config: Config.Config<ServiceConfig> = Config.all({
  host: withDefault(variable("HOST", string), defaults.host),
  port: withDefault(variable("PORT", integer(0, 65535)), defaults.port),
  trigger,
  maxQueueSize: withDefault(variable("COMPILE_MAX_QUEUE_SIZE", integer(0)), defaults.maxQueueSize)
    .pipe(Config.map((size) => size <= 0 ? Infinity : size)),
  concurrency: withDefault(variable("COMPILE_CONCURRENCY", integer(1, 10_000)), defaults.concurrency),
  sweepInterval: durationVariable("COMPILE_SWEEP_INTERVAL", false, defaults.sweepInterval),
  compileTimeout: durationVariable("COMPILE_TIMEOUT", false, defaults.compileTimeout),
  shutdownTimeout: durationVariable("COMPILE_SHUTDOWN_TIMEOUT", true, defaults.shutdownTimeout),
  flushInterval: durationVariable("COMPILE_FLUSH_INTERVAL", false, defaults.flushInterval),
  ackMode: withDefault(variable("ACK_MODE", oneOf("memory", "durable")), "memory" as const),
  engine,
  apiToken: secret("API_TOKEN"),
  logging,
  budget,
  maxBanks: withDefault(variable("COMPILE_MAX_BANKS", integer(1, HARD_MAX_BANKS)), DEFAULT_MAX_BANKS),
  http,
  workloadLog
}).pipe(Config.map(({ logging, ...rest }) => ({ ...rest, ...logging })))

/**
 * The settings in one log line (secrets left out).
 *
 * @since 0.1.0
 */
export const describe = (config: ServiceConfig): string =>
  [
    `sizeThreshold=${config.trigger.sizeThreshold}`,
    `stalenessDays=${config.trigger.stalenessDays}`,
    `stalenessMinMemories=${config.trigger.stalenessMinMemories}`,
    `defaultEnabled=${config.trigger.enabled}`,
    `forgetThreshold=${config.trigger.forgetThreshold}`,
    `forgetDelay=${Duration.format(Duration.seconds(config.trigger.forgetDelaySeconds))}`,
    `maxWait=${config.trigger.maxWaitSeconds === 0 ? "off" : Duration.format(Duration.seconds(config.trigger.maxWaitSeconds))}`,
    `maxQueueSize=${Number.isFinite(config.maxQueueSize) ? config.maxQueueSize : "unbounded"}`,
    `concurrency=${config.concurrency}`,
    `sweepInterval=${Duration.format(config.sweepInterval)}`,
    `compileTimeout=${Duration.format(config.compileTimeout)}`,
    `shutdownTimeout=${Duration.format(config.shutdownTimeout)}`,
    `flushInterval=${Duration.format(config.flushInterval)}`,
    `ackMode=${config.ackMode}`,
    `budget=${describeBudget(config.budget)}`,
    `maxBanks=${config.maxBanks}`,
    `httpHeadersTimeout=${Duration.format(config.http.headersTimeout)}`,
    `httpRequestTimeout=${Duration.format(config.http.requestTimeout)}`,
    `httpKeepAliveTimeout=${Duration.format(config.http.keepAliveTimeout)}`,
    `httpMaxConnections=${config.http.maxConnections}`,
    `workloadLog=${
      Option.match(config.workloadLog, {
        onNone: () => "off",
        onSome: ({ dir, retentionDays }) => `${JSON.stringify(dir)}(${retentionDays}d)`
      })
    }`
  ].join(" ")

const describeBudget = (budget: BudgetSettings): string => {
  const limits = [
    Option.map(budget.tokens, (n) => `${n} tokens`),
    Option.map(budget.compiles, (n) => `${n} compiles`),
    Option.map(budget.bankTokens, (n) => `${n} tokens/bank`)
  ].flatMap((limit) => Option.isSome(limit) ? [limit.value] : [])
  return limits.length === 0 ? "unlimited" : `${limits.join(",")}/${Duration.format(budget.period).replace(/ /g, "")}`
}

/**
 * A `ConfigError` as one line: every problem, each naming its variable.
 *
 * @since 0.1.0
 */
export const formatConfigError = (error: ConfigError.ConfigError): string => {
  const problems = ConfigError.reduceWithContext(error, undefined, {
    andCase: (_, left: ReadonlyArray<string>, right: ReadonlyArray<string>) => [...left, ...right],
    orCase: (_, left: ReadonlyArray<string>, right: ReadonlyArray<string>) => [...left, ...right],
    invalidDataCase: (_, path, message) => [message.startsWith(path.join("_")) ? message : `${path.join("_")}: ${message}`],
    missingDataCase: (_, path, message) => [`${path.join("_")}: ${message}`],
    sourceUnavailableCase: (_, path, message) => [`${path.join("_")}: ${message}`],
    unsupportedCase: (_, path, message) => [`${path.join("_")}: ${message}`]
  })
  return `invalid configuration: ${[...new Set(problems)].join("; ")}`
}

// --- tracing ------------------------------------------------------------------------------------------------------

/**
 * OpenTelemetry export, on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. The exporter itself reads the standard
 * `OTEL_EXPORTER_OTLP_*` variables (endpoint, `…_TRACES_ENDPOINT`, headers, timeout).
 *
 * @since 0.1.0
 */
export interface TracingSettings {
  readonly endpoint: URL
  /** `OTEL_SERVICE_NAME`, default `effect-compile-trigger`. */
  readonly serviceName: string
}

/** @since 0.1.0 */
export const defaultServiceName = "effect-compile-trigger"

/**
 * `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_SERVICE_NAME`: `None` (nothing loaded, nothing traced) while the endpoint is
 * unset.
 *
 * @since 0.1.0
 */
export const tracing: Config.Config<Option.Option<TracingSettings>> = Config.all({
  endpoint: variable("OTEL_EXPORTER_OTLP_ENDPOINT", httpUrl),
  serviceName: withDefault(variable("OTEL_SERVICE_NAME", string), defaultServiceName)
}).pipe(
  Config.map(({ endpoint, serviceName }) => Option.map(endpoint, (endpoint) => ({ endpoint, serviceName })))
)

// --- cluster mode -------------------------------------------------------------------------------------------------

/**
 * Cluster mode, on when `CLUSTER_RUNNER_ADDRESS` is set.
 *
 * @since 0.1.0
 */
export interface ClusterSettings {
  /** `CLUSTER_RUNNER_ADDRESS` (`host:port`): where the other runners reach this one; it listens there too. */
  readonly runnerAddress: { readonly host: string; readonly port: number }
  /** `DATABASE_URL`: required in cluster mode, a `postgres://` URL (bank state and the cluster's tables). */
  readonly databaseUrl: Redacted.Redacted
  /** `CLUSTER_HANDOVER_TIMEOUT`: how long a partition's compiles may go on when it leaves a runner (default 5 s). */
  readonly handoverTimeout: Duration.Duration
}

const hostPort: Parse<{ readonly host: string; readonly port: number }> = (raw) => {
  const match = /^(.+):(\d+)$/.exec(raw)
  const port = match === null ? NaN : Number(match[2])
  if (match === null || !(port >= 1 && port <= 65535)) return Either.left("must be host:port (port 1 to 65535)")
  return Either.right({ host: match[1]!.replace(/^\[(.*)\]$/, "$1"), port })
}

/**
 * `CLUSTER_RUNNER_ADDRESS`, `CLUSTER_HANDOVER_TIMEOUT` and `DATABASE_URL`: `None` (single-node mode) while the
 * address is unset.
 *
 * @since 0.1.0
 */
export const cluster: Config.Config<Option.Option<ClusterSettings>> = Config.all({
  runnerAddress: variable("CLUSTER_RUNNER_ADDRESS", hostPort),
  databaseUrl: Config.option(Config.redacted("DATABASE_URL")),
  handoverTimeout: durationVariable("CLUSTER_HANDOVER_TIMEOUT", true, "5 seconds")
}).pipe(
  Config.mapOrFail(({ databaseUrl, handoverTimeout, runnerAddress }) => {
    if (Option.isNone(runnerAddress)) return Either.right(Option.none())
    if (Option.isNone(databaseUrl) || !/^postgres(ql)?:\/\//.test(Redacted.value(databaseUrl.value))) {
      return Either.left(
        ConfigError.InvalidData(
          ["DATABASE_URL"],
          "DATABASE_URL must be a postgres:// URL in cluster mode (CLUSTER_RUNNER_ADDRESS is set)"
        )
      )
    }
    return Either.right(Option.some({ runnerAddress: runnerAddress.value, databaseUrl: databaseUrl.value, handoverTimeout }))
  })
)
