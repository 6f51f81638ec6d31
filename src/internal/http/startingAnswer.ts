/**
 * What the service's port answers between binding it and serving the API (while the queue restores its banks):
 * `/healthz` is alive, everything else is `503 NotReady` with `state: "starting"` (what `/readyz` answers then) and
 * `Retry-After: 1`. Binding first means a second instance on a port in use fails before it opens the store.
 *
 * @internal
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http"

const STARTING = JSON.stringify({ _tag: "NotReady", state: "starting", message: "the service is starting" })
const ALIVE = JSON.stringify({ status: "ok" })

const isHealthz = (request: IncomingMessage): boolean =>
  (request.method === "GET" || request.method === "HEAD") &&
  (request.url === "/healthz" || request.url?.startsWith("/healthz?") === true)

/**
 * Answers every request on `server` until another request listener (the API's handler, called after this one) is
 * attached; returns the way to detach it.
 */
export const answerWhileStarting = (server: Server): () => void => {
  const answer = (request: IncomingMessage, response: ServerResponse): void => {
    if (server.listenerCount("request") > 1) return
    const alive = isHealthz(request)
    const body = alive ? ALIVE : STARTING
    response.writeHead(alive ? 200 : 503, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      ...(alive ? {} : { "retry-after": "1" })
    })
    response.end(body)
  }
  server.on("request", answer)
  return () => void server.off("request", answer)
}
