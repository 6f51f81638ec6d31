/**
 * A webhook receiver that fences compiles as a careful compile engine does, for the cluster fault tests: every call
 * carries a fencing token (`fencingToken: {epoch, sequence}` in the body, `compile-fencing-token: <epoch>.<sequence>`
 * as a header; ordered by epoch, then sequence), and the receiver keeps the highest token it has seen per bank. A call
 * whose token is lower is refused at once (409); a call that is still the highest after `compileMs` of work commits
 * (200), one overtaken meanwhile by a higher token is refused at its commit (409). It records every call — bank,
 * token, the job's memories and forgets, start, end, outcome, and which of its addresses the call came in on (each
 * runner is given its own address, so a call says which runner made it).
 */
import { Either, Schema } from "effect"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as FencingToken from "../../src/FencingToken.js"
import { FENCING_TOKEN_HEADER } from "../../src/WebhookEngine.js"
import { type Call, noOverlaps } from "./clusterKit.js"

type Token = FencingToken.FencingToken

/** What a runner logs when the webhook refuses a compile of `token` as stale. */
export const refusalLine = (token: Token): string =>
  `refused the compile as stale (fencing token ${FencingToken.format(token)})`

/**
 * `running` until it ends; `committed` (answered 200), `refused` (409 on arrival), `refused-at-commit` (409 after its
 * work), or `cut off` (the caller went away first).
 */
export type Outcome = "running" | "committed" | "refused" | "refused-at-commit" | "cut off"

/**
 * One call. `end` is when it was committed, refused or cut off; `answered` (as for `startReceiver`'s calls) is true
 * once a committed call's 200 was written, so the calls' successes are the `answered` ones.
 */
export interface FencedCall extends Call {
  /** The body's token, or the header's when the body has none; undefined when neither has one. */
  readonly token: Token | undefined
  /** Set when the header does not say what the body says (either missing or malformed included). */
  readonly tokenMismatch: string | undefined
  /** The receiver's address the call came in on. */
  readonly via: string
  outcome: Outcome
}

const isToken = Schema.is(FencingToken.FencingToken)

const headerToken = (header: string | Array<string> | undefined): Token | undefined =>
  typeof header === "string" ? Either.getOrUndefined(FencingToken.parse(header)) : undefined

/** The call's token, and what is wrong with the header if it does not agree with the body. */
const readToken = (body: Record<string, unknown>, header: string | Array<string> | undefined) => {
  const inBody = isToken(body.fencingToken) ? body.fencingToken : undefined
  const inHeader = headerToken(header)
  const same = inBody !== undefined && inHeader !== undefined && FencingToken.compare(inBody, inHeader) === 0
  const mismatch = same || (inBody === undefined && header === undefined)
    ? undefined
    : `body ${inBody === undefined ? JSON.stringify(body.fencingToken ?? null) : FencingToken.format(inBody)}, ` +
      `header ${JSON.stringify(header ?? null)}`
  return { token: inBody ?? inHeader, mismatch }
}

const refuse = (call: FencedCall, response: ServerResponse, outcome: "refused" | "refused-at-commit", highest: Token) => {
  call.outcome = outcome
  call.end = Date.now()
  response.writeHead(409, { "content-type": "application/json" })
  const stale = `stale fencing token ${FencingToken.format(call.token!)}: ${FencingToken.format(highest)} seen`
  response.end(JSON.stringify({ error: stale }))
}

/**
 * The receiver, listening on each of `hosts` (a port each; default 127.0.0.1 only). `urlFor(host)` is the compile
 * URL on that address.
 */
