/**
 * The webhook engine's side of fencing, against a local receiver (an HTTP server in this process) through Node's HTTP
 * client: the token in the body and the `compile-fencing-token` header (signed with the body), a 409 as a stale
 * refusal naming the token, and the cancel URL — told once, signed like a compile call, when a call is cut off
 * (interrupted or timed out), without holding up the interruption; its failures only logged; waited for when the
 * engine's layer closes.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Either, Exit, Fiber, Layer, Option, Redacted, Scope } from "effect"
import { CompileEngine, type CompileJob } from "../../src/CompileEngine.js"
import * as ServiceConfig from "../../src/ServiceConfig.js"
import * as WebhookEngine from "../../src/WebhookEngine.js"
import { type FencingReceiver, signedBy, startFencingReceiver } from "../support/fencingReceiver.js"
import { captureLogs } from "../support/utils.js"

const SECRET = "whsec-fencing-test"
const TOKEN = "hook-token"

let receiver: FencingReceiver

beforeAll(async () => {
  receiver = await startFencingReceiver()
  // Compile calls of banks named hang-* never answer (until released); refused-* answer 409; failing-* 500. Cancel
  // calls hang, but for banks named *slow-cancel* (answered after 300 ms) and on /cancel-refused (500).
  receiver.answer = (call) => {
    const { bankId } = call.body
    if (call.path === "/cancel-refused") return { status: 500, body: "no" }
    if (call.path === "/cancel") return bankId.includes("slow-cancel") ? { status: 200, delayMs: 300 } : "hang"
    if (bankId.startsWith("hang-")) return "hang"
    if (bankId.startsWith("refused-")) return { status: 409, body: bankId.endsWith("-quiet") ? "" : "already compiled under 8.1" }
    if (bankId.startsWith("failing-")) return { status: 500, body: "down" }
    return { status: 200, body: JSON.stringify({ bankId, pagesUpdated: 1 }) }
  }
})

afterAll(() => receiver.close())

const job = (bankId: string, epoch = 7, sequence = 12): CompileJob => ({
  bankId,
  reason: "size",
  memories: 3,
  forgets: 0,
  attempt: 2,
  fencingToken: { epoch, sequence }
})

const options = (extra: Partial<WebhookEngine.WebhookEngineOptions> = {}): WebhookEngine.WebhookEngineOptions => ({
  url: `${receiver.base}/compile`,
  cancelUrl: `${receiver.base}/cancel`,
  token: Redacted.make(TOKEN),
  secret: Redacted.make(SECRET),
  ...extra
})

const engine = (extra?: Partial<WebhookEngine.WebhookEngineOptions>) =>
  WebhookEngine.make(options(extra)).pipe(Effect.provide(NodeHttpClient.layer))

const run = (bankId: string, extra?: Partial<WebhookEngine.WebhookEngineOptions>) =>
  Effect.flatMap(engine(extra), (webhook) => Effect.either(webhook.run(bankId, job(bankId))))

const waitFor = (path: string, bankId: string) => Effect.promise(() => receiver.waitFor(path, bankId))

const callsTo = (path: string, bankId: string) =>
  receiver.calls.filter((call) => call.path === path && call.body.bankId === bankId)

/** Starts the compile of `bankId` (whose call hangs) in a fiber; returns once the receiver has it. */
const inFlight = (bankId: string, extra?: Partial<WebhookEngine.WebhookEngineOptions>) =>
  Effect.gen(function*() {
    const webhook = yield* engine(extra)
    const fiber = yield* Effect.fork(webhook.run(bankId, job(bankId)))
    yield* waitFor("/compile", bankId)
    return fiber
  })

