/**
 * The HTTP side of the service: the `CompileTriggerApi` handlers over a `CompileQueue`, bearer-token auth, the 1 MiB
 * body limit, readiness, and a graceful stop (not ready → stop taking requests → let the queue finish).
 *
 * @since 0.1.0
 */
import {
  FileSystem,
  type HttpApi,
  HttpApiBuilder,
  HttpApiSwagger,
  HttpIncomingMessage,
  HttpMiddleware,
  HttpRouter,
  HttpServer,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Duration, Effect, Layer, Option, ParseResult, Redacted, Ref, Schema } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import type { Server } from "node:http"
import type { Duplex } from "node:stream"
import {
  Authorization,
  BankNotFound,
  BankView,
  BankLimitReached,
  BankPage,
  BatchRetainPayload,
  CompilePayload,
  BatchRetainResponse,
  CompileHistoryResponse,
  CompileTriggerApi,
  ForgetPayload,
  Health,
  MAX_BATCH_ITEMS,
  MAX_BODY_BYTES,
  MAX_RETAIN_COUNT,
  NotReady,
  PolicyNotFound,
  PolicyRequest,
  PolicyResponse,
  QueueStats,
  RetainPayload,
  StoreUnavailable,
  Unauthorized
} from "./CompileTriggerApi.js"
import { CompileQueue, type CompileQueueService } from "./CompileQueue.js"
import * as Dashboard from "./internal/http/dashboard.js"
import { answerWhileStarting } from "./internal/http/startingAnswer.js"
import { readJson, withinDepth } from "./internal/http/body.js"
import { refailReadable, readableErrorsLayer } from "./internal/http/readableErrors.js"
import { guardRequests } from "./internal/http/requestGuard.js"
import { guardedServer, inConnectionOrder, inTurnApplied } from "./internal/http/connections.js"
import { encodeBankState, isValidBatch, isValidRetain } from "./internal/http/fastPath.js"
import { appTracing } from "./internal/runtime/tracing.js"
import { WriteAcks } from "./internal/runtime/writeAcks.js"
import { PrometheusMetrics } from "./PrometheusMetrics.js"
import type { AckMode } from "./ServiceConfig.js"
import type { WriteOptions } from "./DirtyScopes.js"
import * as StoreHealth from "./StoreHealth.js"

/**
 * `starting` until the server listens, `ready` while it serves, `shutting_down` from the stop signal on.
 *
 * @since 0.1.0
 */
export type Readiness = "starting" | "ready" | "shutting_down"

/**
 * The service's readiness, read by `/readyz`.
 *
 * @since 0.1.0
 */
export class Lifecycle extends Context.Tag("effect-compile-trigger/Lifecycle")<Lifecycle, Ref.Ref<Readiness>>() {}

/**
 * @since 0.1.0
 */
export interface ServerOptions extends ConnectionOptions {
  readonly host: string
  /** 0 picks a free port. */
  readonly port: number
  /** When set, `/v1` requires `Authorization: Bearer <token>`. */
  readonly apiToken: Option.Option<Redacted.Redacted>
  /** How long requests already received may take to finish at shutdown before their connections are cut (default 5 s). */
  readonly requestDrainTimeout?: Duration.DurationInput | undefined
  /**
   * `memory` (default): a write is answered once counted. `durable`: once the flush holding it committed to the
   * store (`CompileQueue.flush`); `503 StoreUnavailable` when it could not be stored.
   */
  readonly ackMode?: AckMode | undefined
}

/**
 * The bounds of the server's connections (docs/service.md, "Connections"): what a client that opens connections and
 * sends nothing, or trickles its headers, can hold.
 *
 * @since 0.1.0
 */
export interface ConnectionOptions {
  /**
   * A connection must send a request's complete headers within this long of opening (or of the request's first
   * byte, on a kept-alive connection); one that does not is answered 408 and closed. Default 10 s; 0: no limit.
   */
  readonly headersTimeout?: Duration.DurationInput | undefined
  /** The whole request, body included, within this long (default 30 s; 0: no limit; not shorter than headersTimeout). */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /** How long a kept-alive connection may sit idle between requests before it is closed (default 5 s). */
  readonly keepAliveTimeout?: Duration.DurationInput | undefined
  /**
   * Open connections at most (default 10,000, or half the process's open-file limit when that is lower). Past it, the
   * oldest connection that has not sent a complete request yet is closed, or the new one when every one has.
   */
  readonly maxConnections?: number | undefined
}

