/**
 * End-to-end: the service process against a hostile compile endpoint (an HTTP server in this process). Each hostile
 * answer — over the size limit (declared or streamed), trickling past the read timeout, a redirect, not JSON, nested
 * too deeply — must fail the compile with a `CompileError` saying which, leave the bank's counter alone and be
 * retried as usual; a 100 MB answer must not grow the service's memory. Every call is signed with the current and the
 * previous secret, and is verified here exactly as a receiver would (docs/service.md's code: node:crypto,
 * timingSafeEqual); the secrets never reach the log.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { eventually, type ServiceProcess, startService } from "../support/harness.js"

const API_TOKEN = "guards-api-token"
const SECRET = "whsec-current-5f1d0c"
const PREVIOUS = "whsec-previous-93ab2e"
const MAX_RESPONSE = 1024 * 1024 // the default, set explicitly
const HUGE = 100 * 1024 * 1024

type Verify = (secret: string, headers: IncomingHttpHeaders, rawBody: string, toleranceSeconds?: number) => boolean

/** The ten-line verification of docs/service.md, run as written (extracted from the doc, so the two cannot drift). */
const readmeVerify = async (): Promise<Verify> => {
  const doc = readFileSync(new URL("../../docs/service.md", import.meta.url), "utf8")
  const code = /### Signed webhook calls[\s\S]*?```js\n([\s\S]*?)```/.exec(doc)?.[1]
  if (code === undefined) throw new Error("docs/service.md: no verification example under 'Signed webhook calls'")
  const dir = mkdtempSync(join(tmpdir(), "ect-verify-"))
  writeFileSync(join(dir, "verify.mjs"), code)
  return ((await import(pathToFileURL(join(dir, "verify.mjs")).href)) as { verify: Verify }).verify
}

let verify: Verify