describe("the webhook carries the fencing token", () => {
  it.live("in the body and the compile-fencing-token header, covered by the signature", () =>
    Effect.gen(function*() {
      expect(Either.isRight(yield* run("plain-1"))).toBe(true)
      const [call] = callsTo("/compile", "plain-1")
      expect(call!.headers[WebhookEngine.FENCING_TOKEN_HEADER]).toBe("7.12")
      expect(JSON.parse(call!.rawBody)).toEqual({
        bankId: "plain-1",
        reason: "size",
        memories: 3,
        forgets: 0,
        attempt: 2,
        fencingToken: { epoch: 7, sequence: 12 },
        memoryWait: null // the job given here carries none
      })
      expect(call!.headers.authorization).toBe(`Bearer ${TOKEN}`)
      expect(signedBy(call!, SECRET)).toBe(true)
    }))

  it.live("a 409 is the endpoint refusing the compile as stale: a CompileError naming the token", () =>
    Effect.gen(function*() {
      const refused = yield* run("refused-1")
      expect(Either.isLeft(refused) && refused.left.message).toBe(
        "webhook refused the compile as stale (fencing token 7.12): already compiled under 8.1"
      )
      const quiet = yield* run("refused-2-quiet")
      expect(Either.isLeft(quiet) && quiet.left.message).toBe("webhook refused the compile as stale (fencing token 7.12)")
      const failed = yield* run("failing-1")
      expect(Either.isLeft(failed) && failed.left.message).toBe("webhook returned HTTP 500: down")
    }))
})

describe("the cancel URL", () => {
  it.live("an interrupted call tells it once, signed like a compile call, without waiting for its answer", () =>
    Effect.gen(function*() {
      const fiber = yield* inFlight("hang-1")
      // The cancel endpoint never answers here: the interruption must not wait for it.
      yield* Fiber.interrupt(fiber)
      const cancel = yield* waitFor("/cancel", "hang-1")
      expect(cancel.answered).toBe(false)
      expect(JSON.parse(cancel.rawBody)).toEqual({ bankId: "hang-1", fencingToken: { epoch: 7, sequence: 12 } })
      expect(cancel.headers[WebhookEngine.FENCING_TOKEN_HEADER]).toBe("7.12")
      expect(cancel.headers.authorization).toBe(`Bearer ${TOKEN}`)
      expect(signedBy(cancel, SECRET)).toBe(true)
      receiver.release()
      expect(callsTo("/cancel", "hang-1")).toHaveLength(1)
    }))

  it.live("the webhook's own timeout cuts the call off: it is told too", () =>
    Effect.gen(function*() {
      const result = yield* run("hang-2", { timeout: "300 millis" })
      expect(Either.isLeft(result) && result.left.message).toBe("webhook timed out after 300ms")
      const cancel = yield* waitFor("/cancel", "hang-2")
      expect(cancel.body.fencingToken).toEqual({ epoch: 7, sequence: 12 })
      receiver.release()
    }))

  it.live("a call that ended — answered, failed, refused — is not cancelled", () =>
    Effect.gen(function*() {
      for (const bankId of ["ended-1", "failing-2", "refused-3"]) yield* run(bankId)
      // A cut-off call after them: once its cancel arrived, any of theirs would have too.
      yield* Fiber.interrupt(yield* inFlight("hang-3"))
      yield* waitFor("/cancel", "hang-3")
      receiver.release()
      for (const bankId of ["ended-1", "failing-2", "refused-3"]) expect(callsTo("/cancel", bankId)).toHaveLength(0)
    }))

  it.live("without it, an interrupted call is only aborted", () =>
    Effect.gen(function*() {
      yield* Fiber.interrupt(yield* inFlight("hang-4", { cancelUrl: undefined }))
      yield* Fiber.interrupt(yield* inFlight("hang-5"))
      yield* waitFor("/cancel", "hang-5")
      receiver.release()
      expect(callsTo("/cancel", "hang-4")).toHaveLength(0)
    }))

  it.live("a cancel call that fails is logged as a warning and never retried", () => {
    const { layer, logs } = captureLogs()
    const warned = (text: string) =>
      Effect.gen(function*() {
        for (let n = 0; n < 200 && !logs.some((log) => log.message.includes(text)); n++) yield* Effect.sleep("25 millis")
        return logs.filter((log) => log.message.includes(text))
      })
    return Effect.gen(function*() {
      yield* Fiber.interrupt(yield* inFlight("hang-6", { cancelUrl: `${receiver.base}/cancel-refused` }))
      const refused = yield* warned("webhook cancel call (fencing token 7.12) answered HTTP 500")
      expect(refused).toHaveLength(1)
      expect(refused[0]!.level).toBe("WARN")
      // An endpoint that is not there: a warning saying so.
      const closed = yield* Effect.promise(() => startFencingReceiver())
      yield* Effect.promise(() => closed.close())
      yield* Fiber.interrupt(yield* inFlight("hang-7", { cancelUrl: `${closed.base}/cancel` }))
      const failed = yield* warned("webhook cancel call (fencing token 7.12) failed")
      expect(failed).toHaveLength(1)
      expect(failed[0]!.level).toBe("WARN")
      expect(failed[0]!.annotations.bankId).toBe("hang-7")
      yield* Effect.sleep("300 millis")
      expect(logs.filter((log) => log.message.includes("cancel call"))).toHaveLength(2)
      expect(callsTo("/cancel-refused", "hang-6")).toHaveLength(1)
      receiver.release()
    }).pipe(Effect.provide(layer))
  })

  it.live("closing the engine's layer waits for the cancel calls still running", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        WebhookEngine.layer(options()).pipe(Layer.provide(NodeHttpClient.layer)),
        scope
      )
      const webhook = Context.get(context, CompileEngine)
      const fiber = yield* Effect.fork(webhook.run("hang-slow-cancel-1", job("hang-slow-cancel-1")))
      yield* waitFor("/compile", "hang-slow-cancel-1")
      yield* Fiber.interrupt(fiber)
      yield* Scope.close(scope, Exit.void)
      // The close returned only once the cancel call (answered after 300 ms) was answered.
      const cancels = callsTo("/cancel", "hang-slow-cancel-1")
      expect(cancels).toHaveLength(1)
      expect(cancels[0]!.answered).toBe(true)
      receiver.release()
    }))
})

