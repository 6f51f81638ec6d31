/**
 * End-to-end, the service's connections and limits on a real process: connections that send nothing, or trickle their
 * headers, are closed at the header deadline and cannot crowd out a real client (past the connection cap the oldest
 * of them makes room); a kept-alive client idle between requests is still served; requests pipelined on one
 * connection take effect in order; and a new bank past COMPILE_MAX_BANKS is refused with 507, nothing counted.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { connect, type Socket } from "node:net"
import { openFileLimit } from "../../src/internal/http/connectionLimits.js"
import { type ServiceProcess, startService } from "../support/harness.js"

const HEADERS_TIMEOUT_MS = 2_000
/** Node checks the deadlines every quarter of the shorter one (`serverOptions`): 500 ms here. */
const DEADLINE_SLACK_MS = 2_500
/** Sockets this process may hold at once: thousands, within its own open-file limit (each costs one descriptor). */
const FLOOD = Math.min(3_000, Math.floor((openFileLimit() ?? 4_096) / 3))
const CAP = Math.floor(FLOOD / 2)

/** Retries `check` (assertions) every 25 ms until it passes, at most `timeoutMs`. */
const eventually = async (check: () => void, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return check()
    } catch (error) {
      if (Date.now() > deadline) throw error
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

const port = (service: ServiceProcess) => Number(new URL(service.base).port)

interface Held {
  readonly sockets: Array<Socket>
  /** How many of them the server has ended (FIN or reset). */
  readonly ended: () => number
  readonly destroy: () => void
}

/** Opens `count` connections (half-open allowed: only the server can end them) and waits until all are open. */
const hold = async (service: ServiceProcess, count: number, onOpen?: (socket: Socket) => void): Promise<Held> => {
  let ended = 0
  const sockets: Array<Socket> = []
  await Promise.all(Array.from({ length: count }, () =>
    new Promise<void>((resolve) => {
      const socket = connect({ port: port(service), host: "127.0.0.1", allowHalfOpen: true })
      sockets.push(socket)
      let gone = false
      const end = () => {
        if (!gone) ended++
        gone = true
        resolve()
      }
      socket.on("connect", () => {
        onOpen?.(socket)
        resolve()
      })
      socket.on("data", () => {})
      socket.on("end", end)
      socket.on("close", end)
      socket.on("error", end)
    })))
  return { sockets, ended: () => ended, destroy: () => sockets.forEach((socket) => socket.destroy()) }
}

/** A slowloris: a request line, then one header line every 300 ms, never the blank line that ends the headers. */
const trickle = (socket: Socket) => {
  socket.write("POST /v1/banks/slow/retain HTTP/1.1\r\nhost: x\r\n")
  const timer = setInterval(() => socket.writable && socket.write(`x-trickle-${Date.now()}: 1\r\n`), 300)
  socket.on("close", () => clearInterval(timer))
  socket.on("end", () => clearInterval(timer))
}

const retain = (service: ServiceProcess, bankId: string, body?: unknown) =>
  fetch(`${service.base}/v1/banks/${bankId}/retain`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })

/** Writes `text` on a fresh connection at once and collects the answers until `count` have arrived. */
const pipelined = (service: ServiceProcess, text: string, count: number) =>
  new Promise<Array<{ status: number; body: string }>>((resolve, reject) => {
    const socket = connect(port(service), "127.0.0.1")
    let received = ""
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString()
      const answers = parseAnswers(received)
      if (answers.length >= count) {
        socket.destroy()
        resolve(answers)
      }
    })
    socket.on("error", reject)
    socket.write(text)
  })

/** HTTP/1.1 answers with Content-Length bodies, in order. */
const parseAnswers = (text: string): Array<{ status: number; body: string }> => {
  const answers: Array<{ status: number; body: string }> = []
  let rest = text
  for (;;) {
    const head = rest.indexOf("\r\n\r\n")
    if (head === -1) return answers
    const headers = rest.slice(0, head)
    const length = Number(/content-length: (\d+)/i.exec(headers)?.[1] ?? 0)
    if (rest.length < head + 4 + length) return answers
    answers.push({ status: Number(headers.slice(9, 12)), body: rest.slice(head + 4, head + 4 + length) })
    rest = rest.slice(head + 4 + length)
  }
}

const retainRequest = (bankId: string) => {
  const body = JSON.stringify({ count: 1 })
  return `POST /v1/banks/${bankId}/retain HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` +
    `content-length: ${body.length}\r\n\r\n${body}`
}
const getRequest = (bankId: string) => `GET /v1/banks/${bankId} HTTP/1.1\r\nhost: x\r\n\r\n`

