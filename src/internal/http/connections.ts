/**
 * The HTTP server's guard over its connections (bounds in `connectionLimits.ts`): Node's server with the deadlines
 * for a request's headers and for the whole request, a cap on open connections that sheds the oldest connection
 * still waiting for its first request, and the order of requests pipelined on one connection.
 *
 * @internal
 */
import { HttpServerRequest } from "@effect/platform"
import type { HttpApp } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Option, Runtime } from "effect"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { Socket } from "node:net"
import { WarningThrottle } from "../core/warningThrottle.js"
import { type ConnectionInput, resolveLimits, serverOptions } from "./connectionLimits.js"

/**
 * Per connection, the response of its latest request, which the next request waits for when pipelined. Kept aside,
 * in WeakMaps, rather than on Node's objects from a `ServerResponse` subclass: that way cost some 10 % of a retain's
 * CPU time in the HTTP A/B benchmark; this one is within its noise.
 */
const latestResponse = new WeakMap<Socket, ServerResponse>()

/** Per response: applied early (`inTurnApplied`), and the wake-up of the request waiting for it. */
const turns = new WeakMap<ServerResponse, { applied: boolean; wake: (() => void) | undefined }>()

const isSettled = (response: ServerResponse): boolean => response.writableEnded || turns.get(response)?.applied === true

/**
 * Per connection, the requests waiting for their turn, woken when it closes: a response queued behind an unanswered
 * one gets neither `finish` nor `close` when the connection dies, so its successor would wait forever. One listener
 * per connection, however many requests wait.
 */
const waitingOn = new WeakMap<Socket, Set<() => void>>()

/** Calls `wake` when `socket` closes (at once if it has); gives back the way to forget it. */
const onConnectionClose = (socket: Socket, wake: () => void): () => void => {
  if (socket.destroyed) {
    wake()
    return () => undefined
  }
  let waiting = waitingOn.get(socket)
  if (waiting === undefined) {
    const all = waiting = new Set()
    waitingOn.set(socket, all)
    socket.once("close", () => {
      for (const waiter of all) waiter()
      all.clear()
    })
  }
  waiting.add(wake)
  return () => void waiting.delete(wake)
}

/** Waits until `previous` is answered, applied, or gone (its connection closed). */
const settledOf = (previous: ServerResponse, socket: Socket): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    let woken = false
    let forget = (): void => undefined
    const turn = turns.get(previous) ?? { applied: false, wake: undefined }
    turns.set(previous, turn)
    const stopWaiting = () => {
      turn.wake = undefined
      previous.off("finish", wake)
      previous.off("close", wake)
      forget()
    }
    const wake = () => {
      if (woken) return
      woken = true
      stopWaiting()
      resume(Effect.void)
    }
    turn.wake = wake
    previous.once("finish", wake)
    previous.once("close", wake)
    forget = onConnectionClose(socket, wake)
    if (isSettled(previous)) wake()
    return Effect.sync(stopWaiting)
  })

const nodeObjects = (
  request: HttpServerRequest.HttpServerRequest
): { readonly socket: Socket; readonly response: ServerResponse } | undefined => {
  const source: unknown = NodeHttpServerRequest.toIncomingMessage(request)
  if (typeof source !== "object" || source === null || !("socket" in source)) return undefined
  return { socket: (source as IncomingMessage).socket as Socket, response: NodeHttpServerRequest.toServerResponse(request) }
}

/**
 * Runs `app` only once the request before it on the same connection has been answered (or has applied its change,
 * see `inTurnApplied`): requests pipelined on one connection take effect in the order they were sent. Node emits
 * them all at once, and each request runs on a fiber of its own, so a `GET` could read before a retain sent ahead
 * of it had read its body. A request whose predecessor was answered (every client that does not pipeline) runs at
 * once. Outermost, it runs as the request's fiber starts, and fibers start as Node emits the requests: in order.
 */
