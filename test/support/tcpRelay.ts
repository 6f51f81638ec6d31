/**
 * A TCP relay for tests that need a server's connections to break in a chosen way: each connection to the relay is
 * piped to a new connection of its own to the target, and closing either end closes both. `cutReplyAfter` breaks one
 * connection right after the client sent a given text: the server receives it, the client never hears back — as when
 * the network fails after a COMMIT left and before its answer came.
 */
import { connect, createServer, type Socket } from "node:net"
import type { AddressInfo } from "node:net"

/** The text to cut after, and what to call once a connection was cut. */
interface Cut {
  readonly text: string
  readonly done: () => void
}

/**
 * A relay listening on `host` (a free port) to `target`. A relayed connection that the network stops carrying stays
 * open on the target's side, as a real server's session would until its keepalive gives up.
 */
export const startRelay = async (host: string, target: { readonly host: string; readonly port: number }) => {
  const open = new Set<Socket>()
  let cut: Cut | undefined
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host)
    let cutting = false
    for (const socket of [client, upstream]) {
      open.add(socket)
      socket.setNoDelay(true)
      socket.once("close", () => {
        open.delete(socket)
        client.destroy()
        // A cut connection's upstream ends on its own, once the server read what it was sent.
        if (!cutting) upstream.destroy()
      })
      // An error closes the socket; the close above takes the other end down.
      socket.on("error", () => undefined)
    }
    client.on("data", (chunk: Buffer) => {
      if (cut === undefined || !chunk.includes(cut.text)) return void upstream.write(chunk)
      const { done } = cut
      cut = undefined
      cutting = true
      upstream.end(chunk)
      client.destroy()
      done()
    })
    upstream.pipe(client)
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, host, resolve)
  })
  return {
    port: (server.address() as AddressInfo).port,
    /** The next chunk any client sends that holds `text` reaches the server, and its connection is cut: resolves then. */
    cutReplyAfter: (text: string) =>
      new Promise<void>((resolve) => {
        cut = { text, done: resolve }
      }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy()
        server.close(() => resolve())
      })
  }
}