/**
 * Options of the API's handlers.
 *
 * @since 0.1.0
 */
export interface ApiOptions {
  /** See `ServerOptions.ackMode`. */
  readonly ackMode?: AckMode | undefined
}

/** A durable write not stored within this long is answered 503 (it stays counted and may still be stored). */
const DURABLE_ACK_TIMEOUT = Duration.seconds(10)

// --- auth ---------------------------------------------------------------------------------------------------------

const sha256 = (text: string): Buffer => createHash("sha256").update(text).digest()

/**
 * The `Authorization` middleware: with a token, a constant-time comparison (of SHA-256 digests, so lengths leak
 * nothing either); without one, every request passes.
 *
 * @since 0.1.0
 */
export const authorizationLayer = (token: Option.Option<Redacted.Redacted>): Layer.Layer<Authorization> => {
  if (Option.isNone(token)) return Layer.succeed(Authorization, Authorization.of({ bearer: () => Effect.void }))
  const expected = sha256(Redacted.value(token.value))
  return Layer.succeed(
    Authorization,
    Authorization.of({
      bearer: (given) =>
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
          const header = request.headers.authorization
          if (header === undefined || header === "") {
            return Effect.fail(new Unauthorized({ message: "missing Authorization: Bearer <token> header" }))
          }
          // The decoder slices off 7 characters whatever they are: check the scheme here.
          const isBearer = header.length > 7 && header.slice(0, 7).toLowerCase() === "bearer "
          return isBearer && timingSafeEqual(sha256(Redacted.value(given)), expected)
            ? Effect.void
            : Effect.fail(new Unauthorized({ message: "invalid bearer token" }))
        })
    })
  )
}

// --- handlers -----------------------------------------------------------------------------------------------------

const shuttingDown = new NotReady({ state: "shutting_down", message: "the service is shutting down" })

const decodeRetain = Schema.decodeUnknown(RetainPayload)
const decodeForget = Schema.decodeUnknown(ForgetPayload)
const decodeBatch = Schema.decodeUnknown(BatchRetainPayload)
const decodeCompile = Schema.decodeUnknown(CompilePayload)

/** A retain or forget body, decoded. */
interface WriteBody {
  readonly count?: number | undefined
  readonly scopes?: ReadonlyArray<string> | undefined
}
const decodePolicy = Schema.decodeUnknown(PolicyRequest)

/**
 * The routes that take a body read it themselves, after auth (see internal/http/body.ts), and decode it with the
 * endpoint's payload Schema: the same bodies accepted, and a readable HttpApiDecodeError for the rest
 * (internal/http/readableErrors.ts). A valid retain, forget or batch skips the Schema walk; any other gets the
 * Schema's error.
 */
const countBody = (
  request: HttpServerRequest.HttpServerRequest,
  decode: (body: unknown) => Effect.Effect<WriteBody, ParseResult.ParseError>
) =>
  readJson(request, MAX_BODY_BYTES).pipe(
    Effect.flatMap((body) =>
      isValidRetain(body, MAX_RETAIN_COUNT) ? Effect.succeed(body ?? {}) : Effect.flatMap(withinDepth(body), decode)
    ),
    Effect.catchIf(ParseResult.isParseError, refailReadable)
  )

/** The compile route's body, read and decoded the same way (no fast path: compileNow is rare). */
const compileBody = (request: HttpServerRequest.HttpServerRequest) =>
  readJson(request, MAX_BODY_BYTES).pipe(
    Effect.flatMap(withinDepth),
    Effect.flatMap(decodeCompile),
    Effect.catchIf(ParseResult.isParseError, refailReadable)
  )

/** A retain's or forget's body as the queue takes it: a plain count, or the options form when it names scopes. */
const writeOf = (body: WriteBody): number | WriteOptions =>
  body.scopes === undefined || body.scopes.length === 0 ? body.count ?? 1 : body

