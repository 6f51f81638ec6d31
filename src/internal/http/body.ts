/**
 * Reads a JSON request body for the routes that take one (retain, forget, batch, policy), after auth: the same checks
 * for each — a declared length over the limit refused before reading, a JSON media type, the size counted while
 * reading, JSON syntax, and (before a Schema sees it) the nesting depth. HttpApi's own payload reading (`request.json`:
 * a `runSync`, an `acquireUseRelease`, a string decoder, a destroy per request) costs more than everything else on the
 * retain route together — about 40 % of a bare handler's throughput — and answers bad JSON with an empty 400 after
 * logging a defect. This reads Node's `IncomingMessage` directly; the routes then decode the parsed value with their
 * Schema. A body the fast paths reject passes `withinDepth` first: Schema's error messages print the value
 * recursively, and thousands of nested arrays overflowed the stack there (a 500 with an empty body).
 *
 * @internal
 */
import type { HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect } from "effect"
import type { IncomingMessage } from "node:http"
import { MalformedRequest, PayloadTooLarge } from "../../CompileTriggerApi.js"
import { quote } from "../core/inputRules.js"
import { isJsonMediaType, MAX_JSON_DEPTH, nestedDeeperThan } from "./jsonGuards.js"

const tooLarge = (maxBytes: number) =>
  new PayloadTooLarge({ message: `the request body is larger than ${maxBytes} bytes (1 MiB)`, limitBytes: maxBytes })

/** V8's reason a text is not JSON, as one short line: it quotes the text, line breaks and all. */
const syntaxError = (error: unknown): string => {
  if (!(error instanceof Error)) return ""
  const line = error.message.replace(/[\u0000-\u001f\u007f]+/g, " ")
  return `: ${line.length > 200 ? `${line.slice(0, 200)}…` : line}`
}

const parse = (text: string): Effect.Effect<unknown, MalformedRequest> => {
  if (text.trim() === "") return Effect.succeed(undefined)
  try {
    return Effect.succeed(JSON.parse(text))
  } catch (error) {
    return Effect.fail(new MalformedRequest({ message: `the request body is not valid JSON${syntaxError(error)}` }))
  }
}

/**
 * `value` itself when it nests at most `MAX_JSON_DEPTH` levels, else a `MalformedRequest` saying so. Run before a
 * Schema decodes a parsed body: its error formatting recurses into the value.
 */
export const withinDepth = (value: unknown): Effect.Effect<unknown, MalformedRequest> =>
  nestedDeeperThan(value)
    ? Effect.fail(
      new MalformedRequest({ message: `the request body nests arrays or objects deeper than ${MAX_JSON_DEPTH} levels` })
    )
    : Effect.succeed(value)

/** Node's request under `request`, when it runs on Node's server. */
export const incomingMessage = (request: HttpServerRequest.HttpServerRequest): IncomingMessage | undefined => {
  const source: unknown = NodeHttpServerRequest.toIncomingMessage(request)
  return typeof source === "object" && source !== null && "on" in source ? source as IncomingMessage : undefined
}

const readNode = (source: IncomingMessage, maxBytes: number): Effect.Effect<string, PayloadTooLarge> =>
  Effect.async<string, PayloadTooLarge>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    let done = false
    const onData = (chunk: Buffer) => {
      if (done) return // over the limit: the rest is drained and dropped
      size += chunk.length
      if (size > maxBytes) {
        done = true
        chunks.length = 0
        resume(Effect.fail(tooLarge(maxBytes)))
      } else {
        chunks.push(chunk)
      }
    }
    const onEnd = () => {
      if (done) return
      done = true
      resume(Effect.succeed(chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8")))
    }
    // An aborted request ends its fiber (the server interrupts it); nothing to resume then.
    const onError = () => {
      done = true
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return Effect.sync(() => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    })
  })

/**
 * What the headers alone refuse: a declared length over `maxBytes` (413, the body is never read) or a body of a
 * content type other than JSON (`application/json`, `application/…+json`; a missing one is taken as JSON).
 */
const refusedByHeaders = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): MalformedRequest | PayloadTooLarge | undefined => {
  const length = Number(request.headers["content-length"] ?? 0)
  if (length > maxBytes) return tooLarge(maxBytes)
  const type = request.headers["content-type"]
  // A chunked body has no Content-Length but is a body all the same.
  const hasBody = length > 0 || request.headers["transfer-encoding"] !== undefined
  return hasBody && type !== undefined && !isJsonMediaType(type)
    ? new MalformedRequest({
      message: `the request body must be JSON (content-type: application/json), got ${quote(type)}`
    })
    : undefined
}

/**
 * The body parsed as JSON; an empty body is `undefined` (a JSON `null` is `null`). Fails with `PayloadTooLarge` past
 * `maxBytes` and with `MalformedRequest` when it is not JSON or says another content type.
 */
export const readJson = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): Effect.Effect<unknown, MalformedRequest | PayloadTooLarge> => {
  const refused = refusedByHeaders(request, maxBytes)
  if (refused !== undefined) return Effect.fail(refused)
  const source = incomingMessage(request)
  const text: Effect.Effect<string, MalformedRequest | PayloadTooLarge> = source === undefined
    // Not Node's server (e.g. a web handler in a test): the platform's reader, with the same limit.
    ? Effect.mapError(request.text, () =>
      new MalformedRequest({ message: `the request body could not be read (is it larger than ${maxBytes} bytes?)` }))
    : readNode(source, maxBytes)
  return Effect.flatMap(text, parse)
}