export const startFencedReceiver = async (compileMs: number, hosts: ReadonlyArray<string> = ["127.0.0.1"]) => {
  const calls: Array<FencedCall> = []
  // The package's own guard for engines: the highest token seen per bank.
  const guard = FencingToken.unsafeMakeGuard()
  const handler = (via: string) => (request: IncomingMessage, response: ServerResponse) => {
    let text = ""
    request.on("data", (chunk: Buffer) => (text += chunk.toString()))
    request.on("end", () => {
      const body = JSON.parse(text) as Record<string, unknown>
      const { mismatch, token } = readToken(body, request.headers[FENCING_TOKEN_HEADER])
      const call: FencedCall = {
        bankId: String(body.bankId),
        memories: Number(body.memories),
        forgets: Number(body.forgets),
        reason: String(body.reason),
        attempt: Number(body.attempt),
        token,
        tokenMismatch: mismatch,
        via,
        start: Date.now(),
        end: undefined,
        answered: false,
        outcome: "running"
      }
      calls.push(call)
      const admission = token === undefined ? undefined : guard.unsafeAdmit(call.bankId, token)
      if (admission?._tag === "Stale") return refuse(call, response, "refused", admission.highest)
      work(call, request, response)
    })
  }
  /** `compileMs` of work, then the commit — unless the caller went away, or a higher token came meanwhile. */
  const work = (call: FencedCall, request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket
    const gone = () => {
      if (call.outcome === "running") call.outcome = "cut off"
      call.end ??= Date.now()
    }
    socket.once("end", gone)
    socket.once("close", gone)
    const commit = () =>
      // After this turn's I/O events: a FIN that arrived while this process was busy is seen first.
      setImmediate(() => {
        if (call.outcome !== "running" || response.destroyed) return gone()
        socket.off("end", gone)
        socket.off("close", gone)
        const now = guard.highest(call.bankId)
        if (call.token !== undefined && now !== undefined && FencingToken.isStale(call.token, now)) {
          return refuse(call, response, "refused-at-commit", now)
        }
        call.outcome = "committed"
        call.end = Date.now()
        response.writeHead(200, { "content-type": "application/json" })
        response.end(JSON.stringify({ bankId: call.bankId }), () => (call.answered = true))
      })
    commits.set(call, setTimeout(commit, compileMs))
    commitNow.set(call, commit)
  }
  /** Each running call's commit timer, and the commit itself (for `extend`). */
  const commits = new Map<FencedCall, ReturnType<typeof setTimeout>>()
  const commitNow = new Map<FencedCall, () => void>()
  /** The work of the running calls `which` selects goes on `ms` longer (its commit, and fencing check, come later). */
  const extend = (which: (call: FencedCall) => boolean, ms: number): number => {
    let extended = 0
    for (const call of calls) {
      if (call.outcome !== "running" || !which(call)) continue
      clearTimeout(commits.get(call))
      commits.set(call, setTimeout(commitNow.get(call)!, ms))
      extended++
    }
    return extended
  }
  const servers = await Promise.all(hosts.map(async (host) => {
    const server: Server = createServer(handler(host))
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(0, host, resolve)
    })
    return { host, server, port: (server.address() as AddressInfo).port }
  }))
  const urlFor = (host: string) => {
    const found = servers.find((server) => server.host === host)
    if (found === undefined) throw new Error(`the receiver does not listen on ${host}`)
    return `http://${host}:${found.port}/compile`
  }
  return {
    url: urlFor(hosts[0]!),
    urlFor,
    calls,
    extend,
    close: () =>
      Promise.all(servers.map(({ server }) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections()
          server.close(() => resolve())
        })
      )).then(() => undefined)
  }
}

/** The banks with two committed compiles at once (the one property fencing exists for). */
export const committedOverlaps = (calls: ReadonlyArray<FencedCall>): Array<string> =>
  noOverlaps(calls.filter((call) => call.outcome === "committed"))

/** `bankId` on a log line as a whole id (bank-5 is not on a line that says bank-50). */
const mentions = (line: string, bankId: string) =>
  new RegExp(`(^|[^\\w-])${bankId.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}($|[^\\w-])`).test(line)

/**
 * The refused calls whose refusal is not in the log of the runner that made them (`logOf(call)`; undefined when that
 * runner was killed, or is unknown, and its log proves nothing): a line saying `refused the compile as stale (fencing
 * token E.S)` that names the bank, or carries no `bankId` annotation at all.
 */
export const unloggedRefusals = (
  calls: ReadonlyArray<FencedCall>,
  logOf: (call: FencedCall) => string | undefined
): Array<FencedCall> =>
  calls.filter((call) => {
    if (call.outcome !== "refused" && call.outcome !== "refused-at-commit") return false
    const log = logOf(call)
    if (log === undefined) return false
    const line = refusalLine(call.token!)
    return !log.split("\n").some((entry) =>
      entry.includes(line) && (mentions(entry, call.bankId) || !entry.includes(`"bankId"`))
    )
  })
