/**
 * The HTTP contract of every route that takes input, in process: the API as a web handler (`HttpApiBuilder.toWebHandler`,
 * with the service's request guard) for bodies, errors and the order of checks, and the real Node server on a free
 * loopback port for what only a socket shows (long paths, a refused body never read, the log).
 */
import { HttpApiBuilder, HttpServer } from "@effect/platform"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Logger, LogLevel, Option, Redacted, Ref, Scope } from "effect"
import { connect } from "node:net"
import { MAX_FORGET_DELAY_SECONDS, MAX_STALENESS_DAYS } from "../../src/CompileTriggerConfig.js"
import { apiLayer, layer as serverLayer, Lifecycle, type Readiness } from "../../src/CompileTriggerServer.js"
import { guardRequests } from "../../src/internal/http/requestGuard.js"
import { freePort } from "../support/harness.js"
import { captureLogs, queueLayer } from "../support/utils.js"

const TOKEN = "contract-token"
const auth = { authorization: `Bearer ${TOKEN}` }
const json = { ...auth, "content-type": "application/json" }
/** Thresholds no test reaches: nothing here compiles. */
const quiet = { config: { sizeThreshold: 1e9, forgetThreshold: 1e9 } }

const captured = captureLogs()
let web: ReturnType<typeof HttpApiBuilder.toWebHandler>

beforeAll(() => {
  web = HttpApiBuilder.toWebHandler(
    Layer.mergeAll(apiLayer(Option.some(Redacted.make(TOKEN))), HttpServer.layerContext).pipe(
      Layer.provide(Layer.succeed(Lifecycle, Ref.unsafeMake<Readiness>("ready"))),
      Layer.provide(queueLayer(quiet)),
      Layer.provide(Layer.merge(captured.layer, Logger.minimumLogLevel(LogLevel.All)))
    ),
    { middleware: guardRequests }
  )
})
afterAll(() => web.dispose())

interface Answer {
  readonly status: number
  readonly body: { readonly _tag?: string; readonly message?: string; readonly [key: string]: unknown }
}

const call = async (method: string, path: string, body?: string, headers: Record<string, string> = json) => {
  // As Node's server sees a body: with its length (a web Request leaves it to the sender).
  const length = body === undefined ? {} : { "content-length": String(Buffer.byteLength(body)) }
  const response = await web.handler(
    new Request(`http://service${path}`, { method, headers: { ...length, ...headers }, ...(body === undefined ? {} : { body }) })
  )
  const text = await response.text()
  return { status: response.status, body: text === "" ? {} : JSON.parse(text) } as Answer
}

const bank = (bankId: string) => call("GET", `/v1/banks/${bankId}`, undefined, auth)

/** Every log line at WARN or above, and every line carrying a stack: none may come from a client's input. */
const loudLines = () =>
  captured.logs.filter((line) => ["WARN", "ERROR", "FATAL"].includes(line.level) || /\n\s+at /.test(line.message))

