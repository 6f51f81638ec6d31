/**
 * End-to-end: per-bank policies, forgets and compile jobs through the real service process (opt-in mode:
 * COMPILE_DEFAULT_ENABLED=false), with a real webhook receiver recording the jobs it is sent.
 */
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { CompileTriggerClient } from "../../src/CompileTriggerApi.js"
import { eventually, type ServiceProcess, type WebhookReceiver } from "../support/harness.js"
import { shareServiceWithWebhook } from "../support/sharedService.js"

let service: ServiceProcess
let webhook: WebhookReceiver

const headers = { "content-type": "application/json" }
/** Each call carries its compile's fencing token (test/e2e/fencing.test.ts checks it). */
const ANY_TOKEN = { epoch: expect.any(Number), sequence: expect.any(Number) }
const call = (method: string, path: string, body?: unknown) =>
  fetch(`${service.base}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
  })
const bank = async (bankId: string) => {
  const response = await call("GET", `/v1/banks/${bankId}`)
  return response.status === 404 ? undefined : (await response.json()) as Record<string, unknown>
}

shareServiceWithWebhook({
  COMPILE_SIZE_THRESHOLD: "5",
  COMPILE_DEFAULT_ENABLED: "false",
  COMPILE_FORGET_THRESHOLD: "2",
  COMPILE_FORGET_DELAY: "300 millis"
}, undefined, (started, receiver) => {
  service = started
  webhook = receiver
})

describe("service: policies, forgets, jobs", () => {
  it("says its forget settings at startup", () => {
    expect(service.output()).toMatch(/defaultEnabled=false forgetThreshold=2 forgetDelay=300ms/)
  })

  it("opt-in: a bank without a policy counts but never compiles; PUT enables it, re-checked at once", async () => {
    const counted = await call("POST", "/v1/banks/opt-1/retain", { count: 7 })
    expect(await counted.json()).toMatchObject({ memoriesSinceLastCompile: 7, forgetsSinceLastCompile: 0, status: "idle", policy: null })
    const put = await call("PUT", "/v1/banks/opt-1/policy", { enabled: true, sizeThreshold: 6 })
    expect(put.status).toBe(200)
    expect(await put.json()).toEqual({
      policy: { enabled: true, sizeThreshold: 6 },
      effective: { enabled: true, sizeThreshold: 6, stalenessDays: 7, stalenessMinMemories: 10, forgetThreshold: 2, forgetDelaySeconds: 0.3, maxWaitSeconds: 0, maxScopesPerBank: 64 }
    })
    const job = await webhook.waitForCall("opt-1")
    expect(job.body).toEqual({
      bankId: "opt-1",
      reason: "size",
      memories: 7,
      forgets: 0,
      attempt: 1,
      fencingToken: ANY_TOKEN,
      memoryWait: { meanSeconds: expect.any(Number), oldestSeconds: expect.any(Number) }
    })
    const compiled = await eventually(() => bank("opt-1"), (state) => state?.memoriesSinceLastCompile === 0)
    expect(compiled?.policy).toEqual({ enabled: true, sizeThreshold: 6 })
    expect(webhook.calls.some((c) => c.bankId === "plain-1")).toBe(false)
  })

  it("GET and DELETE the policy; 404 PolicyNotFound once it is gone", async () => {
    await call("PUT", "/v1/banks/crud-1/policy", { forgetThreshold: 4 })
    const got = await call("GET", "/v1/banks/crud-1/policy")
    expect(got.status).toBe(200)
    expect(await got.json()).toMatchObject({ policy: { forgetThreshold: 4 }, effective: { enabled: false, forgetThreshold: 4 } })
    const deleted = await call("DELETE", "/v1/banks/crud-1/policy")
    expect(deleted.status).toBe(204)
    const missing = await call("GET", "/v1/banks/crud-1/policy")
    expect(missing.status).toBe(404)
    expect(await missing.json()).toMatchObject({ _tag: "PolicyNotFound", bankId: "crud-1" })
    expect((await call("DELETE", "/v1/banks/never-1/policy")).status).toBe(204)
  })

  it("forgets: counted, then one compile the delay after the threshold, with the burst's forgets", async () => {
    await call("PUT", "/v1/banks/fg-1/policy", { enabled: true })
    const first = await call("POST", "/v1/banks/fg-1/forget")
    expect(first.status).toBe(202)
    expect(await first.json()).toMatchObject({ forgetsSinceLastCompile: 1, status: "idle" })
    await call("POST", "/v1/banks/fg-1/forget", { count: 1 }) // reaches 2: due in 300 ms
    await call("POST", "/v1/banks/fg-1/forget", { count: 3 }) // joins
    expect(await bank("fg-1")).toMatchObject({ forgetsSinceLastCompile: 5, status: "idle" })
    const job = await webhook.waitForCall("fg-1")
    expect(job.body).toEqual({
      bankId: "fg-1",
      reason: "forget",
      memories: 0,
      forgets: 5,
      attempt: 1,
      fencingToken: ANY_TOKEN,
      memoryWait: null
    })
    await eventually(() => bank("fg-1"), (state) => state?.forgetsSinceLastCompile === 0)
    expect(webhook.calls.filter((c) => c.bankId === "fg-1")).toHaveLength(1)
  })

  it("bad input: 400, nothing changed", async () => {
    const bad: Array<[string, Response, RegExp]> = [
      ["negative threshold", await call("PUT", "/v1/banks/bad-p/policy", { sizeThreshold: -1 }), /^sizeThreshold must be a non-negative integer, got -1$/],
      ["unknown field", await call("PUT", "/v1/banks/bad-p/policy", { colour: "red" }), /^unknown field colour \(allowed: enabled, /],
      ["enabled as a string", await call("PUT", "/v1/banks/bad-p/policy", { enabled: "yes" }), /^enabled must be true or false, got "yes"$/],
      ["forgetThreshold 0", await call("PUT", "/v1/banks/bad-p/policy", { forgetThreshold: 0 }), /^forgetThreshold must be an integer of at least 1, got 0$/],
      ["forget count 0", await call("POST", "/v1/banks/bad-p/forget", { count: 0 }), /count must be an integer from 1 to 1000000/],
      ["forget count too large", await call("POST", "/v1/banks/bad-p/forget", { count: 1_000_001 }), /count must be/],
      ["forget unknown field", await call("POST", "/v1/banks/bad-p/forget", { n: 1 }), /^unknown field n \(allowed: count, scopes\)$/],
      ["bad bankId", await call("POST", "/v1/banks/bad%20id/forget", {}), /bankId must be/]
    ]
    for (const [name, response, message] of bad) {
      expect({ name, status: response.status }).toEqual({ name, status: 400 })
      const body = await response.json() as { message: string }
      expect({ name, message: body.message }).toEqual({ name, message: expect.stringMatching(message) })
    }
    expect(await bank("bad-p")).toBeUndefined()
  })

  it("OpenAPI and the typed client cover the new routes", async () => {
    const spec = await (await fetch(`${service.base}/openapi.json`)).json() as { paths: Record<string, Record<string, unknown>> }
    expect(Object.keys(spec.paths["/v1/banks/{bankId}/policy"]!).sort()).toEqual(["delete", "get", "put"])
    expect(Object.keys(spec.paths["/v1/banks/{bankId}/forget"]!)).toEqual(["post"])
    await Effect.runPromise(Effect.gen(function*() {
      const client = yield* CompileTriggerClient.make({ baseUrl: service.base })
      const set = yield* client.banks.setPolicy({ path: { bankId: "client-p" }, payload: { forgetThreshold: 9 } })
      expect(set.effective.forgetThreshold).toBe(9)
      const read = yield* client.banks.getPolicy({ path: { bankId: "client-p" } })
      expect(read.policy.forgetThreshold).toBe(9)
      const state = yield* client.banks.forget({ path: { bankId: "client-p" }, payload: { count: 2 } })
      expect(state.forgetsSinceLastCompile).toBe(2)
      expect(state.policy._tag).toBe("Some")
      yield* client.banks.deletePolicy({ path: { bankId: "client-p" } })
      const gone = yield* Effect.flip(client.banks.getPolicy({ path: { bankId: "client-p" } }))
      expect(gone._tag).toBe("PolicyNotFound")
    }).pipe(Effect.provide(FetchHttpClient.layer)))
  })
})
