/**
 * A compile endpoint and its cancel URL on 127.0.0.1 for the fencing tests: records every call (path, headers, raw
 * body) and answers as the test says — at once, after a delay, or never (until released).
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"

export interface ReceivedCall {
  /** `/compile` or `/cancel`. */
  readonly path: string
  readonly headers: IncomingHttpHeaders
  readonly rawBody: string
  readonly body: { readonly bankId: string; readonly fencingToken: { readonly epoch: number; readonly sequence: number } }
  /** Set once the answer was written in full. */
  answered: boolean
}

export type Answer = { readonly status: number; readonly body?: string; readonly delayMs?: number } | "hang"

export interface FencingReceiver {
  readonly base: string
  readonly calls: Array<ReceivedCall>
  /** What each call is answered (default: 200 `{}`). */
  answer: (call: ReceivedCall) => Answer
  /** Resolves with the first call to `path` (for `bankId` when given) that matches, made or future. */
  readonly waitFor: (path: string, bankId?: string, timeoutMs?: number) => Promise<ReceivedCall>
  /** Answers the calls left hanging, 200 `{}`. */
  readonly release: () => void
  readonly close: () => Promise<void>
}

export const startFencingReceiver = async (): Promise<FencingReceiver> => {
  const calls: Array<ReceivedCall> = []
  const waiters: Array<() => void> = []
  const hanging = new Set<ServerResponse>()
  const respond = (call: ReceivedCall, response: ServerResponse, status: number, body: string) => {
    if (response.destroyed) return
    response.writeHead(status, { "content-type": "application/json" })
    response.end(body, () => (call.answered = true))
  }
  const server: Server = createServer((request, response) => {
    let rawBody = ""
    request.setEncoding("utf8")
    request.on("data", (chunk: string) => (rawBody += chunk))
    request.on("end", () => {
      const call: ReceivedCall = {
        path: request.url ?? "",
        headers: request.headers,
        rawBody,
        body: JSON.parse(rawBody) as ReceivedCall["body"],
        answered: false
      }
      calls.push(call)
      waiters.splice(0).forEach((wake) => wake())
      const answer = receiver.answer(call)
      if (answer === "hang") {
        hanging.add(response)
        response.once("close", () => hanging.delete(response))
        return
      }
      const send = () => respond(call, response, answer.status, answer.body ?? "{}")
      if (answer.delayMs === undefined) send()
      else setTimeout(send, answer.delayMs)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const waitFor = (path: string, bankId?: string, timeoutMs = 10_000) =>
    new Promise<ReceivedCall>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no call to ${path} (${bankId ?? "any bank"}) within ${timeoutMs} ms`)), timeoutMs)
      const check = () => {
        const call = calls.find((call) => call.path === path && (bankId === undefined || call.body.bankId === bankId))
        if (call === undefined) return void waiters.push(check)
        clearTimeout(timer)
        resolve(call)
      }
      check()
    })

  const receiver: FencingReceiver = {
    base,
    calls,
    answer: () => ({ status: 200 }),
    waitFor,
    release: () => {
      for (const response of hanging) {
        response.writeHead(200, { "content-type": "application/json" })
        response.end("{}")
      }
      hanging.clear()
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const response of hanging) response.destroy()
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
  return receiver
}

/** Whether `call` carries a valid `v1=` signature by `secret` of its timestamp and raw body (docs/service.md's rule). */
export const signedBy = (call: ReceivedCall, secret: string): boolean => {
  const timestamp = String(call.headers["webhook-timestamp"] ?? "")
  const expected = createHmac("sha256", secret).update(`${timestamp}.${call.rawBody}`).digest()
  return String(call.headers["webhook-signature"] ?? "").split(",").some((entry) => {
    const given = Buffer.from(entry.trim().replace(/^v1=/, ""), "hex")
    return given.length === expected.length && timingSafeEqual(given, expected)
  })
}
