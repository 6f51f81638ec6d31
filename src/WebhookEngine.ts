/**
 * A `CompileEngine` that calls the memory system's compile endpoint over HTTP: `POST {url}` with the `CompileJob`
 * (`{ "bankId", "reason", "memories", "forgets", "attempt", "fencingToken", "memoryWait" }`), optionally signed, reading a bounded
 * answer; a 409 is the endpoint refusing a stale compile. A compile cut off can be told to a cancel URL.
 *
 * @since 0.1.0
 */
import { HttpClient, type HttpClientError, HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { Clock, Duration, Effect, Either, FiberSet, Layer, Option, Redacted, type Scope, Stream } from "effect"
import { createHmac } from "node:crypto"
import { CompileEngine, CompileError, type CompileJob, CompileResult } from "./CompileEngine.js"
import * as FencingToken from "./FencingToken.js"
import { isJsonMediaType, MAX_JSON_DEPTH, nestedDeeperThan } from "./internal/http/jsonGuards.js"
import { readAnswer } from "./internal/http/webhookAnswer.js"

/**
 * @since 0.1.0
 */
export interface WebhookEngineOptions {
  readonly url: URL | string
  /** Sent as `Authorization: Bearer <token>`. */
  readonly token?: Redacted.Redacted | undefined
  /** A call longer than this fails with a `CompileError` (default 5 minutes). */
  readonly timeout?: Duration.DurationInput | undefined
  /** Largest answer body read; a larger one fails the compile and the connection is dropped (default 1 MiB). */
  readonly maxResponseBytes?: number | undefined
  /** The answer's body must arrive within this long of its headers (default 30 seconds). */
  readonly readTimeout?: Duration.DurationInput | undefined
  /** When set, every call is signed (see `signatureHeaders`). */
  readonly secret?: Redacted.Redacted | undefined
  /** During a rotation: the secret being retired; calls carry a signature with each. */
  readonly previousSecret?: Redacted.Redacted | undefined
  /**
   * When set, a compile cut off while its call is in flight (the timeout, shutdown, its bank handed to another node)
   * is told here: `POST` of `{ "bankId", "fencingToken" }`, signed like a compile call, once, best effort (see
   * `CANCEL_TIMEOUT`). Without it, the aborted call is the only notice.
   */
  readonly cancelUrl?: URL | string | undefined
}

/** @since 0.1.0 */
export const defaultMaxResponseBytes = 1024 * 1024

/** @since 0.1.0 */
export const defaultReadTimeout: Duration.DurationInput = "30 seconds"

/**
 * The header with the compile's fencing token, `<epoch>.<sequence>` (see `FencingToken.format` / `parse`), on compile
 * and cancel calls alike.
 *
 * @since 0.1.0
 */
export const FENCING_TOKEN_HEADER = "compile-fencing-token"

/**
 * A cancel call (`cancelUrl`) gets this long; it is never retried.
 *
 * @since 0.1.0
 */
export const CANCEL_TIMEOUT: Duration.Duration = Duration.seconds(5)

/**
 * The header with the call's Unix time in seconds.
 *
 * @since 0.1.0
 */
export const TIMESTAMP_HEADER = "webhook-timestamp"

/**
 * The header with the signatures: `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`, comma-separated when a previous
 * secret is set (the current secret's first).
 *
 * @since 0.1.0
 */
export const SIGNATURE_HEADER = "webhook-signature"

/**
 * The signing headers of one call: `timestamp` (Unix seconds) and the raw body, signed with each secret.
 *
 * @since 0.1.0
 */
export const signatureHeaders = (
  body: string,
  timestamp: number,
  secrets: ReadonlyArray<Redacted.Redacted>
): Record<string, string> => ({
  [TIMESTAMP_HEADER]: String(timestamp),
  [SIGNATURE_HEADER]: secrets
    .map((secret) => `v1=${createHmac("sha256", Redacted.value(secret)).update(`${timestamp}.${body}`).digest("hex")}`)
    .join(",")
})

/** How much of an error response body a `CompileError` quotes. */
const QUOTE_CHARS = 200

const quote = (text: string): string => {
  const flat = text.replace(/\s+/g, " ").trim()
  return flat.length > QUOTE_CHARS ? `${flat.slice(0, QUOTE_CHARS)}…` : flat
}

type Fail = (message: string) => CompileError

/**
 * The answer's body as text, read as a stream so that the limit holds however the body comes (a `Content-Length` is
 * checked first, a chunked body while it arrives). Over the limit or past `readTimeout` it stops reading; the
 * request's scope then closes the connection.
 */
const readBody = (
  response: HttpClientResponse.HttpClientResponse,
  maxBytes: number,
  readTimeout: Duration.Duration,
  fail: Fail
): Effect.Effect<string, CompileError> => {
  const tooLarge = fail(
    `webhook answer (HTTP ${response.status}) is larger than ${maxBytes} bytes (COMPILE_WEBHOOK_MAX_RESPONSE); not read`
  )
  const declared = Number(response.headers["content-length"])
  if (declared > maxBytes) return Effect.fail(tooLarge)
  return response.stream.pipe(
    Stream.mapError((error) => fail(`webhook answer could not be read: ${error.message}`)),
    Stream.runFoldEffect({ chunks: [] as Array<Uint8Array>, size: 0 }, (read, chunk) => {
      read.size += chunk.length
      if (read.size > maxBytes) return Effect.fail(tooLarge)
      read.chunks.push(chunk)
      return Effect.succeed(read)
    }),
    Effect.map((read) => Buffer.concat(read.chunks, read.size).toString("utf8")),
    Effect.timeoutFail({
      duration: readTimeout,
      onTimeout: () =>
        fail(`webhook answer's body did not arrive within ${Duration.format(readTimeout)} of its headers`)
    })
  )
}

/** What a 2xx answer's body must be, for the error that says it is not. */
const EXPECTED_BODY = `expected an object like {"scopesCompiled":["a"],"tokensUsed":1500} or an empty body`

const kindOf = (value: unknown): string =>
  Array.isArray(value) ? "an array" : typeof value === "string" ? "a string" : `a ${typeof value}`

/**
 * A 2xx answer's body as a `CompileResult`; anything else a one-line `CompileError` saying what was wrong. The body
 * counts, not its label: JSON sent as `text/plain` or `text/html` (Express's `res.send`, Flask's `json.dumps`) is read.
 */
const interpret = (
  job: CompileJob,
  response: HttpClientResponse.HttpClientResponse,
  text: string,
  fail: Fail
): Effect.Effect<CompileResult, CompileError> => {
  const { bankId } = job
  const { status } = response
  if (status >= 300 && status < 400) {
    const location = response.headers.location
    return Effect.fail(
      fail(`webhook answered with a redirect (HTTP ${status}${location ? ` to ${quote(location)}` : ""}), which is not followed`)
    )
  }
  const detail = text.trim() === "" ? "" : `: ${quote(text)}`
  if (status === 409) {
    return Effect.fail(
      fail(`webhook refused the compile as stale (fencing token ${FencingToken.format(job.fencingToken)})${detail}`)
    )
  }
  if (status < 200 || status > 299) return Effect.fail(fail(`webhook returned HTTP ${status}${detail}`))
  let body: unknown
  try {
    body = text.trim() === "" ? null : JSON.parse(text)
  } catch {
    const contentType = response.headers["content-type"]
    return Effect.fail(fail(
      contentType !== undefined && !isJsonMediaType(contentType)
        ? `webhook returned HTTP ${status} with content-type ${quote(contentType)}, not JSON: ${quote(text)}`
        : `webhook returned HTTP ${status} with invalid JSON: ${quote(text)}`
    ))
  }
  // `null` is what a handler that returns nothing sends (FastAPI's `None`): nothing to report.
  if (body === null) return Effect.succeed(new CompileResult({ bankId }))
  if (typeof body !== "object" || Array.isArray(body)) {
    return Effect.fail(fail(`webhook answer (HTTP ${status}) is not a JSON object: got ${kindOf(body)}; ${EXPECTED_BODY}`))
  }
  // A refused field is quoted through JSON.stringify, which recurses: the depth is bounded first.
  if (nestedDeeperThan(body)) {
    return Effect.fail(fail(`webhook returned HTTP ${status} with JSON nested deeper than ${MAX_JSON_DEPTH} levels`))
  }
  return Either.match(readAnswer(bankId, body as Record<string, unknown>), {
    onLeft: (problems) => Effect.fail(fail(`webhook answer (HTTP ${status}) is not a valid compile result: ${problems}`)),
    onRight: Effect.succeed
  })
}

/** A client whose responses live in the caller's scope: closing it closes an unread response's connection. */
type ScopedClient = HttpClient.HttpClient.With<HttpClientError.HttpClientError, Scope.Scope>

/** What the calls of one engine share: its client, and how each call is authorized and signed. */
interface Caller {
  readonly client: ScopedClient
  /** A `POST` of the JSON `body` to `url`, carrying `token` in `compile-fencing-token`, signed when secrets are set. */
  readonly post: (
    url: string,
    body: string,
    token: FencingToken.FencingToken
  ) => Effect.Effect<HttpClientRequest.HttpClientRequest>
}

const makeCaller = (client: ScopedClient, options: WebhookEngineOptions): Caller => {
  const secrets = [options.secret, options.previousSecret].filter((secret) => secret !== undefined)
  const authorize = options.token === undefined
    ? (request: HttpClientRequest.HttpClientRequest) => request
    : HttpClientRequest.bearerToken(options.token)
  const post = (url: string, body: string, token: FencingToken.FencingToken) => {
    const base = HttpClientRequest.post(url).pipe(
      HttpClientRequest.acceptJson,
      HttpClientRequest.bodyText(body, "application/json"),
      HttpClientRequest.setHeader(FENCING_TOKEN_HEADER, FencingToken.format(token)),
      authorize
    )
    if (secrets.length === 0) return Effect.succeed(base)
    return Effect.map(
      Clock.currentTimeMillis,
      (now) => HttpClientRequest.setHeaders(base, signatureHeaders(body, Math.floor(now / 1000), secrets))
    )
  }
  return { client, post }
}

/** The token as the bodies carry it: its two fields only. */
const tokenJson = (token: FencingToken.FencingToken) => ({ epoch: token.epoch, sequence: token.sequence })

/**
 * Tells `cancelUrl` that the compile of `bankId` under `token` was cut off: one call within `CANCEL_TIMEOUT`, never
 * retried; how it went is only logged (debug when answered 2xx, a warning otherwise). Interruptible, though forked
 * from an interruption's (uninterruptible) cleanup, so that its timeout and the engine's close can stop it.
 */
const cancelCall = (
  caller: Caller,
  cancelUrl: string,
  bankId: string,
  token: FencingToken.FencingToken
): Effect.Effect<void> => {
  const label = `webhook cancel call (fencing token ${FencingToken.format(token)})`
  return caller.post(cancelUrl, JSON.stringify({ bankId, fencingToken: tokenJson(token) }), token).pipe(
    Effect.flatMap(caller.client.execute),
    Effect.scoped,
    Effect.timeoutFail({
      duration: CANCEL_TIMEOUT,
      onTimeout: () => ({ message: `no answer within ${Duration.format(CANCEL_TIMEOUT)}` })
    }),
    Effect.matchEffect({
      onFailure: (error) => Effect.logWarning(`${label} failed: ${error.message}`),
      onSuccess: (response) =>
        response.status >= 200 && response.status < 300
          ? Effect.logDebug(`${label} answered HTTP ${response.status}`)
          : Effect.logWarning(`${label} answered HTTP ${response.status}`)
    }),
    Effect.annotateLogs("bankId", bankId),
    Effect.interruptible
  )
}

/** Runs a cancel call without holding up the interruption that sent it. */
type Spawn = (cancel: Effect.Effect<void>) => Effect.Effect<void>

/** The compile call, its answer read and interpreted; a call cut off tells `cancelUrl` when there is one. */
const compileCall = (caller: Caller, options: WebhookEngineOptions, spawn: Spawn) => {
  const url = options.url.toString()
  const cancelUrl = options.cancelUrl?.toString()
  const readTimeout = Duration.decode(options.readTimeout ?? defaultReadTimeout)
  const maxBytes = options.maxResponseBytes ?? defaultMaxResponseBytes
  return (bankId: string, job: CompileJob, fail: Fail): Effect.Effect<CompileResult, CompileError> => {
    const body = JSON.stringify({
      bankId,
      reason: job.reason,
      memories: job.memories,
      forgets: job.forgets,
      attempt: job.attempt,
      fencingToken: tokenJson(job.fencingToken),
      // `{ meanSeconds, oldestSeconds }` of the memories this compile consumes; null when it consumes none.
      memoryWait: job.memoryWait ?? null,
      // Absent (undefined drops the key) when no write the compile consumes named a scope.
      scopes: job.scopes
    })
    const call = caller.post(url, body, job.fencingToken).pipe(
      Effect.flatMap(caller.client.execute),
      Effect.mapError((error) => fail(`webhook request failed: ${error.message}`)),
      Effect.flatMap((response) =>
        Effect.flatMap(
          // A redirect's body is never read.
          response.status >= 300 && response.status < 400
            ? Effect.succeed("")
            : readBody(response, maxBytes, readTimeout, fail),
          (text) => interpret(job, response, text, fail)
        )
      ),
      Effect.scoped
    )
    // After the scope closed (the call aborted): the receiver hears of it in that order.
    return cancelUrl === undefined
      ? call
      : Effect.onInterrupt(call, () => spawn(cancelCall(caller, cancelUrl, bankId, job.fencingToken)))
  }
}

/** The engine, its cancel calls run by `spawn`. */
const build = (
  options: WebhookEngineOptions,
  spawn: Spawn
): Effect.Effect<CompileEngine["Type"], never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    // Scoped: when a call ends, however it ends, its connection is closed unless the body was read to the end.
    const caller = makeCaller(HttpClient.withScope(yield* HttpClient.HttpClient), options)
    const timeout = Duration.decode(options.timeout ?? "5 minutes")
    const call = compileCall(caller, options, spawn)
    const run = (bankId: string, job: CompileJob): Effect.Effect<CompileResult, CompileError> => {
      const fail: Fail = (message) => new CompileError({ bankId, message })
      // The timeout interrupts the call: a timed-out call is cut off like any other.
      return Effect.timeoutFail(call(bankId, job, fail), {
        duration: timeout,
        onTimeout: () => fail(`webhook timed out after ${Duration.format(timeout)}`)
      })
    }
    return CompileEngine.of({ run })
  })