describe("COMPILE_WEBHOOK_CANCEL_URL", () => {
  const load = (env: Record<string, string>) =>
    Effect.withConfigProvider(ServiceConfig.config, ConfigProvider.fromMap(new Map(Object.entries(env))))
  const url = { COMPILE_WEBHOOK_URL: "http://127.0.0.1:1/compile" }

  it.effect("is the webhook engine's cancel URL; unset, there is none", () =>
    Effect.gen(function*() {
      const set = (yield* load({ ...url, COMPILE_WEBHOOK_CANCEL_URL: "https://memory.example/compile/cancel" })).engine
      expect(set._tag === "Webhook" && Option.map(set.cancelUrl, (cancel) => cancel.href))
        .toEqual(Option.some("https://memory.example/compile/cancel"))
      const unset = (yield* load(url)).engine
      expect(unset._tag === "Webhook" && Option.isNone(unset.cancelUrl)).toBe(true)
    }))

  it.effect("must be an http(s) URL, and only with COMPILE_WEBHOOK_URL", () =>
    Effect.gen(function*() {
      const error = (env: Record<string, string>) =>
        load(env).pipe(Effect.flip, Effect.map(ServiceConfig.formatConfigError))
      expect(yield* error({ ...url, COMPILE_WEBHOOK_CANCEL_URL: "ftp://x/cancel" })).toContain(
        "COMPILE_WEBHOOK_CANCEL_URL must be an http:// or https:// URL"
      )
      expect(yield* error({ COMPILE_WEBHOOK_CANCEL_URL: "http://127.0.0.1:1/cancel" })).toContain(
        "COMPILE_WEBHOOK_CANCEL_URL is set but COMPILE_WEBHOOK_URL is not"
      )
    }))
})
