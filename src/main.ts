/**
 * The compile trigger as an HTTP sidecar (run by `bin.ts`: `npm start`, `npx effect-compile-trigger`). A thin
 * composition, bottom to top: config → (tracing) → the port bound → engine → (store: its owner lock, then its banks
 * restored) → (workload log) → queue → the API served → `Layer.launch` → `NodeRuntime.runMain`.
 */
import { HttpServerError } from "@effect/platform"
import { NodeHttpClient, NodeRuntime } from "@effect/platform-node"
import { Cause, Config, ConfigError, Duration, Effect, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import { BankStateStore, BankStoreError, describeDatabase } from "./BankStateStore.js"
import { CompileQueue } from "./CompileQueue.js"
import * as CompileTriggerServer from "./CompileTriggerServer.js"
import * as DryRunEngine from "./DryRunEngine.js"
import * as ServiceConfig from "./ServiceConfig.js"
import { CLUSTER_PEERS, importLayer, TRACING_PEERS } from "./internal/service/optionalPeers.js"
import { guardShutdownSignals } from "./internal/service/shutdownSignals.js"
import * as WorkloadLog from "./internal/workloadLog/workloadLog.js"
import * as WebhookEngine from "./WebhookEngine.js"

/** Requests already received get this long to finish at shutdown, before the queue's own deadline starts. */
const REQUEST_DRAIN_TIMEOUT = Duration.seconds(5)

const Engine = (config: ServiceConfig.ServiceConfig) =>
  config.engine._tag === "Webhook"
    ? WebhookEngine.layer({
      url: config.engine.url,
      token: Option.getOrUndefined(config.engine.token),
      cancelUrl: Option.getOrUndefined(config.engine.cancelUrl),
      timeout: config.compileTimeout,
      maxResponseBytes: config.engine.maxResponseBytes,
      readTimeout: config.engine.readTimeout,
      secret: Option.getOrUndefined(config.engine.secret),
      previousSecret: Option.getOrUndefined(config.engine.previousSecret)
    }).pipe(Layer.provide(NodeHttpClient.layer))
    : DryRunEngine.layer

/** Durable bank state: SQLite under DATA_DIR (default ./data), or Postgres when DATABASE_URL is set. */
const Store = BankStateStore.layerConfig

const queueOptions = (config: ServiceConfig.ServiceConfig) => ({
  config: config.trigger,
  maxQueueSize: Number.isFinite(config.maxQueueSize) ? config.maxQueueSize : 0,
  concurrency: config.concurrency,
  sweepInterval: config.sweepInterval,
  // The engine enforces compileTimeout itself (the webhook's CompileError names it); this is only a backstop.
  compileTimeout: Duration.sum(config.compileTimeout, Duration.seconds(1)),
  shutdownTimeout: config.shutdownTimeout,
  flushInterval: config.flushInterval,
  budget: ServiceConfig.budgetOptions(config.budget),
  maxBanks: config.maxBanks
})

/**
 * WORKLOAD_LOG_DIR: the tuner's log of this node's retains and forgets. Beneath the queue, so that it writes its last
 * minute after the queue closed.
 */
const WorkloadLogLayer = (config: ServiceConfig.ServiceConfig) =>
  Option.match(config.workloadLog, { onNone: () => Layer.empty, onSome: WorkloadLog.layer })

const Queue = (config: ServiceConfig.ServiceConfig) =>
  CompileQueue.layer(queueOptions(config)).pipe(
    Layer.tap(() => Effect.logInfo(`queue: ${ServiceConfig.describe(config)}`)),
    Layer.provide(Engine(config)),
    Layer.provide(Store),
    Layer.provide(WorkloadLogLayer(config))
  )

/**
 * Cluster mode (CLUSTER_RUNNER_ADDRESS): this process is one runner of `@effect/cluster` over Postgres (DATABASE_URL);
 * the routed queue sends every bank's calls to its partition's owner. Its modules are imported only then.
 */
const ClusterQueue = (config: ServiceConfig.ServiceConfig, cluster: ServiceConfig.ClusterSettings) =>
  importLayer(
    "cluster mode (CLUSTER_RUNNER_ADDRESS)",
    CLUSTER_PEERS,
    () => Promise.all([import("./ClusterCompileQueue.js"), import("@effect/sql-pg")]),
    ([ClusterCompileQueue, { PgClient }]) =>
      ClusterCompileQueue.layer({
        queue: queueOptions(config),
        runnerAddress: cluster.runnerAddress,
        handoverTimeout: cluster.handoverTimeout,
        ackMode: config.ackMode
      }).pipe(
        Layer.provide(Engine(config)),
        // Named after the runner, so that pg_stat_activity (and pg_locks' shard locks) say which runner is which.
        Layer.provide(PgClient.layer({
          url: cluster.databaseUrl,
          applicationName: `effect-compile-trigger ${cluster.runnerAddress.host}:${cluster.runnerAddress.port}`
        }).pipe(Layer.tap(() =>
          Effect.logInfo(
            `bank state: Postgres at ${describeDatabase(Redacted.value(cluster.databaseUrl))} (cluster mode: shared by the runners)`
          )
        ))),
        // Each runner logs the banks it owns (its partitions' queues count them).
        Layer.provide(WorkloadLogLayer(config))
      ),
    (error) => error instanceof Error ? error : new Error(String(error))
  ).pipe(
    Layer.tap(() =>
      Effect.logInfo(
        `queue (cluster runner ${cluster.runnerAddress.host}:${cluster.runnerAddress.port}): ${
          ServiceConfig.describe(config)
        } handoverTimeout=${Duration.format(cluster.handoverTimeout)}`
      )
    )
  )

const serverOptions = (config: ServiceConfig.ServiceConfig): CompileTriggerServer.ServerOptions => ({
  host: config.host,
  port: config.port,
  apiToken: config.apiToken,
  requestDrainTimeout: REQUEST_DRAIN_TIMEOUT,
  ackMode: config.ackMode,
  ...config.http
})

/** The port, bound first: a second instance on it fails before it opens the store; it answers "starting" meanwhile. */
const Listen = (config: ServiceConfig.ServiceConfig) => CompileTriggerServer.listen(serverOptions(config))

/** The API on that port, once the queue is built (its banks restored). */
const Http = (config: ServiceConfig.ServiceConfig) => CompileTriggerServer.serve(serverOptions(config))

/**
 * runMain has no shutdown deadline of its own. Built last, so its finalizer runs first at shutdown: if the graceful
 * stop (requests, then compiles up to COMPILE_SHUTDOWN_TIMEOUT) has not ended well after its deadlines, exit 1.
 */
const ShutdownWatchdog = (config: ServiceConfig.ServiceConfig) =>
  Layer.scopedDiscard(Effect.addFinalizer(() =>
    Effect.sync(() => {
      const limit = Duration.sum(Duration.sum(config.shutdownTimeout, REQUEST_DRAIN_TIMEOUT), Duration.seconds(15))
      setTimeout(() => {
        process.stderr.write(`shutdown did not finish within ${Duration.format(limit)}: exiting\n`)
        process.exit(1)
      }, Duration.toMillis(limit)).unref()
    })
  ))

/**
 * OTLP trace export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, its modules imported only then. Beneath everything, so
 * the server and the queue find the tracer when they are built, and it flushes last.
 */
const Tracing = (settings: Option.Option<ServiceConfig.TracingSettings>) =>
  Option.match(settings, {
    onNone: () => Layer.empty,
    onSome: ({ endpoint, serviceName }) =>
      importLayer(
        "tracing (OTEL_EXPORTER_OTLP_ENDPOINT)",
        TRACING_PEERS,
        () => import("./OtlpTracing.js"),
        (OtlpTracing) => OtlpTracing.layer({ serviceName }),
        (error) => error instanceof Error ? error : new Error(String(error))
      ).pipe(Layer.tap(() => Effect.logInfo(`tracing: OTLP/HTTP to ${endpoint.origin} as ${serviceName}`)))
  })

const Service = (
  config: ServiceConfig.ServiceConfig,
  tracing: Option.Option<ServiceConfig.TracingSettings>,
  cluster: Option.Option<ServiceConfig.ClusterSettings> = Option.none()
) =>
  ShutdownWatchdog(config).pipe(
    Layer.provide(Http(config)),
    // The port first, then the store (its owner lock, its banks restored), then the API.
    Layer.provide(
      Layer.provideMerge(Option.isSome(cluster) ? ClusterQueue(config, cluster.value) : Queue(config), Listen(config))
    ),
    Layer.provide(Tracing(tracing))
  )

/** Pretty or JSON lines; errors to stderr, the rest to stdout. */
const loggerFor = (logging: Pick<ServiceConfig.ServiceConfig, "logFormat" | "logLevel">) => {
  const [out, err] = logging.logFormat === "json"
    ? [Logger.withConsoleLog(Logger.jsonLogger), Logger.withConsoleError(Logger.jsonLogger)]
    : [Logger.prettyLogger(), Logger.prettyLogger({ stderr: true })]
  const logger = Logger.make<unknown, void>((options) =>
    LogLevel.greaterThanEqual(options.logLevel, LogLevel.Error) ? err.log(options) : out.log(options)
  )
  return Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(logging.logLevel))
}

