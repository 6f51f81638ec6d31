/**
 * What one @effect/rpc round trip costs in CPU by itself — a client process and a server process over a loopback
 * socket, msgpack, no cluster — with the payload of a routed batch (`--items` pairs of bank id and count, default
 * 350), one call at a time and 8 at once. Beside `bench:cluster`'s "owner is another runner" row, it tells how much of
 * a `Forward`'s cost is the RPC layer and how much @effect/cluster adds on top of it.
 *
 *   npm run -s bench:rpc -- [--items 350] [--calls 2000]
 *
 * @internal
 */
import { NodeRuntime, NodeSocket, NodeSocketServer } from "@effect/platform-node"
import { Rpc, RpcClient, RpcGroup, RpcSerialization, RpcServer } from "@effect/rpc"
import { Effect, Layer, Schema } from "effect"
import { fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import { freePort } from "../test/support/harness.js"
import { numberOption } from "./options.js"

class Routes extends RpcGroup.make(
  Rpc.make("Forward", {
    payload: { retains: Schema.Array(Schema.Tuple(Schema.String, Schema.Number)), sentAt: Schema.Number },
    success: Schema.Array(Schema.String)
  })
) {}

const ITEMS = numberOption("items", 350)
const CALLS = numberOption("calls", 2000)
const WARMUP_CALLS = 200

/** The server process: answers every `Forward` with no refused bank, and its CPU time when asked. */
const serve = (port: number) => {
  process.on("message", () => process.send?.(process.cpuUsage()))
  const server = RpcServer.layer(Routes).pipe(
    Layer.provide(Routes.toLayer({ Forward: () => Effect.succeed([]) })),
    Layer.provide(RpcServer.layerProtocolSocketServer),
    Layer.provide(RpcSerialization.layerMsgPack),
    Layer.provide(NodeSocketServer.layer({ port, host: "127.0.0.1" }))
  )
  NodeRuntime.runMain(Layer.launch(server))
}

const millis = (usage: NodeJS.CpuUsage) => (usage.user + usage.system) / 1000

/** The client: starts the server, warms up, then times `CALLS` calls at each concurrency. */
const measure = async () => {
  const port = await freePort()
  const server = fork(fileURLToPath(import.meta.url), ["--serve", String(port)], { execArgv: ["--import", "tsx"] })
  const serverCpu = () =>
    new Promise<number>((resolve) => {
      server.once("message", (usage) => resolve(millis(usage as NodeJS.CpuUsage)))
      server.send("cpu")
    })
  const payload = { retains: Array.from({ length: ITEMS }, (_, i) => [`bench-${i}`, 1] as const), sentAt: Date.now() }
  const connect = RpcClient.layerProtocolSocket({ retryTransientErrors: true }).pipe(
    Layer.provide(NodeSocket.layerNet({ port, host: "127.0.0.1" })),
    Layer.provide(RpcSerialization.layerMsgPack)
  )
  const program = Effect.gen(function*() {
    const client = yield* RpcClient.make(Routes)
    for (let i = 0; i < WARMUP_CALLS; i++) yield* client.Forward(payload)
    console.log(`bench:rpc — @effect/rpc over a loopback socket, msgpack, ${ITEMS} items a call, ${CALLS} calls a row\n`)
    console.log("| calls at once | calls/s | client CPU per call | server CPU per call |\n|---|---|---|---|")
    for (const concurrency of [1, 8]) {
      const serverBefore = yield* Effect.promise(serverCpu)
      const clientBefore = process.cpuUsage()
      const startedAt = Date.now()
      yield* Effect.forEach(Array.from({ length: CALLS }), () => client.Forward(payload), { concurrency, discard: true })
      const clientPerCall = millis(process.cpuUsage(clientBefore)) / CALLS
      const serverPerCall = ((yield* Effect.promise(serverCpu)) - serverBefore) / CALLS
      const rate = CALLS / ((Date.now() - startedAt) / 1000)
      console.log(`| ${concurrency} | ${rate.toFixed(0)} | ${clientPerCall.toFixed(2)} ms | ${serverPerCall.toFixed(2)} ms |`)
    }
  })
  try {
    await Effect.runPromise(Effect.scoped(Effect.provide(program, connect)))
  } finally {
    server.kill("SIGKILL")
  }
}

const serveAt = process.argv.indexOf("--serve")
if (serveAt !== -1) serve(Number(process.argv[serveAt + 1]))
else await measure()
