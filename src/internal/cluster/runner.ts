/**
 * This process as a runner of the cluster: what `NodeClusterSocket.layer({ storage: "sql" })` assembles (socket
 * runner, ping health checks, SQL message and runner storage, msgpack), with two differences that matter here: the
 * sockets between runners set TCP_NODELAY (Nagle's algorithm held small RPC replies back by tens of milliseconds on
 * loopback), and the `ShardingConfig` is exactly the one given — nothing read from `PORT`/`HOST` or other variables.
 *
 * @internal
 */
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import * as Runners from "@effect/cluster/Runners"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SocketRunner from "@effect/cluster/SocketRunner"
import * as SqlMessageStorage from "@effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "@effect/cluster/SqlRunnerStorage"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import { Socket } from "@effect/platform/Socket"
import * as RpcClient from "@effect/rpc/RpcClient"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import { Effect, Layer, Option } from "effect"

const clientProtocol = Layer.effect(
  Runners.RpcClientProtocol,
  Effect.gen(function*() {
    const serialization = yield* RpcSerialization.RpcSerialization
    return Effect.fnUntraced(function*(address) {
      const socket = yield* NodeSocket.makeNet({
        openTimeout: 1000,
        timeout: 5500,
        host: address.host,
        port: address.port,
        noDelay: true
      })
      return yield* RpcClient.makeProtocolSocket().pipe(
        Effect.provideService(Socket, socket),
        Effect.provideService(RpcSerialization.RpcSerialization, serialization)
      )
    }, Effect.orDie)
  })
)

const socketServer = Layer.unwrapEffect(Effect.gen(function*() {
  const config = yield* ShardingConfig.ShardingConfig
  const listen = Option.orElse(config.runnerListenAddress, () => config.runnerAddress)
  if (Option.isNone(listen)) return yield* Effect.die("the runner needs a listen address")
  return NodeSocketServer.layer({ host: listen.value.host, port: listen.value.port, noDelay: true })
}))

/** The runner on the `SqlClient` in context, with exactly `config`. */
export const runnerLayer = (config: ShardingConfig.ShardingConfig["Type"]) =>
  Layer.provide(SocketRunner.layer, [socketServer, clientProtocol]).pipe(
    Layer.provide(RunnerHealth.layerPing.pipe(Layer.provide(Runners.layerRpc), Layer.provide(clientProtocol))),
    Layer.provideMerge(Layer.orDie(SqlMessageStorage.layer)),
    Layer.provide(Layer.orDie(SqlRunnerStorage.layer)),
    Layer.provide(ShardingConfig.layer(config)),
    Layer.provide(RpcSerialization.layerMsgPack)
  )