describe("every route that takes a body reads it the same guarded way", () => {
  it("the policy route: a deep body, bad JSON, another content type and a huge body are the documented 4xx", async () => {
    const before = captured.logs.length
    const deepArrays = await call("PUT", "/v1/banks/pol-1/policy", "[".repeat(5000) + "]".repeat(5000))
    expect(deepArrays).toMatchObject({ status: 400, body: { _tag: "MalformedRequest" } })
    expect(deepArrays.body.message).toMatch(/deeper than 32 levels/)
    const deepObjects = await call("PUT", "/v1/banks/pol-1/policy", `{"a":`.repeat(5000) + "1" + "}".repeat(5000))
    expect(deepObjects).toMatchObject({ status: 400, body: { _tag: "MalformedRequest" } })
    const badJson = await call("PUT", "/v1/banks/pol-1/policy", "{x")
    expect(badJson).toMatchObject({ status: 400, body: { _tag: "MalformedRequest" } })
    expect(badJson.body.message).toMatch(/^the request body is not valid JSON/)
    const text = await call("PUT", "/v1/banks/pol-1/policy", `{"sizeThreshold":3}`, { ...auth, "content-type": "text/plain" })
    expect(text).toMatchObject({ status: 400, body: { _tag: "MalformedRequest" } })
    const huge = await call("PUT", "/v1/banks/pol-1/policy", `{"x":"${"y".repeat(1024 * 1024)}"}`)
    expect(huge).toMatchObject({ status: 413, body: { _tag: "PayloadTooLarge", limitBytes: 1024 * 1024 } })
    expect((await call("GET", "/v1/banks/pol-1/policy", undefined, auth)).status).toBe(404)
    expect(loudLines().filter((line) => captured.logs.indexOf(line) >= before)).toEqual([])
  })

  it("bad JSON over several lines is answered in one line", async () => {
    const answer = await call("POST", "/v1/retains", "z\n\u0001\r\n{\"count\":2}")
    expect(answer).toMatchObject({ status: 400, body: { _tag: "MalformedRequest" } })
    expect(answer.body.message).toMatch(/^the request body is not valid JSON: [^\n\r\u0001]+$/)
  })

  it("application/…+json is JSON on every body route", async () => {
    const vnd = { ...auth, "content-type": "application/vnd.foo+json; charset=utf-8" }
    const policy = await call("PUT", "/v1/banks/vnd-1/policy", `{"stalenessMinMemories":3}`, vnd)
    expect(policy).toMatchObject({ status: 200, body: { policy: { stalenessMinMemories: 3 } } })
    expect(await call("POST", "/v1/banks/vnd-1/retain", `{"count":2}`, vnd)).toMatchObject({ status: 202 })
    expect(await call("POST", "/v1/banks/vnd-1/forget", `{"count":1}`, vnd)).toMatchObject({ status: 202 })
    expect(await call("POST", "/v1/retains", `[{"bankId":"vnd-1"}]`, vnd)).toMatchObject({ status: 202 })
    expect((await bank("vnd-1")).body).toMatchObject({ memoriesSinceLastCompile: 3, forgetsSinceLastCompile: 1 })
  })
})

describe("a JSON null is not an empty body", () => {
  it("retain and forget: null is a 400 that counts nothing; an empty body counts 1", async () => {
    for (const route of ["retain", "forget"]) {
      const refused = await call("POST", `/v1/banks/null-${route}/${route}`, "null")
      expect(refused).toMatchObject({ status: 400, body: { _tag: "HttpApiDecodeError" } })
      expect(refused.body.message).toBe(`the body must be a JSON object such as {"count": 3, "scopes": ["page-a"]} (or an empty body), got null`)
      expect((await bank(`null-${route}`)).status).toBe(404)
    }
    expect(await call("POST", "/v1/banks/empty-1/retain", "")).toMatchObject({ status: 202 })
    expect(await call("POST", "/v1/banks/empty-1/retain", " \n")).toMatchObject({ status: 202 })
    expect(await call("POST", "/v1/banks/empty-1/retain", undefined, auth)).toMatchObject({ status: 202 })
    expect(await call("POST", "/v1/banks/empty-1/forget", "")).toMatchObject({ status: 202 })
    expect((await bank("empty-1")).body).toMatchObject({ memoriesSinceLastCompile: 3, forgetsSinceLastCompile: 1 })
  })
})