/** The batch route's body, read and decoded the same way (a valid batch skips the Schema walk too). */
const batchBody = (request: HttpServerRequest.HttpServerRequest) =>
  readJson(request, MAX_BODY_BYTES).pipe(
    Effect.flatMap((body) =>
      isValidBatch(body, MAX_BATCH_ITEMS, MAX_RETAIN_COUNT)
        ? Effect.succeed(body as typeof BatchRetainPayload.Type)
        : Effect.flatMap(withinDepth(body), decodeBatch)
    ),
    Effect.catchIf(ParseResult.isParseError, refailReadable)
  )

/** The policy route's body, read and decoded the same way (no fast path: policies change rarely). */
const policyBody = (request: HttpServerRequest.HttpServerRequest) =>
  readJson(request, MAX_BODY_BYTES).pipe(
    Effect.flatMap(withinDepth),
    Effect.flatMap(decodePolicy),
    Effect.catchIf(ParseResult.isParseError, refailReadable)
  )

/** Runs a bank route's effect, its request span (when there is one) naming the bank. */
type ForBank = <A, E, R>(bankId: string, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/** With an application tracer, a bank route's request span names its bank (without one there is no span: `layer`). */
const bankSpans: Effect.Effect<ForBank> = Effect.map(appTracing, (tracing) => {
  return <A, E, R>(bankId: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    tracing ? Effect.zipRight(Effect.annotateCurrentSpan("bankId", bankId), effect) : effect
})

/** When a change may be answered (see `acknowledgement`). */
interface Acknowledgement {
  /**
   * Waits for these banks' writes; call it right after counting them (cluster mode captures the batches then).
   * Undefined when a write is answered as soon as it is counted.
   */
  readonly settle:
    | ((bankIds: Iterable<string>) => Effect.Effect<void, NotReady | StoreUnavailable | BankLimitReached>)
    | undefined
  /** A policy change or compileNow, answered once stored in durable single-node mode. */
  readonly afterChange: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E | StoreUnavailable>
}

/**
 * Cluster mode: a write is answered once the owner of its bank's partition confirmed it (durably, when the runner
 * acknowledges durably). Single node: at once, or once stored in durable mode.
 */
const acknowledgement = (queue: CompileQueueService, options: ApiOptions): Effect.Effect<Acknowledgement> =>
  Effect.map(Effect.serviceOption(WriteAcks), (found) => {
    const acks = Option.getOrUndefined(found)
    // Counted already: a request pipelined behind this one may start while this one waits for the store.
    const stored = Effect.zipRight(inTurnApplied, queue.flush).pipe(
      Effect.timeoutFail({
        duration: DURABLE_ACK_TIMEOUT,
        onTimeout: () => new StoreUnavailable({ message: `not stored within ${Duration.format(DURABLE_ACK_TIMEOUT)}` })
      }),
      Effect.catchTag("BankStoreError", (error) =>
        Effect.fail(new StoreUnavailable({ message: `counted, but not stored: ${error.message}` })))
    )
    const durableHere = acks === undefined && options.ackMode === "durable"
    const settle = acks !== undefined
      ? (bankIds: Iterable<string>) =>
        Effect.mapError(acks.settle(bankIds), (error) =>
          error.refused !== undefined
            ? limitReached({ bankId: error.refused, message: error.message })
            : error.notStored === true
            ? new StoreUnavailable({ message: error.message })
            : new NotReady({ state: "starting", message: error.message }))
      : durableHere
      ? () => stored
      : undefined
    return {
      settle,
      // Policies and compileNow are not routed through WriteAcks: in durable mode they wait for the store alone.
      afterChange: <A, E>(effect: Effect.Effect<A, E>) => durableHere ? Effect.zipLeft(effect, stored) : effect
    }
  })

/** A new bank refused: the queue holds its maximum number of banks. */
const limitReached = (error: { readonly bankId: string; readonly message: string }) =>
  new BankLimitReached({ bankId: error.bankId, message: error.message })

/**
 * After a retain, forget or compileNow the bank exists, unless it was new and refused for the maximum number of banks,
 * or the queue has closed (either way nothing was counted). The state is encoded by hand: the Schema encode of the
 * response would cost more than the rest of the route.
 */
const stateAfterWrite = (
  queue: CompileQueueService,
  bankId: string
): Effect.Effect<HttpServerResponse.HttpServerResponse, NotReady | BankLimitReached> =>
  Effect.flatMap(queue.bankState(bankId), (state) => {
    if (Option.isSome(state)) {
      return Effect.succeed(HttpServerResponse.unsafeJson(encodeBankState(state.value), { status: 202 }))
    }
    const refused = queue.unsafeCheckRoom([bankId])
    return Effect.fail(refused === undefined ? shuttingDown : limitReached(refused))
  })

/** What a bank route that reads its own body is handed. */
interface RawBankRequest {
  readonly path: { readonly bankId: string }
  readonly request: HttpServerRequest.HttpServerRequest
}

/**
 * The write routes: retain, forget and a batch of retains read their body themselves, count it, and answer once the
 * write is confirmed; compile asks for a compile now. Each but the batch answers with the bank's state.
 */
const writeRoutes = (queue: CompileQueueService, forBank: ForBank, ack: Acknowledgement) => {
  const { settle } = ack
  const afterWrite = settle === undefined
    ? (bankId: string) => stateAfterWrite(queue, bankId)
    : (bankId: string) => Effect.zipRight(settle([bankId]), stateAfterWrite(queue, bankId))
  return {
    retain: ({ path, request }: RawBankRequest) =>
      forBank(
        path.bankId,
        Effect.flatMap(countBody(request, decodeRetain), (payload) => {
          queue.unsafeNotifyRetain(path.bankId, writeOf(payload))
          return afterWrite(path.bankId)
        })
      ),
    forget: ({ path, request }: RawBankRequest) =>
      forBank(
        path.bankId,
        Effect.flatMap(countBody(request, decodeForget), (payload) => {
          queue.unsafeNotifyForget(path.bankId, writeOf(payload))
          return afterWrite(path.bankId)
        })
      ),
    retainBatch: ({ request }: { readonly request: HttpServerRequest.HttpServerRequest }) =>
      Effect.flatMap(batchBody(request), (payload): Effect.Effect<
        BatchRetainResponse,
        NotReady | StoreUnavailable | BankLimitReached
      > => {
        // `batchBody` checked the batch whole, and here whether its new banks fit: a rejected batch counts nothing
        // (in cluster mode, nothing in the partitions this runner runs; another owner refuses its own part).
        const refused = queue.unsafeCheckRoom(payload.map((item) => item.bankId))
        if (refused !== undefined) return Effect.fail(limitReached(refused))
        let retains = 0
        for (const item of payload) {
          const count = item.count ?? 1
          queue.unsafeNotifyRetain(item.bankId, writeOf(item))
          retains += count
        }
        const response = new BatchRetainResponse({ accepted: payload.length, retains }, true)
        return settle === undefined
          ? Effect.succeed(response)
          : Effect.as(settle(payload.map((item) => item.bankId)), response)
      }),
    compile: ({ path, request }: RawBankRequest) =>
      forBank(
        path.bankId,
        Effect.flatMap(compileBody(request), (payload) =>
          Effect.zipRight(
            ack.afterChange(queue.compileNow(path.bankId, payload)),
            stateAfterWrite(queue, path.bankId)
          ))
      )
  }
}

/** The policy routes: set (answering the policy now in force), get, delete. */
const policyRoutes = (queue: CompileQueueService, forBank: ForBank, ack: Acknowledgement) => {
  const policyResponse = (bankId: string) =>
    Effect.flatMap(queue.policyOf(bankId), (policy) =>
      Option.isNone(policy)
        ? Effect.fail(new PolicyNotFound({ bankId, message: `bank ${JSON.stringify(bankId)} has no policy` }))
        : Effect.map(
          queue.configFor(bankId),
          (effective) => new PolicyResponse({ policy: policy.value, effective }, true)
        ))
  return {
    setPolicy: ({ path, request }: RawBankRequest) =>
      forBank(
        path.bankId,
        Effect.flatMap(policyBody(request), (payload) =>
          queue.setPolicy(path.bankId, payload).pipe(
            // The payload was decoded by the same Schema: only a closed queue, or a new bank past the maximum number
            // of banks, leaves the policy unset.
            Effect.zipRight(policyResponse(path.bankId)),
            Effect.catchAll((error) => Effect.fail(error._tag === "BankLimitError" ? limitReached(error) : shuttingDown)),
            ack.afterChange
          ))
      ),
    getPolicy: HttpApiBuilder.handler(CompileTriggerApi, "banks", "getPolicy", ({ path }) =>
      forBank(path.bankId, policyResponse(path.bankId))),
    deletePolicy: HttpApiBuilder.handler(CompileTriggerApi, "banks", "deletePolicy", ({ path }) =>
      forBank(path.bankId, ack.afterChange(queue.clearPolicy(path.bankId))))
  }
}

/** The read routes: one bank, a page of banks, the queue's counts, the compiles, the budget. */
const readRoutes = (queue: CompileQueueService, forBank: ForBank) => ({
  getBank: HttpApiBuilder.handler(CompileTriggerApi, "banks", "getBank", ({ path }) =>
    forBank(path.bankId, Effect.flatMap(
      Effect.zip(queue.bankState(path.bankId), queue.nextCompile?.(path.bankId) ?? Effect.succeedNone),
      ([state, next]) =>
        Option.isNone(state)
          ? Effect.fail(new BankNotFound({ bankId: path.bankId, message: `no bank ${JSON.stringify(path.bankId)}` }))
          : Effect.succeed(new BankView({ ...state.value, nextCompile: Option.getOrNull(next) }, true))
    ))),
  listBanks: HttpApiBuilder.handler(CompileTriggerApi, "banks", "listBanks", ({ urlParams }) =>
    Effect.map(
      queue.listBanks({ status: urlParams.status, limit: urlParams.limit, cursor: urlParams.cursor }),
      (page) => new BankPage({ banks: page.banks, nextCursor: page.nextCursor }, true)
    )),
  queue: HttpApiBuilder.handler(CompileTriggerApi, "banks", "queue", () =>
    Effect.zipWith(queue.stats, queue.freshness ?? Effect.succeed(null), (stats, freshness) =>
      new QueueStats({
        pending: stats.pending,
        running: stats.running,
        size: stats.queued,
        capacity: Number.isFinite(stats.capacity) ? stats.capacity : null,
        banks: stats.banks,
        store: stats.store ?? null,
        mode: stats.cluster === true ? "cluster" : "single",
        defaults: queue.config,
        freshness
      }, true))),
  listCompiles: HttpApiBuilder.handler(CompileTriggerApi, "banks", "listCompiles", ({ urlParams }) =>
    Effect.zipWith(
      queue.runningCompiles(urlParams.bankId),
      queue.recentCompiles({ limit: urlParams.limit ?? 100, bankId: urlParams.bankId, outcome: urlParams.outcome }),
      (running, compiles) => new CompileHistoryResponse({ running, compiles }, true)
    )),
  budget: HttpApiBuilder.handler(CompileTriggerApi, "banks", "budget", () => queue.budget)
})

/** `/v1`: the write, policy and read routes over the `CompileQueue`. */
const BanksLive = (options: ApiOptions) => HttpApiBuilder.group(CompileTriggerApi, "banks", (handlers) =>
  Effect.gen(function*() {
    const queue = yield* CompileQueue
    const forBank = yield* bankSpans
    const ack = yield* acknowledgement(queue, options)
    const writes = writeRoutes(queue, forBank, ack)
    const policies = policyRoutes(queue, forBank, ack)
    const reads = readRoutes(queue, forBank)
    return handlers
      .handleRaw("retain", writes.retain)
      .handleRaw("forget", writes.forget)
      .handleRaw("setPolicy", policies.setPolicy)
      .handle("getPolicy", policies.getPolicy)
      .handle("deletePolicy", policies.deletePolicy)
      .handleRaw("retainBatch", writes.retainBatch)
      .handleRaw("compile", writes.compile)
      .handle("getBank", reads.getBank)
      .handle("listBanks", reads.listBanks)
      .handle("queue", reads.queue)
      .handle("listCompiles", reads.listCompiles)
      .handle("budget", reads.budget)
  }))

/** `/readyz` reads the queue's store health at most this long (cluster mode asks every partition's owner). */
const READINESS_READ_TIMEOUT = Duration.seconds(2)

const HealthLive = (options: ApiOptions) => HttpApiBuilder.group(CompileTriggerApi, "health", (handlers) =>
  Effect.gen(function*() {
    const queue = yield* CompileQueue
    const lifecycle = yield* Lifecycle
    const metrics = yield* PrometheusMetrics
    const ok = new Health({ status: "ok" })
    const ready = new Health({ status: "ready" })
    // Ready while flushes work. While they fail: 503 in durable mode (no write can be acknowledged), degraded but
    // ready in memory mode (writes are still counted, and stored once the store is back).
    const readyWithStore = Effect.flatMap(
      Effect.timeoutOption(Effect.map(queue.stats, (stats) => stats.store), READINESS_READ_TIMEOUT),
      (read): Effect.Effect<Health, NotReady> => {
        const store = Option.getOrUndefined(read)
        if (store === undefined) return Effect.succeed(ready)
        if (store.healthy) return Effect.succeed(new Health({ status: "ready", store }, true))
        const message = StoreHealth.describe(store)
        return options.ackMode === "durable"
          ? Effect.fail(new NotReady({ state: "store_unhealthy", message }))
          : Effect.succeed(new Health({ status: "degraded", store, message }, true))
      }
    )
    return handlers
      .handle("healthz", () => Effect.succeed(ok))
      .handle("readyz", () =>
        Effect.flatMap(Ref.get(lifecycle), (state) =>
          state === "ready"
            ? readyWithStore
            : Effect.fail(
              new NotReady({
                state,
                message: state === "starting" ? "the service is starting" : "the service is shutting down"
              })
            )))
      // Reading the queue first publishes its batched retain counter, so the scrape is exact.
      .handle("metrics", () => Effect.zipRight(Effect.zip(queue.stats, queue.freshness ?? Effect.void), metrics.render))
  }))

// --- request guard ------------------------------------------------------------------------------------------------

/**
 * What Node's own parser rejects (malformed request line or headers, headers over the size limit, a request that
 * took too long) gets a JSON answer too, as Node's default handler would give it but with a body.
 */
const answerClientError = (error: Error & { readonly code?: string }, socket: Duplex): void => {
  if (!socket.writable || error.code === "ECONNRESET") return void socket.destroy()
  const [status, reason] = error.code === "HPE_HEADER_OVERFLOW"
    ? [431, "Request Header Fields Too Large"]
    : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
    ? [408, "Request Timeout"]
    : [400, "Bad Request"]
  const body = JSON.stringify({ _tag: "MalformedRequest", message: `the HTTP request is malformed (${reason})` })
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `connection: close\r\n\r\n${body}`,
    // Then closed, not just half-closed: a client that never closes its side (a slowloris, a silent socket) would
    // otherwise keep the connection, and its file descriptor, for good.
    () => socket.destroy()
  )
}

// --- server -------------------------------------------------------------------------------------------------------

/**
 * The API with its handlers, auth and docs, for `HttpApiBuilder.serve` (or `HttpApiBuilder.toWebHandler` in tests).
 *
 * @since 0.1.0
 */
export const apiLayer = (
  apiToken: Option.Option<Redacted.Redacted>,
  options: ApiOptions = {}
): Layer.Layer<HttpApi.Api, never, CompileQueue | Lifecycle> =>
  HttpApiBuilder.api(CompileTriggerApi).pipe(
    Layer.provide([BanksLive(options), HealthLive(options)]),
    Layer.provide([authorizationLayer(apiToken), PrometheusMetrics.layer]),
    // Decode errors of path and query parameters answered as readable as those of bodies.
    Layer.merge(readableErrorsLayer),
    // find-my-way 404s a parameter longer than this (its default, 100, a valid 200-character bank id): any length
    // reaches the route, which answers an invalid bank id 400 after auth. Node's header limit bounds the URL.
    Layer.merge(HttpRouter.setRouterConfig({ maxParamLength: Number.MAX_SAFE_INTEGER }))
  )

/**
 * The service's port, bound by `listen` (before the queue and its store are built) and taken over by `serve`.
 *
 * @since 0.1.0
 */
export class Listening extends Context.Tag("effect-compile-trigger/Listening")<Listening, {
  /** Node's server, listening. */
  readonly server: Server
  /** The platform's server on it. */
  readonly httpServer: HttpServer.HttpServer
  /** Ends the answers given until the API serves (see `listen`). */
  readonly served: Effect.Effect<void>
}>() {}

/**
 * Binds `host:port` (or fails with `ServeError`: the port is in use, say) and answers there until `serve` takes over:
 * `/healthz` 200, anything else `503 NotReady` with `state: "starting"` — while the queue restores its banks, for
 * instance. The service builds it first, so that a second instance on a port in use fails before it opens the store.
 *
 * @since 0.1.0
 */
export const listen = (options: ServerOptions): Layer.Layer<Listening, HttpServerError.ServeError> =>
  Layer.scoped(Listening, Effect.gen(function*() {
    const server = yield* guardedServer(options)
    server.on("clientError", answerClientError)
    const httpServer = yield* NodeHttpServer.make(() => server, { host: options.host, port: options.port })
    // Runs before the platform's own close, which waits for every connection: when the start fails or is stopped
    // before `serve` (which drains requests gracefully), a silent connection must not hold the exit up.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (server.listening) server.close()
        server.closeAllConnections()
      })
    )
    const detach = answerWhileStarting(server)
    return { server, httpServer, served: Effect.sync(detach) }
  }))