/**
 * Builds the engine on the `HttpClient` in context. Each call carries the job's fencing token, in the body and in the
 * `compile-fencing-token` header. A 2xx answer's JSON body is read as a `CompileResult` (counts default to 0, `bankId`
 * to the requested one; an empty body, `{}` or `null` is an empty result, a `null` field is an absent one, unknown
 * fields are ignored; docs/service.md has the whole contract). A 409 is the endpoint refusing the compile as stale
 * (`webhook refused the compile as stale (fencing token 7.12): …`). Another non-2xx status, a redirect (never
 * followed), a body that is not JSON, not a JSON object or not a valid result, a body over `maxResponseBytes` or
 * slower than `readTimeout`, a transport error or the timeout fail with a one-line `CompileError` that says which.
 *
 * With `cancelUrl`, a call cut off (interrupted, or timed out) sends its cancel call detached from any scope; `layer`
 * instead waits for those still running when it is closed.
 *
 * @since 0.1.0
 */
export const make = (
  options: WebhookEngineOptions
): Effect.Effect<CompileEngine["Type"], never, HttpClient.HttpClient> =>
  build(options, (cancel) => Effect.asVoid(Effect.forkDaemon(cancel)))

/**
 * The webhook engine as a layer; provide an `HttpClient` (e.g. `NodeHttpClient.layer`). Closing it waits for the
 * cancel calls still running (each at most `CANCEL_TIMEOUT`): those of the compiles a shutdown cut off get out.
 *
 * @since 0.1.0
 */