describe("error bodies: one short sentence per problem, each once", () => {
  const cases: ReadonlyArray<readonly [string, string, string, string | undefined, string, ReadonlyArray<PropertyKey>]> = [
    ["count as a string", "POST", "/v1/banks/e-1/retain", `{"count":"5"}`, `count must be an integer from 1 to 1000000, got "5"`, ["count"]],
    ["forget count 0", "POST", "/v1/banks/e-1/forget", `{"count":0}`, "count must be an integer from 1 to 1000000, got 0", ["count"]],
    ["unknown field", "POST", "/v1/banks/e-1/retain", `{"count":1,"extra":true}`, "unknown field extra (allowed: count, scopes)", ["extra"]],
    ["array body", "POST", "/v1/banks/e-1/retain", "[1]", `the body must be a JSON object such as {"count": 3, "scopes": ["page-a"]} (or an empty body), got [1]`, []],
    ["batch item count", "POST", "/v1/retains", `[{"bankId":"e-2"},{"bankId":"e-3","count":"5"}]`, `item 1: count must be an integer from 1 to 1000000, got "5"`, [1, "count"]],
    ["batch item without bankId", "POST", "/v1/retains", `[{"count":1}]`, "item 0: bankId is missing", [0, "bankId"]],
    ["batch item unknown field", "POST", "/v1/retains", `[{"bankId":"e-2","note":1}]`, "item 0: unknown field note (allowed: bankId, count, scopes)", [0, "note"]],
    ["batch item bad bankId", "POST", "/v1/retains", `[{"bankId":"a b"}]`, `item 0: bankId must be 1 to 200 characters of A-Z a-z 0-9 . _ : -, got "a b"`, [0, "bankId"]],
    ["batch not an array", "POST", "/v1/retains", `{"bankId":"e-2"}`, `the body must be a JSON array of 1 to 1000 items such as [{"bankId": "b-1", "count": 3}], got {"bankId":"e-2"}`, []],
    ["batch null", "POST", "/v1/retains", "null", `the body must be a JSON array of 1 to 1000 items such as [{"bankId": "b-1", "count": 3}], got null`, []],
    ["batch without a body", "POST", "/v1/retains", "", `the body must be a JSON array of 1 to 1000 items such as [{"bankId": "b-1", "count": 3}], got nothing`, []],
    ["batch of 1001", "POST", "/v1/retains", JSON.stringify(Array.from({ length: 1001 }, () => ({ bankId: "e-2" }))), "the batch must have at most 1000 items, got 1001", []],
    ["empty batch", "POST", "/v1/retains", "[]", "the batch must have at least one item, got none", []],
    ["policy type", "PUT", "/v1/banks/e-1/policy", `{"enabled":"yes"}`, `enabled must be true or false, got "yes"`, ["enabled"]],
    ["policy negative", "PUT", "/v1/banks/e-1/policy", `{"sizeThreshold":-1}`, "sizeThreshold must be a non-negative integer, got -1", ["sizeThreshold"]],
    ["policy forgetThreshold", "PUT", "/v1/banks/e-1/policy", `{"forgetThreshold":0}`, "forgetThreshold must be an integer of at least 1, got 0", ["forgetThreshold"]],
    ["policy bankTokens", "PUT", "/v1/banks/e-1/policy", `{"bankTokens":1.5}`, "bankTokens must be a positive integer, got 1.5", ["bankTokens"]],
    ["policy without a body", "PUT", "/v1/banks/e-1/policy", "", `the body must be a JSON object such as {"sizeThreshold": 20}, got nothing`, []],
    ["policy unknown field", "PUT", "/v1/banks/e-1/policy", `{"colour":"red"}`, "unknown field colour (allowed: enabled, sizeThreshold, stalenessDays, stalenessMinMemories, forgetThreshold, forgetDelaySeconds, maxWaitSeconds, bankTokens)", ["colour"]],
    ["path bankId", "POST", "/v1/banks/a%20b/retain", undefined, `bankId must be 1 to 200 characters of A-Z a-z 0-9 . _ : -, got "a b"`, ["bankId"]],
    ["query limit", "GET", "/v1/banks?limit=abc", undefined, `limit must be an integer from 1 to 1000, got "abc"`, ["limit"]],
    ["query limit repeated", "GET", "/v1/compiles?limit=1&limit=2", undefined, `limit must be an integer from 1 to 1000, got ["1","2"]`, ["limit"]],
    ["query status", "GET", "/v1/banks?status=nope", undefined, `status must be one of idle, pending, running, got "nope"`, ["status"]],
    ["query outcome", "GET", "/v1/compiles?outcome=zz", undefined, `outcome must be one of success, reported_error, failure, got "zz"`, ["outcome"]],
    ["query bankId", "GET", "/v1/compiles?bankId=a%20b", undefined, `bankId must be 1 to 200 characters of A-Z a-z 0-9 . _ : -, got "a b"`, ["bankId"]]
  ]
  for (const [name, method, path, body, message, at] of cases) {
    it(name, async () => {
      const answer = await call(method, path, body)
      expect(answer.status).toBe(400)
      expect(answer.body).toEqual({ _tag: "HttpApiDecodeError", message, issues: [expect.objectContaining({ path: at, message })] })
    })
  }

  it("a huge value or key is quoted cut short, never echoed whole", async () => {
    const longId = "x".repeat(5000)
    const answer = await call("POST", "/v1/retains", JSON.stringify([{ bankId: longId }]))
    expect(answer.body.message).toBe(`item 0: bankId must be 1 to 200 characters of A-Z a-z 0-9 . _ : -, got "${"x".repeat(60)}"… (5,000 characters)`)
    const key = await call("PUT", "/v1/banks/e-1/policy", JSON.stringify({ [longId]: 1 }))
    expect(key.status).toBe(400)
    expect(JSON.stringify(key.body).length).toBeLessThan(1000)
  })

  it("nothing was counted or set by any of them", async () => {
    for (const id of ["e-1", "e-2", "e-3"]) expect((await bank(id)).status).toBe(404)
  })
})

