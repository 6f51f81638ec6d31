/**
 * A `CompileEngine` that calls the memory system's compile endpoint over HTTP: `POST {url}` with the `CompileJob`
 * (`{ "bankId", "reason", "memories", "forgets", "attempt" }`).
 *
 * @since 0.1.0
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Duration, Effect, Layer, Option, ParseResult, type Redacted, Schema } from "effect"
import { CompileEngine, CompileError, type CompileJob, CompileResult } from "./CompileEngine.js"

/**
 * @since 0.1.0
 */
export interface WebhookEngineOptions {
  readonly url: URL | string
  /** Sent as `Authorization: Bearer <token>`. */
  readonly token?: Redacted.Redacted | undefined
  /** A call longer than this fails with a `CompileError` (default 5 minutes). */
  readonly timeout?: Duration.DurationInput | undefined
}

const decodeResult = Schema.decodeUnknown(CompileResult)

/** How much of an error response body a `CompileError` quotes. */
const QUOTE_CHARS = 200

const quote = (text: string): string => {
  const flat = text.replace(/\s+/g, " ").trim()
  return flat.length > QUOTE_CHARS ? `${flat.slice(0, QUOTE_CHARS)}…` : flat
}

/**
 * Builds the engine on the `HttpClient` in context. A 2xx answer's JSON body is decoded as a `CompileResult` (counts
 * default to 0, `bankId` to the requested one; an empty body is an empty result). A non-2xx status, a body that is
 * not a JSON object or not a valid result, a transport error or the timeout fail with a `CompileError` that says which.
 *
 * @since 0.1.0
 */
export const make = (
  options: WebhookEngineOptions
): Effect.Effect<CompileEngine["Type"], never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const url = options.url.toString()
    const timeout = Duration.decode(options.timeout ?? "5 minutes")
    const authorize = options.token === undefined
      ? (request: HttpClientRequest.HttpClientRequest) => request
      : HttpClientRequest.bearerToken(options.token)

    const run = (bankId: string, job: CompileJob): Effect.Effect<CompileResult, CompileError> => {
      const fail = (message: string) => new CompileError({ bankId, message })
      return HttpClientRequest.post(url).pipe(
        HttpClientRequest.acceptJson,
        HttpClientRequest.bodyUnsafeJson({
          bankId,
          reason: job.reason,
          memories: job.memories,
          forgets: job.forgets,
          attempt: job.attempt
        }),
        authorize,
        client.execute,
        Effect.mapError((error) => fail(`webhook request failed: ${error.message}`)),
        Effect.flatMap((response) =>
          Effect.flatMap(
            Effect.mapError(response.text, (error) => fail(`webhook response could not be read: ${error.message}`)),
            (text): Effect.Effect<CompileResult, CompileError> => {
              if (response.status < 200 || response.status > 299) {
                return Effect.fail(
                  fail(`webhook returned HTTP ${response.status}${text.trim() === "" ? "" : `: ${quote(text)}`}`)
                )
              }
              if (text.trim() === "") return Effect.succeed(new CompileResult({ bankId }))
              let body: unknown
              try {
                body = JSON.parse(text)
              } catch {
                return Effect.fail(fail(`webhook returned HTTP ${response.status} with invalid JSON: ${quote(text)}`))
              }
              if (typeof body !== "object" || body === null || Array.isArray(body)) {
                return Effect.fail(fail(`webhook returned HTTP ${response.status} with a body that is not a JSON object`))
              }
              return decodeResult({ bankId, ...body }).pipe(
                Effect.mapError((error) =>
                  fail(`webhook returned an invalid CompileResult: ${ParseResult.TreeFormatter.formatErrorSync(error)}`)
                )
              )
            }
          )
        ),
        Effect.scoped,
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => fail(`webhook timed out after ${Duration.format(timeout)}`)
        })
      )
    }
    return CompileEngine.of({ run })
  })

/**
 * The webhook engine as a layer; provide an `HttpClient` (e.g. `NodeHttpClient.layer`).
 *
 * @since 0.1.0
 */
export const layer = (options: WebhookEngineOptions): Layer.Layer<CompileEngine, never, HttpClient.HttpClient> =>
  Layer.effect(
    CompileEngine,
    make(options).pipe(
      Effect.tap(() =>
        Effect.logInfo(
          `engine: webhook POST ${redactUrl(options.url)}${options.token === undefined ? "" : " (bearer token set)"}`
        )
      )
    )
  )

/** The URL without credentials or query, for logs. */
const redactUrl = (url: URL | string): string =>
  Option.match(Option.liftThrowable(() => new URL(url.toString()))(), {
    onNone: () => "(invalid URL)",
    onSome: (parsed) => `${parsed.origin}${parsed.pathname}`
  })