interface Call {
  readonly bankId: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

const calls: Array<Call> = []
/** Bytes the hostile endpoint managed to hand to its socket per bank, before the caller hung up. */
const written = new Map<string, number>()
let redirectFollowed = false
let receiver: Server
let service: ServiceProcess

/** Writes `total` bytes of a JSON-ish body as fast as the socket takes them; stops when the caller goes away. */
const flood = (bankId: string, response: ServerResponse, total: number) => {
  const chunk = Buffer.alloc(64 * 1024, 0x20)
  let sent = 0
  const pump = () => {
    while (sent < total && !response.destroyed) {
      sent += chunk.length
      written.set(bankId, sent)
      if (!response.write(chunk)) return void response.once("drain", pump)
    }
    if (!response.destroyed) response.end()
  }
  response.on("close", () => written.set(bankId, Math.min(sent, written.get(bankId) ?? sent)))
  pump()
}

const answer = (bankId: string, response: ServerResponse, port: number) => {
  if (bankId.startsWith("declared-")) {
    response.writeHead(200, { "content-type": "application/json", "content-length": String(HUGE) })
    return flood(bankId, response, HUGE)
  }
  if (bankId.startsWith("huge-")) {
    response.writeHead(200, { "content-type": "application/json" }) // chunked: no length to refuse up front
    return flood(bankId, response, HUGE)
  }
  if (bankId.startsWith("trickle-")) {
    response.writeHead(200, { "content-type": "application/json" })
    const timer = setInterval(() => response.write(" "), 100)
    response.on("close", () => clearInterval(timer))
    return response.write("{")
  }
  if (bankId.startsWith("redirect-")) {
    response.writeHead(302, { location: `http://127.0.0.1:${port}/elsewhere`, "content-type": "application/json" })
    return response.end(JSON.stringify({ bankId }))
  }
  if (bankId.startsWith("deep-")) {
    response.writeHead(200, { "content-type": "application/json" })
    return response.end(`{"bankId":${JSON.stringify(bankId)},"scopesCompiled":${"[".repeat(5000)}${"]".repeat(5000)}}`)
  }
  if (bankId.startsWith("html-")) {
    response.writeHead(200, { "content-type": "text/html" })
    return response.end(`<html><body>${JSON.stringify({ bankId })}</body></html>`)
  }
  response.writeHead(200, { "content-type": "application/json" })
  response.end(JSON.stringify({ bankId, pagesUpdated: 1 }))
}

const startReceiver = async (): Promise<Server> => {
  const server = createServer((request, response) => {
    if (request.url === "/elsewhere") {
      redirectFollowed = true
      return response.end("{}")
    }
    let body = ""
    request.setEncoding("utf8")
    request.on("data", (chunk: string) => (body += chunk))
    request.on("end", () => {
      const bankId = String((JSON.parse(body) as { bankId: unknown }).bankId)
      calls.push({ bankId, headers: request.headers, body })
      answer(bankId, response, (server.address() as AddressInfo).port)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return server
}

const retain = async (bankId: string) => {
  const response = await fetch(`${service.base}/v1/banks/${bankId}/retain`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_TOKEN}` }
  })
  expect(response.status).toBe(202)
}

interface BankState {
  readonly memoriesSinceLastCompile: number
  readonly lastCompileAt: string | null
  readonly consecutiveFailures: number
  readonly lastError: string | null
}

const bank = async (bankId: string): Promise<BankState> =>
  (await fetch(`${service.base}/v1/banks/${bankId}`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).json() as Promise<BankState>

const callsFor = (bankId: string) => calls.filter((call) => call.bankId === bankId).length

/** Retains once (the threshold is 1), then waits for the first failure and for the retry. */
const failsAndRetries = async (bankId: string, error: RegExp) => {
  await retain(bankId)
  const failed = await eventually(() => bank(bankId), (state) => state.consecutiveFailures >= 1, 15_000)
  expect(failed.lastError).toMatch(error)
  // The failed compile consumed nothing: the counter is as retained, no compile recorded.
  expect(failed.memoriesSinceLastCompile).toBe(1)
  expect(failed.lastCompileAt).toBeNull()
  await eventually(async () => callsFor(bankId), (count) => count >= 2, 15_000)
}

const rssBytes = (pid: number): number =>
  Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024

beforeAll(async () => {
  verify = await readmeVerify()
  receiver = await startReceiver()
  service = await startService({
    API_TOKEN,
    COMPILE_WEBHOOK_URL: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/compile`,
    COMPILE_WEBHOOK_SECRET: SECRET,
    COMPILE_WEBHOOK_SECRET_PREVIOUS: PREVIOUS,
    COMPILE_WEBHOOK_MAX_RESPONSE: String(MAX_RESPONSE),
    COMPILE_WEBHOOK_READ_TIMEOUT: "400 millis",
    COMPILE_TIMEOUT: "10 seconds",
    COMPILE_SIZE_THRESHOLD: "1",
    COMPILE_CONCURRENCY: "4",
    // Debug: the most the service ever logs, and still no secret in it.
    LOG_LEVEL: "debug"
  }, 60_000)
}, 90_000)

afterAll(async () => {
  await service?.stop()
  receiver?.closeAllConnections()
  await new Promise<void>((resolve) => receiver === undefined ? resolve() : receiver.close(() => resolve()))
})

describe("webhook answers are bounded, calls are signed", () => {
  it("an answer over COMPILE_WEBHOOK_MAX_RESPONSE by its Content-Length fails without being read", async () => {
    await failsAndRetries("declared-1", new RegExp(`\\(HTTP 200\\) is larger than ${MAX_RESPONSE} bytes \\(COMPILE_WEBHOOK_MAX_RESPONSE\\)`))
    expect(written.get("declared-1")!).toBeLessThan(16 * 1024 * 1024)
  })

  it("a streamed 100 MB answer is cut off at the limit: the connection is dropped, RSS stays within 50 MB", async () => {
    await retain("warm-1") // a normal compile first, so the baseline has the code paths loaded
    await eventually(() => bank("warm-1"), (state) => state.lastCompileAt !== null)
    const pid = service.child.pid!
    const before = rssBytes(pid)
    let peak = before
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 5)
    try {
      await failsAndRetries("huge-1", new RegExp(`larger than ${MAX_RESPONSE} bytes`))
    } finally {
      clearInterval(sampler)
    }
    const after = rssBytes(pid)
    console.log(
      `100 MB answer: RSS before ${(before / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB, ` +
        `after ${(after / 2 ** 20).toFixed(1)} MiB; the endpoint got ${((written.get("huge-1") ?? 0) / 2 ** 20).toFixed(1)} MiB out`
    )
    expect(peak - before).toBeLessThan(50 * 1024 * 1024)
    expect(after - before).toBeLessThan(50 * 1024 * 1024)
    expect(written.get("huge-1")!).toBeLessThan(16 * 1024 * 1024)
  })

  it("a body trickling past COMPILE_WEBHOOK_READ_TIMEOUT fails and is dropped", async () => {
    await failsAndRetries("trickle-1", /did not arrive within 400ms of its headers/)
  })

  it("a redirect is not followed", async () => {
    await failsAndRetries("redirect-1", /redirect \(HTTP 302 to http:\/\/127\.0\.0\.1:\d+\/elsewhere\), which is not followed/)
    expect(redirectFollowed).toBe(false)
  })

  it("an answer that is not JSON fails", async () => {
    await failsAndRetries("html-1", /content-type text\/html, not JSON/)
  })

  it("an answer nested 5,000 levels deep fails with a CompileError (Schema's message would overflow the stack)", async () => {
    await failsAndRetries("deep-1", /JSON nested deeper than 32 levels/)
  })

  it("every call is signed with both secrets; a receiver's check passes each and refuses a tampered body", async () => {
    await retain("signed-1")
    await eventually(() => bank("signed-1"), (state) => state.lastCompileAt !== null)
    expect(calls.length).toBeGreaterThan(8)
    for (const call of calls) {
      expect(String(call.headers["webhook-signature"])).toMatch(/^v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/)
      expect(verify(SECRET, call.headers, call.body)).toBe(true)
      expect(verify(PREVIOUS, call.headers, call.body)).toBe(true)
      expect(verify("another-secret", call.headers, call.body)).toBe(false)
      expect(verify(SECRET, call.headers, call.body.replace(call.bankId, "other-bank"))).toBe(false)
      expect(verify(SECRET, { ...call.headers, "webhook-timestamp": String(Number(call.headers["webhook-timestamp"]) - 1) }, call.body)).toBe(false)
    }
    // A replay is refused once its timestamp is older than the receiver's tolerance (5 minutes by default).
    const first = calls[0]!
    const now = Date.now
    Date.now = () => now() + 3_600_000
    try {
      expect(verify(SECRET, first.headers, first.body)).toBe(false)
    } finally {
      Date.now = now
    }
  })

  it("the secrets are never logged (not even at LOG_LEVEL=debug)", () => {
    expect(service.output()).toContain("signed with the current and the previous secret")
    expect(service.output()).not.toContain(SECRET)
    expect(service.output()).not.toContain(PREVIOUS)
    expect(service.output()).not.toContain(API_TOKEN)
  })
})