/** A startup failure as one line: which variable is wrong, or why the server could not listen. */
const startupError = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (ConfigError.isConfigError(error)) return ServiceConfig.formatConfigError(error)
    if (error instanceof BankStoreError) return `cannot ${error.operation} the bank state store: ${error.message}`
    if (error instanceof HttpServerError.ServeError) {
      return `cannot listen: ${error.cause instanceof Error ? error.cause.message : String(error.cause)}`
    }
    if (error instanceof Error) return error.message
  }
  return Cause.pretty(cause)
}

const main = Effect.gen(function*() {
  const logging = yield* Effect.orElseSucceed(ServiceConfig.logging, () => ({
    logFormat: "pretty" as const,
    logLevel: ServiceConfig.defaultLogLevel
  }))
  return yield* Effect.gen(function*() {
    const { cluster, config, tracing } = yield* Config.all({
      config: ServiceConfig.config,
      tracing: ServiceConfig.tracing,
      cluster: ServiceConfig.cluster
    })
    return yield* Layer.launch(Service(config, tracing, cluster))
  }).pipe(
    Effect.tapErrorCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(`startup failed: ${startupError(cause)}`)
    ),
    Effect.provide(loggerFor(logging))
  )
})

guardShutdownSignals()
NodeRuntime.runMain(main, { disablePrettyLogger: true, disableErrorReporting: true })