export const layer = (options: WebhookEngineOptions): Layer.Layer<CompileEngine, never, HttpClient.HttpClient> =>
  Layer.scoped(
    CompileEngine,
    Effect.gen(function*() {
      const cancels = yield* FiberSet.make<void>()
      // Added after the set's own finalizer, so run before it: the calls finish rather than being interrupted.
      yield* Effect.addFinalizer(() => FiberSet.awaitEmpty(cancels))
      const engine = yield* build(options, (cancel) => Effect.asVoid(FiberSet.run(cancels, cancel)))
      yield* Effect.logInfo(`engine: webhook POST ${describe(options)}`)
      return engine
    })
  )

/** The endpoint and its protections for the startup log: no secret, no token, no credentials in the URL. */
const describe = (options: WebhookEngineOptions): string => {
  const notes = [
    ...(options.token === undefined ? [] : ["bearer token set"]),
    ...(options.secret === undefined ? [] : [options.previousSecret === undefined ? "signed" : "signed with the current and the previous secret"]),
    `answers up to ${options.maxResponseBytes ?? defaultMaxResponseBytes} bytes`,
    ...(options.cancelUrl === undefined ? [] : [`cancel calls to ${redactUrl(options.cancelUrl)}`])
  ]
  return `${redactUrl(options.url)} (${notes.join(", ")})`
}

/** The URL without credentials or query, for logs. */
const redactUrl = (url: URL | string): string =>
  Option.match(Option.liftThrowable(() => new URL(url.toString()))(), {
    onNone: () => "(invalid URL)",
    onSome: (parsed) => `${parsed.origin}${parsed.pathname}`
  })