describe("the order of checks", () => {
  it("without a valid token: 401 before the content type, the size, the body or the bank id is looked at", async () => {
    for (const headers of [{}, { authorization: "Bearer wrong" }]) {
      const textPlain = await call("POST", "/v1/banks/o-1/retain", "x", { ...headers, "content-type": "text/plain" })
      expect(textPlain).toMatchObject({ status: 401, body: { _tag: "Unauthorized" } })
      const declaredHuge = await call("PUT", "/v1/banks/o-1/policy", "{}", { ...headers, "content-length": "999999999" })
      expect(declaredHuge).toMatchObject({ status: 401, body: { _tag: "Unauthorized" } })
      expect((await call("POST", "/v1/banks/o-1/forget", "{x", headers)).status).toBe(401)
      expect((await call("POST", "/v1/retains", "null", headers)).status).toBe(401)
      expect((await call("POST", `/v1/banks/${"b".repeat(201)}/retain`, undefined, headers)).status).toBe(401)
    }
    expect((await bank("o-1")).status).toBe(404)
  })

  it("stalenessDays and forgetDelaySeconds: up to 10 years; past it a 400 naming the field and the bound", async () => {
    const atBounds = await call(
      "PUT",
      "/v1/banks/b-1/policy",
      JSON.stringify({ stalenessDays: MAX_STALENESS_DAYS, forgetDelaySeconds: MAX_FORGET_DELAY_SECONDS })
    )
    expect(atBounds).toMatchObject({ status: 200, body: { policy: { stalenessDays: 3650, forgetDelaySeconds: 315_360_000 } } })
    const days = await call("PUT", "/v1/banks/b-2/policy", `{"stalenessDays":3650.5}`)
    expect(days).toMatchObject({ status: 400, body: { message: "stalenessDays must be a number of days from 0 to 3650 (10 years), got 3650.5" } })
    const delay = await call("PUT", "/v1/banks/b-2/policy", `{"forgetDelaySeconds":1e12}`)
    expect(delay).toMatchObject({
      status: 400,
      body: { message: "forgetDelaySeconds must be a number of seconds from 0 to 315360000 (10 years), got 1000000000000" }
    })
    expect((await bank("b-2")).status).toBe(404)
  })
})

