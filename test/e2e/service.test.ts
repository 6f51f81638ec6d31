/**
 * End-to-end: the real service process on a free 127.0.0.1 port, calling a real webhook receiver in this process.
 * One service is shared by the tests of this file (they use distinct banks); each test is bounded in time.
 */
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import parsePrometheusTextFormat from "parse-prometheus-text-format"
import { CompileTriggerClient } from "../../src/CompileTriggerApi.js"
import {
  defaultBehaviour,
  eventually,
  type ServiceProcess,
  type WebhookReceiver
} from "../support/harness.js"
import { shareServiceWithWebhook } from "../support/sharedService.js"

const API_TOKEN = "api-secret-token"
const WEBHOOK_TOKEN = "webhook-secret-token"
const THRESHOLD = 5

let service: ServiceProcess
let webhook: WebhookReceiver

const auth = { authorization: `Bearer ${API_TOKEN}` }
const json = { ...auth, "content-type": "application/json" }

const post = (path: string, body?: unknown, headers: Record<string, string> = json) =>
  fetch(`${service.base}${path}`, {
    method: "POST",
    headers,
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
  })

/** A body sent in chunks, with no Content-Length: the limit must hold while reading. */
const postChunked = (path: string, bytes: number) => {
  const chunk = new TextEncoder().encode("[" + " ".repeat(64 * 1024 - 1))
  let sent = 0
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= bytes) return controller.close()
      sent += chunk.length
      controller.enqueue(chunk)
    }
  })
  return fetch(`${service.base}${path}`, { method: "POST", headers: json, body, duplex: "half" } as RequestInit)
}

/** A small body sent chunked (no Content-Length) with the given content type. */
const postChunkedAs = (path: string, text: string, contentType: string) =>
  fetch(`${service.base}${path}`, {
    method: "POST",
    headers: { ...auth, "content-type": contentType },
    body: new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(text))
        controller.close()
      }
    }),
    duplex: "half"
  } as RequestInit)

const get = (path: string, headers: Record<string, string> = auth) => fetch(`${service.base}${path}`, { headers })

interface BankState {
  readonly bankId: string
  readonly memoriesSinceLastCompile: number
  readonly lastCompileAt: string | null
  readonly firstRetainAt: string | null
  readonly status: "idle" | "pending" | "running"
  readonly consecutiveFailures: number
  readonly lastError: string | null
}

const bank = async (bankId: string): Promise<BankState | undefined> => {
  const response = await get(`/v1/banks/${bankId}`)
  return response.status === 404 ? undefined : (await response.json()) as BankState
}

const retainsTotal = async (): Promise<number> => {
  const families = parsePrometheusTextFormat(await (await get("/metrics", {})).text())
  const family = families.find((family) => family.name === "compile_trigger_retains_total")
  return Number(family?.metrics[0]?.value)
}

shareServiceWithWebhook({
  COMPILE_WEBHOOK_TOKEN: WEBHOOK_TOKEN,
  API_TOKEN,
  COMPILE_SIZE_THRESHOLD: String(THRESHOLD),
  COMPILE_CONCURRENCY: "2",
  COMPILE_TIMEOUT: "500 millis",
  COMPILE_SHUTDOWN_TIMEOUT: "2 seconds"
}, (bankId) =>
  bankId.startsWith("fail-")
    ? { status: 500, body: "engine exploded" }
    : bankId.startsWith("badjson-")
    ? { status: 200, body: "{not json" }
    : bankId.startsWith("slow-")
    ? { status: 200, body: JSON.stringify({ bankId }), delayMs: 5_000 }
    : defaultBehaviour(bankId), (started, receiver) => {
  service = started
  webhook = receiver
})

