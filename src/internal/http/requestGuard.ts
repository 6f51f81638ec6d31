/**
 * Around the whole app: every error answer has a JSON body with a documented `_tag`, an answer given before the
 * request's body was read closes the connection (a refused body is never read, however large it says it is), a
 * client's error is logged at debug level only, and a bug is logged with its cause. The checks of a body itself run in
 * the routes that take one (body.ts), after auth: an unauthenticated request is answered 401 whatever it carries.
 *
 * @internal
 */
import { HttpApp, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Cause, Chunk, Effect } from "effect"
import { MAX_BODY_BYTES } from "../../CompileTriggerApi.js"
import { incomingMessage } from "./body.js"
import { closeLingering } from "./connections.js"

const jsonError = (status: number, tag: string, message: string, extra: Record<string, unknown> = {}) =>
  HttpServerResponse.unsafeJson({ _tag: tag, message, ...extra }, { status })

/** The request line as a log line or an error message shows it: the URL cut like any quoted value. */
const requestLine = ({ method, url }: HttpServerRequest.HttpServerRequest): string =>
  `${method} ${url.length > 200 ? `${url.slice(0, 200)}… (${url.length} characters)` : url}`

/** A JSON body for an error answer the platform left empty: an unknown route, a defect, a body it could not read. */
const withJsonBody = (
  request: HttpServerRequest.HttpServerRequest,
  response: HttpServerResponse.HttpServerResponse
): HttpServerResponse.HttpServerResponse => {
  if (response.body._tag !== "Empty") return response
  if (response.status === 404) return jsonError(404, "RouteNotFound", `no route ${requestLine(request)}`)
  if (response.status >= 500) {
    return jsonError(response.status, "InternalServerError", "the request failed unexpectedly (the service logged it)")
  }
  if (response.status === 413) {
    return jsonError(413, "PayloadTooLarge", `the request body is larger than ${MAX_BODY_BYTES} bytes (1 MiB)`, {
      limitBytes: MAX_BODY_BYTES
    })
  }
  return jsonError(response.status, "MalformedRequest", `the request could not be read (HTTP ${response.status})`)
}

/**
 * Answered before its body arrived whole (a 401, a 413 by `Content-Length`): the connection closes after the answer
 * instead of Node draining the rest of the body to keep it alive; it lingers a moment, so that the client reads the
 * answer rather than a reset.
 */
const closingIfUnread = (
  request: HttpServerRequest.HttpServerRequest,
  response: HttpServerResponse.HttpServerResponse
): HttpServerResponse.HttpServerResponse => {
  const source = incomingMessage(request)
  if (source === undefined || source.complete) return response
  closeLingering(source.socket)
  return HttpServerResponse.setHeader(response, "connection", "close")
}

/**
 * Runs just before an answer is written, on the error path as well (a middleware sees errors only after the platform
 * chose their answer). A success passes at the cost of one comparison.
 */
const errorAnswers = HttpApp.appendPreResponseHandler((request, response) => {
  if (response.status < 400) return Effect.succeed(response)
  const answer = closingIfUnread(request, withJsonBody(request, response))
  return answer.status >= 500
    ? Effect.succeed(answer)
    : Effect.as(Effect.logDebug(`${requestLine(request)} answered ${answer.status}`), answer)
})

/** A platform `RequestError` (a body it could not read, a client gone mid-request) is the client's doing, not a bug. */
const isClientDefect = (defect: unknown): boolean =>
  HttpServerResponse.isServerResponse(defect) ||
  (HttpServerError.isServerError(defect) && defect._tag === "RequestError")

/** A defect that is neither a response HttpApi chose nor the client's doing: a bug. */
const isBug = (cause: Cause.Cause<unknown>): boolean =>
  Chunk.some(Cause.defects(cause), (defect) => !isClientDefect(defect))

/** The guard around the app (see the module's comment). */
export const guardRequests = (app: HttpApp.Default): HttpApp.Default =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.zipRight(errorAnswers, app).pipe(
      Effect.tapErrorCause((cause) =>
        isBug(cause) ? Effect.logError(`${requestLine(request)} failed unexpectedly`, cause) : Effect.void
      )
    ))