describe("on Node's server", () => {
  let base = ""
  let port = 0
  const serverLogs = captureLogs()
  const scope = Effect.runSync(Scope.make())
  beforeAll(async () => {
    port = await freePort()
    base = `http://127.0.0.1:${port}`
    await Effect.runPromise(Layer.buildWithScope(
      serverLayer({ host: "127.0.0.1", port, apiToken: Option.some(Redacted.make(TOKEN)) }).pipe(
        Layer.provide(queueLayer(quiet)),
        Layer.provide(Layer.merge(serverLogs.layer, Logger.minimumLogLevel(LogLevel.All)))
      ),
      scope
    ))
  })
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

  /** Raw bytes on a fresh socket: the server's answer, and whether it closed the connection within 5 s. */
  const raw = (request: string) =>
    new Promise<{ readonly answer: string; readonly closed: boolean }>((resolve) => {
      let answer = ""
      const socket = connect(port, "127.0.0.1", () => socket.write(request))
      const timer = setTimeout(() => {
        socket.destroy()
        resolve({ answer, closed: false })
      }, 5000)
      socket.on("data", (chunk: Buffer) => (answer += chunk.toString("latin1")))
      socket.on("error", () => undefined)
      socket.on("close", () => {
        clearTimeout(timer)
        resolve({ answer, closed: true })
      })
    })

  it("a body refused before it was read (401, 413 by its length) is never read: the connection closes", async () => {
    const head = (authorization: string) =>
      `POST /v1/banks/big-1/retain HTTP/1.1\r\nHost: x\r\n${authorization}content-type: application/json\r\n` +
      `content-length: 100000000\r\n\r\n{"count":`
    const unauthenticated = await raw(head(""))
    expect(unauthenticated.answer).toMatch(/^HTTP\/1\.1 401 /)
    expect(unauthenticated.answer).toMatch(/\r\nconnection: close\r\n/i)
    expect(unauthenticated.closed).toBe(true)
    const tooLarge = await raw(head(`authorization: Bearer ${TOKEN}\r\n`))
    expect(tooLarge.answer).toMatch(/^HTTP\/1\.1 413 [\s\S]*"_tag":"PayloadTooLarge"/)
    expect(tooLarge.closed).toBe(true)
  })

  it("a bank id of any length is the documented 400 after auth, quoted short; an unknown long path is cut too", async () => {
    const longId = await fetch(`${base}/v1/banks/${"x".repeat(1100)}/retain`, { method: "POST", headers: auth })
    expect(longId.status).toBe(400)
    const body = await longId.json() as { _tag: string; message: string }
    expect(body).toMatchObject({ _tag: "HttpApiDecodeError" })
    expect(body.message).toMatch(/^bankId must be 1 to 200 characters of .*, got "x{60}"… \(1,100 characters\)$/)
    expect((await fetch(`${base}/v1/banks/${"x".repeat(1100)}`)).status).toBe(401)
    const unknown = await fetch(`${base}/v1/nothing/${"y".repeat(5000)}`, { method: "POST", headers: auth })
    expect(unknown.status).toBe(404)
    const missing = await unknown.json() as { _tag: string; message: string }
    expect(missing._tag).toBe("RouteNotFound")
    expect(missing.message.length).toBeLessThan(300)
  })

  it("client errors log nothing above debug and no stack; the body routes answer them as documented", async () => {
    const before = serverLogs.logs.length
    const put = (body: string, type = "application/json") =>
      fetch(`${base}/v1/banks/log-1/policy`, { method: "PUT", headers: { ...auth, "content-type": type }, body })
    for (const [response, tag] of [
      [await put("{x"), "MalformedRequest"],
      [await put("[".repeat(5000) + "]".repeat(5000)), "MalformedRequest"],
      [await put(`{"stalenessDays":"7"}`), "HttpApiDecodeError"],
      [await put("{}", "text/plain"), "MalformedRequest"],
      [await fetch(`${base}/v1/banks/log-1/retain`, { method: "POST", headers: json, body: "null" }), "HttpApiDecodeError"],
      [await fetch(`${base}/v1/banks?limit=x`, { headers: auth }), "HttpApiDecodeError"]
    ] as const) {
      expect(response.status).toBe(400)
      expect(await response.json()).toMatchObject({ _tag: tag })
    }
    const lines = serverLogs.logs.slice(before)
    expect(lines.filter((line) => line.level !== "DEBUG" || /\n\s+at /.test(line.message))).toEqual([])
    expect(lines.filter((line) => / answered 400$/.test(line.message))).toHaveLength(6)
  })
})
