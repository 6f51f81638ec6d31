/**
 * Puts one fuzz request on the wire as its transport says and collects the answer. Whole and chunked requests share
 * a keep-alive agent; cut-off and raw ones get a socket of their own, so a dropped connection never poisons the pool.
 */
import { Agent, request as httpRequest } from "node:http"
import { connect } from "node:net"
import type { FuzzRequest } from "./requests.js"

export interface Answer {
  readonly status: number
  readonly contentType: string | undefined
  readonly body: string
}

/** An answer, or why there was none (a transport error, or the client dropping the connection on purpose). */
export type Outcome = { readonly _tag: "answer"; readonly answer: Answer } | { readonly _tag: "none"; readonly reason: string }

/** Generous: on a loaded machine the service may take seconds to answer; a hang still fails the run. */
export const ANSWER_TIMEOUT_MILLIS = 60_000

export const makeAgent = (sockets: number) => new Agent({ keepAlive: true, maxSockets: sockets })

const headerObject = (headers: FuzzRequest["headers"], extra: Record<string, string>) => {
  const out: Record<string, string | Array<string>> = { ...extra }
  for (const [name, value] of headers) {
    const key = name.toLowerCase()
    const previous = out[key]
    out[key] = previous === undefined ? value : [...(Array.isArray(previous) ? previous : [previous]), value]
  }
  return out
}

const viaHttp = (base: URL, agent: Agent, fuzz: FuzzRequest, fresh = false): Promise<Outcome> =>
  new Promise<Outcome>((resolve) => {
    const own = fuzz.transport === "cutoff"
    // Explicit: Node's client chunks a GET or DELETE body only when told (it would send it unframed).
    const extra: Record<string, string> = fuzz.transport === "chunked"
      ? { "transfer-encoding": "chunked" }
      : { "content-length": String(fuzz.body.length) }
    if (fuzz.method === "GET" && fuzz.body.length === 0) delete extra["content-length"]
    let settled = false
    const settle = (outcome: Outcome) => {
      if (settled) return
      settled = true
      resolve(outcome)
    }
    const request = httpRequest({
      host: base.hostname,
      port: base.port,
      method: fuzz.method,
      path: fuzz.path,
      headers: headerObject(fuzz.headers, extra),
      agent: own || fresh ? false : agent
    }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () =>
        settle({
          _tag: "answer",
          answer: {
            status: response.statusCode ?? 0,
            contentType: response.headers["content-type"],
            body: Buffer.concat(chunks).toString("utf8")
          }
        }))
      response.on("error", (error) => settle({ _tag: "none", reason: error.message }))
    })
    request.on("error", (error) => {
      const code = (error as NodeJS.ErrnoException).code ?? ""
      // The server closed this idle keep-alive socket just as the request went out: it never saw the request.
      const stale = request.reusedSocket && code === "ECONNRESET" && !own
      settle({ _tag: "none", reason: `${stale ? "stale socket: " : ""}${code} ${error.message}` })
    })
    // A request the server never answers fails the run with what it was, rather than hanging it to its timeout.
    request.setTimeout(ANSWER_TIMEOUT_MILLIS, () => {
      request.destroy()
      settle({ _tag: "none", reason: `no answer within ${ANSWER_TIMEOUT_MILLIS / 1000} s` })
    })
    if (fuzz.transport === "cutoff") {
      request.write(fuzz.body.subarray(0, fuzz.cut))
      // Long enough for the bytes to arrive, then the connection goes away mid-body.
      setTimeout(() => {
        request.destroy()
        settle({ _tag: "none", reason: "cut off by the client" })
      }, 20)
      return
    }
    if (fuzz.transport === "chunked") {
      let from = 0
      for (const at of fuzz.splits) {
        if (at > from) request.write(fuzz.body.subarray(from, at))
        from = Math.max(from, at)
      }
      request.end(fuzz.body.subarray(from))
      return
    }
    request.end(fuzz.body)
  })

/** Bytes on a fresh socket; the answer is whatever comes back before the server closes (it must, on bad HTTP). */
const viaSocket = (base: URL, raw: Buffer): Promise<Outcome> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    const socket = connect(Number(base.port), base.hostname, () => socket.write(raw))
    // A hang still ends the run (see ANSWER_TIMEOUT_MILLIS).
    let timedOut = false
    socket.setTimeout(ANSWER_TIMEOUT_MILLIS, () => {
      timedOut = true
      socket.destroy()
    })
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    let reset = false
    socket.on("error", (error: NodeJS.ErrnoException) => (reset = error.code === "ECONNRESET"))
    socket.on("close", () => {
      const outcome = firstAnswer(Buffer.concat(chunks).toString("latin1"))
      // The server closes bad HTTP with bytes still unread (a 20 KB header); the kernel may then reset the connection
      // and drop the answer it carried before this side read it.
      resolve(
        outcome._tag === "answer"
          ? outcome
          : {
            _tag: "none",
            reason: reset ? "reset by the server" : timedOut ? `no answer within ${ANSWER_TIMEOUT_MILLIS / 1000} s` : outcome.reason
          }
      )
    })
  })

/** The first HTTP answer in `text` (a request whose body is malformed may get two: the route's, then the parser's). */
const firstAnswer = (text: string): Outcome => {
  const head = /^HTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n/.exec(text)
  if (head === null) return { _tag: "none", reason: `no HTTP answer: ${JSON.stringify(text.slice(0, 80))}` }
  const header = (name: string) => new RegExp(`^${name}: *(.*?) *$`, "im").exec(head[2]!)?.[1]
  const rest = text.slice(head[0].length)
  const length = header("content-length")
  const body = length !== undefined
    ? rest.slice(0, Number(length))
    : header("transfer-encoding") === "chunked"
    ? dechunk(rest)
    : rest
  return {
    _tag: "answer",
    answer: { status: Number(head[1]), contentType: header("content-type"), body: Buffer.from(body, "latin1").toString("utf8") }
  }
}

const dechunk = (text: string): string => {
  let out = ""
  for (let at = 0; ;) {
    const line = text.indexOf("\r\n", at)
    const size = line < 0 ? 0 : parseInt(text.slice(at, line), 16)
    if (!(size > 0)) return out
    out += text.slice(line + 2, line + 2 + size)
    at = line + 4 + size
  }
}

/**
 * Never throws: a request Node's client refuses to send is an outcome too. A request lost on a keep-alive socket the
 * server had just closed is sent again, once, on a fresh connection (as Node's documentation advises: the server
 * never received it).
 */
export const send = async (base: URL, agent: Agent, fuzz: FuzzRequest): Promise<Outcome> => {
  try {
    if (fuzz.transport === "raw" && fuzz.raw !== undefined) return await viaSocket(base, fuzz.raw)
    const outcome = await viaHttp(base, agent, fuzz)
    // Again on a connection of its own: the pool may hold more sockets the server has timed out.
    return outcome._tag === "none" && outcome.reason.startsWith("stale socket")
      ? await viaHttp(base, agent, fuzz, true)
      : outcome
  } catch (error) {
    return { _tag: "none", reason: `not sent: ${String(error)}` }
  }
}
