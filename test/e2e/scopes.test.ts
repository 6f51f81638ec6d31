/**
 * End-to-end: scopes over HTTP on the real service process — named by retains, forgets, batch items and the compile
 * route, shown by `GET /v1/banks/{id}`, sent in the webhook's body, consumed per the answer's `scopesCompiled`; an
 * invalid scope is a 400 naming it that counts nothing (a batch: nothing at all).
 */
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { CompileTriggerClient } from "../../src/CompileTriggerApi.js"
import { defaultBehaviour, type ServiceProcess, type WebhookReceiver } from "../support/harness.js"
import { shareServiceWithWebhook } from "../support/sharedService.js"

let service: ServiceProcess
let webhook: WebhookReceiver

const json = { "content-type": "application/json" }

const post = (path: string, body?: unknown) =>
  fetch(`${service.base}${path}`, {
    method: "POST",
    headers: json,
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })

/** What these tests read of an answer: a bank's state or an error. */
interface Answer {
  readonly message: string
  readonly dirtyScopes?: {
    readonly all: boolean
    readonly scopes: ReadonlyArray<{ readonly scope: string; readonly memories: number; readonly forgets: number }>
  }
}

const read = (response: Response) => response.json() as Promise<Answer>

const bank = async (bankId: string) => read(await fetch(`${service.base}/v1/banks/${bankId}`))

shareServiceWithWebhook(
  { COMPILE_SIZE_THRESHOLD: "1000", COMPILE_FORGET_THRESHOLD: "1000", COMPILE_MAX_SCOPES_PER_BANK: "3" },
  // A bank named partial-* rebuilds only scope "a".
  (bankId) =>
    bankId.startsWith("partial")
      ? { status: 200, body: JSON.stringify({ scopesCompiled: ["a"] }) }
      : defaultBehaviour(bankId),
  (started, receiver) => {
    service = started
    webhook = receiver
  }
)

describe("scopes over HTTP", () => {
  it("retain, forget and batch items name scopes; GET shows them; the webhook gets them; the answer consumes them", async () => {
    expect((await post("/v1/banks/s-1/retain", { count: 2, scopes: ["page-a", "tag:b"] })).status).toBe(202)
    const afterForget = await read(await post("/v1/banks/s-1/forget", { scopes: ["tag:b"] }))
    expect(afterForget.dirtyScopes).toEqual({
      all: false,
      scopes: [{ scope: "page-a", memories: 2, forgets: 0 }, { scope: "tag:b", memories: 2, forgets: 1 }]
    })
    const batch = await post("/v1/retains", [{ bankId: "s-1", scopes: ["page-c"] }, { bankId: "s-2" }])
    expect(await read(batch)).toMatchObject({ accepted: 2, retains: 2 })
    expect((await bank("s-1")).dirtyScopes?.scopes.map((s) => s.scope)).toEqual([
      "page-a",
      "tag:b",
      "page-c"
    ])
    expect((await bank("s-2")).dirtyScopes).toBeUndefined()
    expect((await post("/v1/banks/s-1/compile")).status).toBe(202)
    const call = await webhook.waitForCall("s-1")
    expect(call.body.scopes).toEqual(["page-a", "tag:b", "page-c"])
    await expect.poll(async () => (await bank("s-1")).dirtyScopes, { timeout: 10_000 }).toBeUndefined()
  })

  it("a partial scopesCompiled leaves the other scopes dirty; the compile route names scopes", async () => {
    await post("/v1/banks/partial-1/retain", { scopes: ["a", "b"] })
    await post("/v1/banks/partial-1/compile", { scopes: ["c"] })
    const call = await webhook.waitForCall("partial-1")
    expect(call.body.scopes).toEqual(["a", "b", "c"])
    await expect.poll(async () => (await bank("partial-1")).dirtyScopes?.scopes.map((s) => s.scope), {
      timeout: 10_000
    }).toEqual(["b", "c"])
  })

  it("past COMPILE_MAX_SCOPES_PER_BANK the bank is \"all\", and the webhook is told so", async () => {
    await post("/v1/banks/many-1/retain", { scopes: ["1", "2", "3", "4"] })
    expect((await bank("many-1")).dirtyScopes).toEqual({ all: true, scopes: [] })
    await post("/v1/banks/many-1/compile")
    expect((await webhook.waitForCall("many-1")).body.scopes).toBe("all")
  })

  it("an invalid scope is a 400 naming it; nothing is counted, in a batch not even the valid items", async () => {
    const single = await post("/v1/banks/bad-1/retain", { count: 3, scopes: ["ok", "", "x\u0001"] })
    expect(single.status).toBe(400)
    expect((await read(single)).message).toContain(`invalid scopes "", "x\\u0001"`)
    expect((await fetch(`${service.base}/v1/banks/bad-1`)).status).toBe(404)
    const tooMany = await post("/v1/banks/bad-1/forget", { scopes: Array.from({ length: 33 }, (_, k) => `s${k}`) })
    expect(tooMany.status).toBe(400)
    expect((await read(tooMany)).message).toContain("at most 32 scopes")
    const notArray = await post("/v1/banks/bad-1/compile", { scopes: "a,b" })
    expect(notArray.status).toBe(400)
    const batch = await post("/v1/retains", [{ bankId: "bad-2", count: 2 }, { bankId: "bad-3", scopes: ["y".repeat(129)] }])
    expect(batch.status).toBe(400)
    expect((await read(batch)).message).toContain("invalid scopes")
    expect((await fetch(`${service.base}/v1/banks/bad-2`)).status).toBe(404)
    expect((await fetch(`${service.base}/v1/banks/bad-3`)).status).toBe(404)
  })

  it.effect("the typed client sends and reads scopes", () =>
    Effect.gen(function*() {
      const client = yield* CompileTriggerClient.make({ baseUrl: service.base })
      const state = yield* client.banks.retain({ path: { bankId: "client-s" }, payload: { scopes: ["p"] } })
      expect(state.dirtyScopes).toEqual({ all: false, scopes: [{ scope: "p", memories: 1, forgets: 0 }] })
      yield* client.banks.retainBatch({ payload: [{ bankId: "client-s", count: 2, scopes: ["q"] }] })
      yield* client.banks.forget({ path: { bankId: "client-s" }, payload: { scopes: ["p"] } })
      const read = yield* client.banks.getBank({ path: { bankId: "client-s" } })
      expect(read.dirtyScopes?.scopes.map((s) => [s.scope, s.memories, s.forgets])).toEqual([["p", 1, 1], ["q", 2, 0]])
      yield* client.banks.compile({ path: { bankId: "client-s" }, payload: { scopes: ["r"] } })
      const call = yield* Effect.promise(() => webhook.waitForCall("client-s"))
      expect(call.body.scopes).toEqual(["p", "q", "r"])
      const refused = yield* Effect.flip(
        client.banks.retain({ path: { bankId: "client-s" }, payload: { scopes: [""] } })
      )
      // The client checks the payload with the same Schema before sending it.
      expect(refused._tag).toBe("ParseError")
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})