describe("service (one process shared by these tests)", () => {
  it("starts on the given address with the webhook engine, and says so", () => {
    expect(service.output()).toMatch(/engine: webhook POST http:\/\/127\.0\.0\.1:\d+\/compile \(bearer token set, answers up to 1048576 bytes\)/)
    expect(service.output()).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/)
    expect(service.output()).toContain(`sizeThreshold=${THRESHOLD}`)
    expect(service.output()).not.toContain(API_TOKEN)
    expect(service.output()).not.toContain(WEBHOOK_TOKEN)
  })

  it("accepts a bank id of 200 characters", async () => {
    const response = await post(`/v1/banks/${"L".repeat(199)}:/retain`, { count: 1 })
    expect(response.status).toBe(202)
    expect((await response.json() as BankState).bankId).toBe(`${"L".repeat(199)}:`)
  })

  it("below the threshold: counted, no webhook call; at the threshold: one call, counter consumed", async () => {
    const below = await post("/v1/banks/below-1/retain", { count: THRESHOLD - 1 })
    expect(below.status).toBe(202)
    expect(await below.json()).toMatchObject({ bankId: "below-1", memoriesSinceLastCompile: THRESHOLD - 1, status: "idle" })

    const at = await post("/v1/banks/at-1/retain", { count: THRESHOLD - 1 })
    expect(at.status).toBe(202)
    const last = await post("/v1/banks/at-1/retain") // no body: count 1
    expect(last.status).toBe(202)
    expect((await last.json() as BankState).memoriesSinceLastCompile).toBe(THRESHOLD)

    const call = await webhook.waitForCall("at-1")
    expect(call.authorization).toBe(`Bearer ${WEBHOOK_TOKEN}`)
    const compiled = await eventually(() => bank("at-1"), (state) => state?.lastCompileAt !== null)
    expect(compiled).toMatchObject({ memoriesSinceLastCompile: 0, status: "idle", consecutiveFailures: 0, lastError: null })
    expect(webhook.calls.filter((call) => call.bankId === "at-1")).toHaveLength(1)

    // The queue is empty and the bank below the threshold was never sent.
    await eventually(async () => (await get("/v1/queue")).json(), (queue: any) => queue.pending === 0 && queue.running === 0)
    expect(webhook.calls.some((call) => call.bankId === "below-1")).toBe(false)
    expect(await bank("below-1")).toMatchObject({ memoriesSinceLastCompile: THRESHOLD - 1, lastCompileAt: null })
  })

  it("batch retains: counted per bank, and a bank that reaches the threshold compiles", async () => {
    const response = await post("/v1/retains", [
      { bankId: "batch-1", count: 2 },
      { bankId: "batch-2" },
      { bankId: "batch-1", count: 3 }
    ])
    expect(response.status).toBe(202)
    expect(await response.json()).toEqual({ accepted: 3, retains: 6 })
    await webhook.waitForCall("batch-1")
    expect(await bank("batch-2")).toMatchObject({ memoriesSinceLastCompile: 1 })
    await eventually(() => bank("batch-1"), (state) => state?.lastCompileAt !== null && state?.memoriesSinceLastCompile === 0)
  })

  it("compileNow, paged listing and queue stats", async () => {
    expect((await post("/v1/banks/now-1/compile")).status).toBe(202)
    await webhook.waitForCall("now-1")
    await eventually(() => bank("now-1"), (state) => state?.lastCompileAt !== null)

    const first = await (await get("/v1/banks?limit=2")).json() as { banks: Array<BankState>; nextCursor: string | null }
    expect(first.banks).toHaveLength(2)
    expect(first.nextCursor).not.toBeNull()
    const next = await (await get(`/v1/banks?limit=2&cursor=${first.nextCursor}`)).json() as { banks: Array<BankState> }
    expect(next.banks[0]!.bankId).not.toBe(first.banks[0]!.bankId)
    const idle = await (await get("/v1/banks?status=idle&limit=1000")).json() as { banks: Array<BankState> }
    expect(idle.banks.every((state) => state.status === "idle")).toBe(true)
    expect(idle.banks.map((state) => state.bankId)).toContain("below-1")

    const queue = await (await get("/v1/queue")).json() as Record<string, unknown>
    expect(queue).toMatchObject({ capacity: 10_000 })
    expect(Object.keys(queue).sort()).toEqual([
      "banks",
      "capacity",
      "defaults",
      "freshness",
      "mode",
      "pending",
      "running",
      "size",
      "store"
    ])
    // A single service's counts are its own; a bank without a policy follows these settings.
    expect(queue).toMatchObject({ mode: "single", defaults: { sizeThreshold: THRESHOLD, enabled: true } })
    expect(queue.store).toMatchObject({ healthy: true, unhealthySince: null, consecutiveFailures: 0, lastError: null })
    expect((await get("/v1/banks/never-seen")).status).toBe(404)
  })

  it("webhook failures become CompileErrors that name the status, the bad JSON or the timeout", async () => {
    await post("/v1/banks/fail-1/retain", { count: THRESHOLD })
    await post("/v1/banks/badjson-1/retain", { count: THRESHOLD })
    await post("/v1/banks/slow-1/retain", { count: THRESHOLD })
    const failed = await eventually(() => bank("fail-1"), (state) => (state?.consecutiveFailures ?? 0) >= 1)
    expect(failed!.lastError).toMatch(/webhook returned HTTP 500: engine exploded/)
    expect(failed!.memoriesSinceLastCompile).toBe(THRESHOLD)
    const invalid = await eventually(() => bank("badjson-1"), (state) => (state?.consecutiveFailures ?? 0) >= 1)
    expect(invalid!.lastError).toMatch(/invalid JSON/)
    const slow = await eventually(() => bank("slow-1"), (state) => (state?.consecutiveFailures ?? 0) >= 1)
    expect(slow!.lastError).toMatch(/timed out after 500ms/)
  })

  it("rejects each class of bad input with a JSON error naming the problem, and counts nothing", async () => {
    const before = await retainsTotal()
    const bad: Array<[string, Response, number, RegExp]> = [
      ["malformed JSON", await post("/v1/banks/bad-1/retain", "{\"count\":"), 400, /not valid JSON/],
      ["count as a string", await post("/v1/banks/bad-1/retain", { count: "3" }), 400, /count/],
      ["count 0", await post("/v1/banks/bad-1/retain", { count: 0 }), 400, /count must be an integer from 1 to 1000000/],
      ["count 1.5", await post("/v1/banks/bad-1/retain", { count: 1.5 }), 400, /count must be an integer/],
      ["count too large", await post("/v1/banks/bad-1/retain", { count: 1_000_001 }), 400, /count must be/],
      ["unknown field", await post("/v1/banks/bad-1/retain", { count: 1, extra: true }), 400, /^unknown field extra \(allowed: count, scopes\)$/],
      ["array body", await post("/v1/banks/bad-1/retain", [1]), 400, /^the body must be a JSON object/],
      ["bad bankId", await post("/v1/banks/bad%20id/retain", { count: 1 }), 400, /bankId must be 1 to 200 characters/],
      ["bankId too long", await post(`/v1/banks/${"b".repeat(201)}/retain`, {}), 400, /bankId must be/],
      ["bankId with a slash", await post("/v1/banks/a%2Fb/retain", {}), 400, /bankId must be/],
      ["not JSON content", await post("/v1/banks/bad-1/retain", "count=1", { ...auth, "content-type": "text/plain" }), 400, /must be JSON/],
      ["body over 1 MiB", await post("/v1/banks/bad-1/retain", `{"count":1,"pad":"${"x".repeat(1024 * 1024)}"}`), 413, /larger than 1048576 bytes/],
      ["chunked body over 1 MiB", await postChunked("/v1/retains", 2 * 1024 * 1024), 413, /larger than 1048576 bytes/],
      ["empty batch", await post("/v1/retains", []), 400, /at least one item/],
      ["batch of 1001", await post("/v1/retains", Array.from({ length: 1001 }, () => ({ bankId: "bad-2" }))), 400, /at most 1000 items/],
      [
        "batch with one bad item",
        await post("/v1/retains", [{ bankId: "bad-2", count: 2 }, { bankId: "bad-3", count: 1, note: "x" }]),
        400,
        /^item 1: unknown field note \(allowed: bankId, count, scopes\)$/
      ],
      ["batch item with bad bankId", await post("/v1/retains", [{ bankId: "" }]), 400, /bankId must be/],
      ["batch not an array", await post("/v1/retains", { bankId: "bad-2" }), 400, /^the body must be a JSON array/],
      // 5,000 nested arrays: Schema's error formatting overflowed the stack (a 500 with an empty body).
      ["5,000 nested arrays", await post("/v1/banks/bad-1/retain", "[".repeat(5000) + "]".repeat(5000)), 400, /deeper than 32 levels/],
      ["5,000 nested arrays (batch)", await post("/v1/retains", "[".repeat(5000) + "]".repeat(5000)), 400, /deeper than 32 levels/],
      ["chunked text/plain", await postChunkedAs("/v1/banks/bad-1/retain", "{}", "text/plain"), 400, /must be JSON/],
      ["unknown route", await post("/v1/nothing", {}), 404, /no route POST \/v1\/nothing/],
      ["listing limit 0", await get("/v1/banks?limit=0"), 400, /limit must be an integer from 1 to 1000/],
      ["listing status unknown", await get("/v1/banks?status=sleeping"), 400, /status/]
    ]
    for (const [name, response, status, message] of bad) {
      expect({ name, status: response.status }).toEqual({ name, status })
      const body = await response.json() as { message: string; _tag: string }
      expect({ name, message: body.message }).toEqual({ name, message: expect.stringMatching(message) })
    }
    expect(await bank("bad-1")).toBeUndefined()
    expect(await bank("bad-2")).toBeUndefined()
    expect(await bank("bad-3")).toBeUndefined()
    expect(await retainsTotal()).toBe(before)
  })

  it("a client still sending a refused body reads the 413, not a reset (the connection lingers before it closes)", async () => {
    // Refused once 1 MiB was read while the client still sends: closed at once, the socket's unread bytes made the
    // kernel reset the connection, and the client often saw the reset (fetch failed) before the answer.
    for (let i = 0; i < 30; i++) {
      const answer = await postChunked("/v1/retains", 2 * 1024 * 1024)
      expect(answer.status).toBe(413)
      expect(await answer.json()).toMatchObject({ _tag: "PayloadTooLarge" })
    }
  }, 60_000)

  it("401 without a token, with a wrong one or another scheme; health routes stay open", async () => {
    for (const headers of [{}, { authorization: "Bearer wrong" }, { authorization: `Basic ${API_TOKEN}` }, { authorization: API_TOKEN }]) {
      const response = await fetch(`${service.base}/v1/banks/auth-1/retain`, { method: "POST", headers })
      expect(response.status).toBe(401)
      expect(await response.json()).toMatchObject({ _tag: "Unauthorized" })
      expect((await fetch(`${service.base}/v1/queue`, { headers })).status).toBe(401)
    }
    expect(await bank("auth-1")).toBeUndefined()
    expect((await fetch(`${service.base}/healthz`)).status).toBe(200)
    expect(await (await fetch(`${service.base}/readyz`)).json()).toMatchObject({ status: "ready", store: { healthy: true } })
    expect((await fetch(`${service.base}/metrics`)).status).toBe(200)
  })

  it("/metrics is Prometheus text: every CompileMetrics series, process basics, and the exact retain count", async () => {
    const before = await retainsTotal()
    await post("/v1/banks/metrics-1/retain", { count: 2 })
    await post("/v1/retains", [{ bankId: "metrics-2", count: 3 }, { bankId: "metrics-3" }])
    const response = await get("/metrics", {})
    expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/)
    const families = parsePrometheusTextFormat(await response.text())
    const names = new Set(families.map((family) => family.name))
    for (
      const name of [
        "compile_trigger_retains_total",
        "compile_trigger_retains_rejected_total",
        "compile_trigger_enqueued_total",
        "compile_trigger_dropped_total",
        "compile_trigger_retries_total",
        "compile_trigger_compiles_total",
        "compile_trigger_compile_duration_seconds",
        "compile_trigger_queue_size",
        "compile_trigger_running",
        "compile_trigger_store_flush_failures_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
        "nodejs_heap_size_used_bytes"
      ]
    ) expect(names).toContain(name)
    const compiles = families.find((family) => family.name === "compile_trigger_compiles_total")!
    expect(compiles.type).toBe("COUNTER")
    const success = compiles.metrics.find((metric) => metric.labels?.outcome === "success")
    expect(Number(success?.value)).toBeGreaterThanOrEqual(3)
    const duration = families.find((family) => family.name === "compile_trigger_compile_duration_seconds")!
    expect(duration.type).toBe("HISTOGRAM")
    expect(await retainsTotal()).toBe(before + 6)
  })

  it("serves /openapi.json and Swagger UI at /docs from the same definition", async () => {
    const spec = await (await fetch(`${service.base}/openapi.json`)).json() as { paths: Record<string, unknown> }
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining([
      "/v1/banks/{bankId}/retain",
      "/v1/retains",
      "/v1/banks/{bankId}/compile",
      "/v1/banks/{bankId}",
      "/v1/banks",
      "/v1/queue",
      "/healthz",
      "/readyz",
      "/metrics"
    ]))
    const docs = await fetch(`${service.base}/docs`)
    expect(docs.status).toBe(200)
    expect(await docs.text()).toContain("swagger-ui")
  })

  it.effect("the typed client (HttpApiClient) retains and reads state", () =>
    Effect.gen(function*() {
      const client = yield* CompileTriggerClient.make({ baseUrl: service.base, token: Redacted.make(API_TOKEN) })
      const state = yield* client.banks.retain({ path: { bankId: "client-1" }, payload: { count: 2 } })
      expect(state.memoriesSinceLastCompile).toBe(2)
      const batch = yield* client.banks.retainBatch({ payload: [{ bankId: "client-1" }] })
      expect(batch).toMatchObject({ accepted: 1, retains: 1 })
      const read = yield* client.banks.getBank({ path: { bankId: "client-1" } })
      expect(read.memoriesSinceLastCompile).toBe(3)
      const missing = yield* Effect.flip(client.banks.getBank({ path: { bankId: "client-missing" } }))
      expect(missing._tag).toBe("BankNotFound")
      const unauthorized = yield* CompileTriggerClient.make({ baseUrl: service.base }).pipe(
        Effect.flatMap((anonymous) => Effect.flip(anonymous.banks.queue())
      ))
      expect(unauthorized._tag).toBe("Unauthorized")
    }).pipe(Effect.provide(FetchHttpClient.layer)))
})