/**
 * Serves the API on the port `listen` bound, with `/openapi.json`, Swagger UI at `/docs` and the dashboard at `/` and
 * `/ui` (docs/service.md, "Dashboard"). Once built it is ready; when its scope closes it turns not-ready, stops
 * accepting connections, lets requests already received finish (up to `requestDrainTimeout`), then returns so the
 * `CompileQueue` beneath it can shut down gracefully.
 *
 * @since 0.1.0
 */
export const serve = (options: ServerOptions): Layer.Layer<never, never, CompileQueue | Listening> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const { httpServer, served, server } = yield* Listening
    const lifecycle = yield* Ref.make<Readiness>("starting")
    const drainTimeout = Duration.decode(options.requestDrainTimeout ?? "5 seconds")

    const serveApi = HttpApiBuilder.serve((app) => inConnectionOrder(guardRequests(app))).pipe(
      Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
      Layer.provide(Dashboard.layer),
      Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
      Layer.provide(apiLayer(options.apiToken, { ackMode: options.ackMode })),
      Layer.provide([Layer.succeed(HttpServer.HttpServer, httpServer), NodeHttpServer.layerContext]),
      // Any body HttpApi itself reads is capped at 1 MiB too (the retain routes read theirs with the same cap).
      Layer.provide(Layer.succeed(HttpIncomingMessage.MaxBodySize, Option.some(FileSystem.Size(MAX_BODY_BYTES)))),
      Layer.provide(Layer.succeed(Lifecycle, lifecycle))
    )

    const stop = Effect.gen(function*() {
      yield* Ref.set(lifecycle, "shutting_down")
      yield* Effect.logInfo("shutting down: not ready, no new connections; finishing requests, then compiles")
      const closed = yield* Effect.async<void>((resume) => {
        if (!server.listening) return resume(Effect.void)
        server.close(() => resume(Effect.void))
        server.closeIdleConnections()
      }).pipe(Effect.interruptible, Effect.timeout(drainTimeout), Effect.option)
      if (Option.isNone(closed)) {
        yield* Effect.logWarning(`requests still open after ${Duration.format(drainTimeout)}: closing their connections`)
      }
      server.closeAllConnections()
    })

    const ready = Layer.scopedDiscard(Effect.gen(function*() {
      yield* Effect.addFinalizer(() => stop)
      yield* served
      yield* Ref.set(lifecycle, "ready")
      const address = server.address()
      const where = address !== null && typeof address === "object"
        ? `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`
        : String(address)
      yield* Effect.logInfo(
        `listening on ${where} (docs ${where}/docs, auth ${Option.isSome(options.apiToken) ? "on" : "off"})`
      )
    }))

    // A request span costs several µs (the URL and every header become attributes); with Effect's built-in tracer
    // nothing collects it, so requests are traced only when the application installed a tracer of its own.
    const tracing = yield* appTracing
    return Layer.provide(ready, tracing ? serveApi : HttpMiddleware.withTracerDisabledWhen(serveApi, () => true))
  }))

/**
 * `serve` on the port `listen` binds, bound once the `CompileQueue` is built. The service itself binds first (`listen`
 * beneath the queue, `serve` above it), so that the port answers while the queue restores.
 *
 * @since 0.1.0
 */
export const layer = (options: ServerOptions): Layer.Layer<never, HttpServerError.ServeError, CompileQueue> =>
  serve(options).pipe(Layer.provide(listen(options)))