describe("connections", () => {
  let service: ServiceProcess
  beforeAll(async () => {
    service = await startService({
      HTTP_HEADERS_TIMEOUT: `${HEADERS_TIMEOUT_MS} millis`,
      HTTP_REQUEST_TIMEOUT: "4 seconds",
      HTTP_MAX_CONNECTIONS: String(CAP),
      COMPILE_SIZE_THRESHOLD: "1000000"
    })
  })
  afterAll(async () => {
    expect((await service.stop()).code).toBe(0)
  })

  it(`silent and trickling connections are closed at the header deadline; a retain gets through meanwhile`, async () => {
    const silent = await hold(service, Math.floor(CAP * 0.8))
    const slow = await hold(service, 20, trickle)
    const opened = Date.now()
    expect((await retain(service, "through-the-flood")).status).toBe(202)
    await eventually(() => {
      expect(silent.ended()).toBe(silent.sockets.length)
      expect(slow.ended()).toBe(slow.sockets.length)
    }, HEADERS_TIMEOUT_MS + DEADLINE_SLACK_MS + 2_000)
    // Not closed before the deadline (the client's own clock, from the last one opened).
    expect(Date.now() - opened).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 500)
    silent.destroy()
    slow.destroy()
  }, 20_000)

  it(`past the cap (${CAP}) the oldest silent connections make room: ${FLOOD} held, a retain still gets through`, async () => {
    const flood = await hold(service, FLOOD)
    const answer = await retain(service, "past-the-cap", { count: 2 })
    expect(answer.status).toBe(202)
    expect(await answer.json()).toMatchObject({ bankId: "past-the-cap", memoriesSinceLastCompile: 2 })
    // The cap closed the oldest at once (no deadline needed); the log says so, once.
    await eventually(() => expect(flood.ended()).toBeGreaterThanOrEqual(FLOOD - CAP), 3_000)
    await eventually(() => expect(service.output()).toMatch(/connection limit reached \(\d+ open connections\)/))
    expect(service.output().match(/connection limit reached/g)).toHaveLength(1)
    flood.destroy()
  }, 20_000)

  it("a kept-alive connection idle longer than the header deadline (not the keep-alive one) is still served", async () => {
    const request = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
    const socket = connect(port(service), "127.0.0.1")
    let received = ""
    socket.on("data", (chunk: Buffer) => (received += chunk.toString()))
    socket.write(request)
    await eventually(() => expect(parseAnswers(received)).toHaveLength(1))
    await new Promise((resolve) => setTimeout(resolve, HEADERS_TIMEOUT_MS + 1_000))
    socket.write(request)
    await eventually(() => expect(parseAnswers(received).map((answer) => answer.status)).toEqual([200, 200]))
    socket.destroy()
  }, 20_000)

  it("100 retains and a GET pipelined in one write take effect in order", async () => {
    const answers = await pipelined(service, retainRequest("pipe").repeat(100) + getRequest("pipe"), 101)
    expect(answers.slice(0, 100).map((answer) => answer.status)).toEqual(Array(100).fill(202))
    expect(answers.slice(0, 100).map((answer) => JSON.parse(answer.body).memoriesSinceLastCompile)).toEqual(
      Array.from({ length: 100 }, (_, n) => n + 1)
    )
    expect(answers[100]!.status).toBe(200)
    expect(JSON.parse(answers[100]!.body)).toMatchObject({ bankId: "pipe", memoriesSinceLastCompile: 100 })
    // A new bank's first retain and a GET: the GET sees it (it answered 404 when it overtook the retain).
    const [first, read] = await pipelined(service, retainRequest("pipe-new") + getRequest("pipe-new"), 2)
    expect([first!.status, read!.status]).toEqual([202, 200])
  }, 20_000)
})

describe("the maximum number of banks (COMPILE_MAX_BANKS=3), durable acknowledgements", () => {
  let service: ServiceProcess
  beforeAll(async () => {
    service = await startService({ COMPILE_MAX_BANKS: "3", COMPILE_SIZE_THRESHOLD: "1000000", ACK_MODE: "durable" })
  })
  afterAll(async () => {
    expect((await service.stop()).code).toBe(0)
  })

  const send = (method: string, path: string, body?: unknown) =>
    fetch(`${service.base}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })

  it("a new bank past it is refused with 507 BankLimitReached on every write route; nothing is counted", async () => {
    for (const id of ["a", "b", "c"]) expect((await retain(service, id)).status).toBe(202)
    const refusals = [
      await send("POST", "/v1/banks/d/retain", { count: 1 }),
      await send("POST", "/v1/banks/e/forget"),
      await send("POST", "/v1/banks/f/compile"),
      await send("PUT", "/v1/banks/g/policy", { sizeThreshold: 5 }),
      // All or nothing: "a" is known, "x" is not.
      await send("POST", "/v1/retains", [{ bankId: "a", count: 5 }, { bankId: "x" }])
    ]
    for (const [answer, bankId] of refusals.map((answer, n) => [answer, ["d", "e", "f", "g", "x"][n]] as const)) {
      expect(answer.status).toBe(507)
      const body = await answer.json() as { _tag: string; bankId: string; message: string }
      expect(body).toMatchObject({ _tag: "BankLimitReached", bankId })
      expect(body.message).toContain("its maximum of 3 banks")
    }
    for (const id of ["d", "e", "f", "g", "x"]) expect((await send("GET", `/v1/banks/${id}`)).status).toBe(404)
    const a = await (await send("GET", "/v1/banks/a")).json() as { memoriesSinceLastCompile: number }
    expect(a.memoriesSinceLastCompile).toBe(1)
    expect(await (await send("GET", "/v1/queue")).json()).toMatchObject({ banks: 3 })
    // Known banks are served as ever.
    expect((await send("POST", "/v1/retains", [{ bankId: "a", count: 5 }, { bankId: "b" }])).status).toBe(202)
    expect((await send("PUT", "/v1/banks/c/policy", { sizeThreshold: 5 })).status).toBe(200)
  }, 20_000)

  it("pipelined retains take effect in order while each waits for its flush", async () => {
    const read = await (await send("GET", "/v1/banks/b")).json() as { memoriesSinceLastCompile: number }
    const before = read.memoriesSinceLastCompile
    const answers = await pipelined(service, retainRequest("b").repeat(20) + getRequest("b"), 21)
    expect(answers.map((answer) => answer.status)).toEqual([...Array(20).fill(202), 200])
    expect(JSON.parse(answers[20]!.body).memoriesSinceLastCompile).toBe(before + 20)
  }, 20_000)
})
