/**
 * Requests pipelined on one connection take their turns in order, and a connection that dies releases every request
 * still waiting for its turn (Node gives a response queued behind an unanswered one neither `finish` nor `close`).
 */
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createServer } from "node:http"
import { type AddressInfo, connect } from "node:net"
import { inConnectionOrder } from "../../src/internal/http/connections.js"

/** Serves `inConnectionOrder(app)` on a free port; `/slow` takes 300 ms. Records the paths as they start. */
const serveRecorded = Effect.gen(function*() {
  const started: Array<string> = []
  const app = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    started.push(request.url)
    if (request.url === "/slow") yield* Effect.sleep("300 millis")
    return HttpServerResponse.text(request.url)
  })
  const server = createServer()
  const http = yield* NodeHttpServer.make(() => server, { host: "127.0.0.1", port: 0 })
  yield* http.serve(inConnectionOrder(app))
  return { started, port: (server.address() as AddressInfo).port }
})

const pipelined = (port: number, paths: ReadonlyArray<string>) =>
  Effect.async<ReturnType<typeof connect>>((resume) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(paths.map((path) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`).join(""))
      resume(Effect.succeed(socket))
    })
    socket.on("error", () => undefined)
  })

describe("requests pipelined on one connection", () => {
  it.live("start in the order they were sent", () =>
    Effect.scoped(Effect.gen(function*() {
      const { port, started } = yield* serveRecorded
      const socket = yield* pipelined(port, ["/slow", "/b", "/c"])
      yield* Effect.sleep("600 millis")
      expect(started).toEqual(["/slow", "/b", "/c"])
      socket.destroy()
    })))

  it.live("when the connection dies, every request waiting for its turn is released", () =>
    Effect.scoped(Effect.gen(function*() {
      const { port, started } = yield* serveRecorded
      const socket = yield* pipelined(port, ["/slow", "/b", "/c", "/d"])
      yield* Effect.sleep("100 millis")
      socket.destroy()
      // Before: /c and /d waited forever (their fibers and requests never freed).
      yield* Effect.sleep("800 millis")
      expect(started).toEqual(["/slow", "/b", "/c", "/d"])
    })))
})
