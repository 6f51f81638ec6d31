/**
 * End-to-end: the cost budget through the real service process — COMPILE_BUDGET_* variables, the webhook's
 * `tokensUsed` charged, `GET /v1/budget`, and a policy's `bankTokens` through `PUT /v1/banks/{bankId}/policy`.
 * The period is a day, so nothing refills noticeably while the test runs.
 */
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { CompileTriggerClient } from "../../src/CompileTriggerApi.js"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { eventually, type ServiceProcess, startService, startWebhook, type WebhookReceiver } from "../support/harness.js"
import { shareServiceWithWebhook } from "../support/sharedService.js"

let service: ServiceProcess
let webhook: WebhookReceiver

const call = (method: string, path: string, body?: unknown) =>
  fetch(`${service.base}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
const json = async (method: string, path: string, body?: unknown) =>
  (await (await call(method, path, body)).json()) as Record<string, any>
const budget = () => json("GET", "/v1/budget")

shareServiceWithWebhook({
  COMPILE_BUDGET_TOKENS: "100000",
  COMPILE_BUDGET_BANK_TOKENS: "5000",
  COMPILE_BUDGET_PERIOD: "1 day",
  COMPILE_SHUTDOWN_TIMEOUT: "0 seconds"
}, (bankId) => ({ status: 200, body: JSON.stringify({ bankId, tokensUsed: 600 }) }), (started, receiver) => {
  service = started
  webhook = receiver
})

describe("service: cost budget", () => {
  it("says its budget at startup", () => {
    expect(service.output()).toMatch(/budget=100000 tokens,5000 tokens\/bank\/1d/)
  })

  it("GET /v1/budget: full buckets, no deferred banks", async () => {
    const state = await budget()
    expect(state).toMatchObject({ periodSeconds: 86_400, compiles: null, bankTokens: 5000, waiting: 0, deferredCount: 0 })
    expect(state.tokens).toMatchObject({ capacity: 100_000, available: 100_000 })
    expect(typeof state.tokens.fullAt).toBe("string")
  })

  it("the webhook's tokensUsed is charged; a policy's bankTokens defers its bank, listed by /v1/budget", async () => {
    const put = await call("PUT", "/v1/banks/tight-1/policy", { bankTokens: 500 })
    expect(put.status).toBe(200)
    expect(((await put.json()) as { policy: unknown }).policy).toEqual({ bankTokens: 500 })
    const chargedBefore = Date.now()
    await call("POST", "/v1/banks/tight-1/compile")
    await webhook.waitForCall("tight-1")
    await eventually(budget, (state) => state.tokens.available < 100_000)
    // 600 charged, refilled at 100,000 a day since (the bound allows for a slow, loaded machine).
    const refilled = ((Date.now() - chargedBefore) * 100_000) / 86_400_000
    expect((await budget()).tokens.available).toBeLessThanOrEqual(99_400 + refilled + 0.01)
    // tight-1 is at -100 of its 500 a day: the next compile is deferred, another bank goes ahead.
    await call("POST", "/v1/banks/tight-1/compile")
    await call("POST", "/v1/banks/other-1/compile")
    await webhook.waitForCall("other-1")
    const state = await eventually(budget, (state) => state.deferredCount === 1)
    expect(state.deferred).toHaveLength(1)
    expect(state.deferred[0]).toMatchObject({ bankId: "tight-1", capacity: 500 })
    expect(state.deferred[0].tokensAvailable).toBeLessThan(0)
    expect(Date.parse(state.deferred[0].dueAt) - Date.now()).toBeGreaterThan(60 * 60_000) // -100 at 500 a day: ~4.8 h
    expect((await json("GET", "/v1/banks/tight-1")).status).toBe("pending")
    expect(webhook.calls.filter((c) => c.bankId === "tight-1")).toHaveLength(1)
  })

  it("bad bankTokens: 400, nothing changed", async () => {
    const response = await call("PUT", "/v1/banks/bad-b/policy", { bankTokens: 0 })
    expect(response.status).toBe(400)
    expect((await call("GET", "/v1/banks/bad-b")).status).toBe(404)
  })

  it("OpenAPI and the typed client cover GET /v1/budget", async () => {
    const spec = await (await fetch(`${service.base}/openapi.json`)).json() as { paths: Record<string, Record<string, unknown>> }
    expect(Object.keys(spec.paths["/v1/budget"]!)).toEqual(["get"])
    const state = await Effect.runPromise(
      Effect.gen(function*() {
        const client = yield* CompileTriggerClient.make({ baseUrl: service.base })
        return yield* client.banks.budget()
      }).pipe(Effect.provide(FetchHttpClient.layer))
    )
    expect(state.tokens?.capacity).toBe(100_000)
    expect(state.bankTokens).toBe(5000)
  })

  it("the metrics show tokens used and compiles waiting for budget", async () => {
    const text = await (await fetch(`${service.base}/metrics`)).text()
    expect(text).toMatch(/compile_trigger_tokens_used_total(\{[^}]*\})? 1200/)
    expect(text).toMatch(/compile_trigger_budget_waiting(\{[^}]*\})? 1/)
  })
})

describe("service: stopping and restarting while the budget holds the queue", () => {
  const HELD = Array.from({ length: 44 }, (_, n) => `held-${n}`)
  const budgetOf = async (base: string) => (await (await fetch(`${base}/v1/budget`)).json()) as Record<string, any>
  const gauge = async (base: string) => {
    const text = await (await fetch(`${base}/metrics`)).text()
    return Number(/^compile_trigger_budget_waiting(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1])
  }
  const stopLine = (output: string) => output.split("\n").filter((line) => line.includes("stopped: "))

  it("Ctrl-C does not wait out the shutdown timeout for 44 held banks; they wait across a restart; a raised limit runs them", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "ect-budget-stop-"))
    const receiver = await startWebhook((bankId) => ({ status: 200, body: JSON.stringify({ bankId, tokensUsed: 600 }) }))
    const env = (tokens: string) => ({
      DATA_DIR: dataDir,
      COMPILE_WEBHOOK_URL: receiver.url,
      COMPILE_BUDGET_TOKENS: tokens,
      COMPILE_BUDGET_PERIOD: "1 day",
      COMPILE_SHUTDOWN_TIMEOUT: "30 seconds"
    })
    try {
      const first = await startService(env("1000"))
      for (const bankId of ["a", "b"]) await fetch(`${first.base}/v1/banks/${bankId}/compile`, { method: "POST" })
      await eventually(() => budgetOf(first.base), (state) => state.tokens.available < 0) // 1,000 → 400 → -200
      for (const bankId of HELD) await fetch(`${first.base}/v1/banks/${bankId}/compile`, { method: "POST" })
      // Every queued bank is held for the spent budget: the report and the gauge count all of them.
      await eventually(() => budgetOf(first.base), (state) => state.waiting === 44)
      expect(await gauge(first.base)).toBe(44)
      const stoppingAt = Date.now()
      const exit = await first.stop(40_000)
      expect(exit.code).toBe(0)
      expect(exit.at - stoppingAt).toBeLessThan(25_000) // not the 30-second shutdown timeout: nothing could start
      expect(stopLine(first.output())).toEqual([
        expect.stringContaining("stopped: 44 banks left pending (budget), 0 cut off, state flushed")
      ])

      const second = await startService(env("1000")) // restored pending, still held
      expect((await budgetOf(second.base)).waiting).toBe(44)
      expect(await gauge(second.base)).toBe(44)
      expect(receiver.calls.map((call) => call.bankId)).toEqual(["a", "b"])
      expect((await second.stop(40_000)).code).toBe(0)
      expect(stopLine(second.output())).toEqual([
        expect.stringContaining("stopped: 44 banks left pending (budget), 0 cut off, state flushed")
      ])

      const third = await startService(env("50000000")) // what was spent (1,200) stays spent; the rest is there now
      try {
        const change = /budget: tokens limit 1,000 → 50,000,000; available now ([\d,]+)/.exec(third.output())
        expect(change, third.output()).not.toBeNull()
        expect(Number(change![1]!.replaceAll(",", ""))).toBeGreaterThanOrEqual(49_998_800)
        await eventually(async () => receiver.calls.length, (calls) => calls === 46, 30_000)
        expect(new Set(receiver.calls.map((call) => call.bankId))).toEqual(new Set(["a", "b", ...HELD]))
      } finally {
        expect((await third.stop(40_000)).code).toBe(0)
      }
      expect(stopLine(third.output())).toEqual([expect.stringContaining("stopped: 0 banks left pending, 0 cut off, state flushed")])
    } finally {
      await receiver.close()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 180_000)
})