export const inConnectionOrder = <A, E, R>(app: HttpApp.HttpApp<A, E, R>): HttpApp.HttpApp<A, E, R> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const node = nodeObjects(request)
    if (node === undefined) return app
    const previous = latestResponse.get(node.socket)
    latestResponse.set(node.socket, node.response)
    return previous === undefined || isSettled(previous)
      ? app
      : Effect.zipRight(settledOf(previous, node.socket), app)
  })

/**
 * Lets the next request pipelined on this connection start before this one is answered: call it once this
 * request's change is applied, before a wait that does not change what the next one sees (a durable write waiting
 * for its flush).
 */
export const inTurnApplied: Effect.Effect<void> = Effect.map(
  Effect.serviceOption(HttpServerRequest.HttpServerRequest),
  (found) => {
    if (Option.isNone(found)) return
    const node = nodeObjects(found.value)
    if (node === undefined) return
    const turn = turns.get(node.response) ?? { applied: false, wake: undefined }
    turns.set(node.response, turn)
    turn.applied = true
    const wake = turn.wake
    turn.wake = undefined
    wake?.()
  }
)

/** How long a connection closed with its request's body unread keeps discarding what the client still sends. */
const LINGER_MILLIS = 2_000

/**
 * Closes `socket` after the answer the way nginx's lingering close does: the answer sent and our side shut, the rest
 * of the client's body is read and discarded until the client closes or `LINGER_MILLIS` pass. Destroyed at once (as
 * Node does for `connection: close`), the socket would drop unread bytes and the kernel would answer them with a
 * reset, which a client still sending its body often sees before the answer (`fetch failed` instead of a 413).
 */
export const closeLingering = (socket: Socket): void => {
  socket.destroySoon = () => {
    const timer = setTimeout(() => socket.destroy(), LINGER_MILLIS).unref()
    socket.once("close", () => clearTimeout(timer))
    socket.once("end", () => socket.destroy())
    socket.end()
    socket.resume()
  }
}

/**
 * The cap: past `maxConnections`, the oldest connection that has not sent a request yet is closed (a silent or
 * trickling one, most likely, and the cheapest to lose); when every connection has, the new one is. `shed` is told of
 * each connection closed for the cap. A request costs the cap nothing: the connections found to have sent one are
 * dropped from its candidates only when it looks for one to close.
 */
const capConnections = (server: Server, max: number, shed: () => void): void => {
  let open = 0
  /** Open connections in the order they opened, less those already found to have sent a request. */
  const candidates = new Set<Socket>()
  server.on("connection", (socket: Socket) => {
    open++
    candidates.add(socket)
    socket.once("close", () => {
      open--
      candidates.delete(socket)
    })
    if (open <= max) return
    let victim = socket
    for (const candidate of candidates) {
      candidates.delete(candidate)
      if (candidate === socket || !latestResponse.has(candidate)) {
        victim = candidate
        break
      }
    }
    victim.destroy()
    shed()
  })
}

/** Logs how many connections the cap closed (throttled: at once, then at most once a minute). */
const shedWarnings = (max: number): Effect.Effect<() => void> =>
  Effect.map(Effect.runtime<never>(), (runtime) => {
    const throttle = new WarningThrottle()
    return () => {
      const due = throttle.note(Date.now())
      if (due === undefined) return
      const message = `connection limit reached (${max} open connections): closed ${due.count} connection${
        due.count === 1 ? "" : "s"
      }${
        due.first ? "" : " since the last such warning"
      } (the oldest that had not sent a request yet, or a new one when every one had)`
      Runtime.runFork(runtime)(Effect.logWarning(message))
    }
  })

/** A Node HTTP server with the limits of `input` (defaults for the rest) and the guard installed. */
export const guardedServer = (input: ConnectionInput): Effect.Effect<Server> =>
  Effect.gen(function*() {
    const limits = yield* Effect.try({ try: () => resolveLimits(input), catch: (error) => error }).pipe(Effect.orDie)
    const server = createServer(serverOptions(limits))
    server.keepAliveTimeout = limits.keepAliveTimeoutMillis
    capConnections(server, limits.maxConnections, yield* shedWarnings(limits.maxConnections))
    return server
  })
