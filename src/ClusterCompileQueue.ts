/**
 * Cluster mode: the compile queue spread over several runners with `@effect/cluster` over Postgres (optional peers
 * `@effect/cluster`, `@effect/rpc`, `@effect/workflow`, `@effect/sql-pg`, `@effect/platform-node`). Banks fall into 64
 * fixed partitions; each partition is one cluster entity whose owner runs a `CompileQueue` over its banks. The layer
 * provides a `CompileQueue` whose every call is routed to the owner of the bank's partition, so an application (or
 * the HTTP service) uses it exactly like the single-node queue. Import it from
 * `effect-compile-trigger/ClusterCompileQueue`.
 *
 * @since 0.1.0
 */
import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import type { SocketServerError } from "@effect/platform/SocketServer"
import type * as SqlClient from "@effect/sql/SqlClient"
import { Clock, type ConfigError, Context, Duration, Effect, Either, Layer, Option } from "effect"
import type { BankStoreError } from "./BankStateStore.js"
import type { CompileEngine } from "./CompileEngine.js"
import { CompileQueue } from "./CompileQueue.js"
import { type CompileQueueOptions, resolve } from "./CompileQueueOptions.js"
import { hostLayer, ownerLayer, PartitionHost } from "./internal/cluster/owner.js"
import { PARTITIONS } from "./internal/cluster/protocol.js"
import { makeRouter } from "./internal/cluster/router.js"
import { runnerLayer } from "./internal/cluster/runner.js"
import { setupSchema } from "./internal/cluster/store.js"
import type { AckMode } from "./ServiceConfig.js"
import { budgetLimits } from "./internal/runtime/compileQueue.js"
import { LocalPartitions } from "./internal/cluster/partitionSlots.js"
import { globalBuckets } from "./internal/core/tokenBucket.js"
import { WriteAcks } from "./internal/runtime/writeAcks.js"

/**
 * The cluster settings cluster mode uses by default, tuned so that a killed runner's shards move within 10 seconds
 * (the package's defaults take 10–40 s): a runner that fails the health check (every second, ~2.5 s of pings) or
 * whose heartbeat is 5 s old is dropped; assignments and unprocessed messages are re-read every second. Shard locks
 * are rows that expire 5 s after their last refresh (not session advisory locks, which a frozen runner would keep for
 * as long as its connection lives). Partitions themselves move by their own leases, which win over the shards.
 * `shardsPerGroup` must be the same on every runner.
 *
 * @since 0.1.0
 */
export const defaultShardingConfig: Partial<ShardingConfig.ShardingConfig["Type"]> = {
  shardsPerGroup: PARTITIONS,
  // Shard locks as rows that expire unless refreshed, not session advisory locks: a frozen runner (or one cut off from
  // the network) keeps a session, and with it every shard, for as long as its TCP connection lives.
  shardLockDisableAdvisory: true,
  // Lock operations get a third of the expiration (1.7 s) before the runner counts its locks as lost.
  shardLockRefreshInterval: Duration.seconds(2),
  shardLockExpiration: Duration.seconds(5),
  runnerHealthCheckInterval: Duration.seconds(1),
  refreshAssignmentsInterval: Duration.seconds(1),
  entityMessagePollInterval: Duration.seconds(1),
  entityTerminationTimeout: Duration.seconds(15),
  // Messages to this runner's own partitions are not serialized (the handlers never mutate a payload).
  simulateRemoteSerialization: false
}

/**
 * @since 0.1.0
 */
export interface ClusterCompileQueueOptions {
  /** The queue's options; `concurrency` (and the queue size) are for the whole runner, across its partitions. */
  readonly queue?: CompileQueueOptions | undefined
  /** Where the other runners reach this one (`CLUSTER_RUNNER_ADDRESS`). */
  readonly runnerAddress: { readonly host: string; readonly port: number }
  /** Where this runner listens for them (default: `runnerAddress`). */
  readonly listenAddress?: { readonly host: string; readonly port: number } | undefined
  /**
   * When a partition leaves this runner (its shard moves, or the runner stops), how long its running compiles may go
   * on before they are cut off and left pending for the next owner (default 5 seconds); queued ones are not started.
   * The partition's lock and the shard lock are released only after that, so a bank never compiles on two runners at
   * once.
   */
  readonly handoverTimeout?: Duration.DurationInput | undefined
  /**
   * `durable`: a write is confirmed once the flush holding it committed at the partition's owner (see
   * `CompileTriggerServer`'s `ackMode`); `memory` (default): once the owner counted it.
   */
  readonly ackMode?: AckMode | undefined
  /** Overrides of `defaultShardingConfig` (its address fields are set from the options above). */
  readonly shardingConfig?: Partial<ShardingConfig.ShardingConfig["Type"]> | undefined
}

/**
 * How often a runner starts the partitions assigned to it that do not run (one taken over from a dead runner must run
 * its restored pending compiles with no message arriving) and hands over the ones no longer assigned.
 */
const RECONCILE_INTERVAL = Duration.millis(500)

/**
 * This runner of the cluster, and a routed `CompileQueue`. Needs the user's `CompileEngine` and a Postgres `SqlClient`
 * (the bank table and the cluster's tables live there; one cluster per database). Closing it hands the runner's
 * partitions over: pending writes reach their owners, each partition's queue closes and flushes, then the shard locks
 * are released.
 *
 * @since 0.1.0
 */
export const layer = (
  options: ClusterCompileQueueOptions
): Layer.Layer<
  CompileQueue | WriteAcks,
  BankStoreError | ConfigError.ConfigError | SocketServerError,
  CompileEngine | SqlClient.SqlClient
> => {
  const queueOptions = options.queue ?? {}
  const resolved = resolve(queueOptions)
  if (Either.isLeft(resolved)) return Layer.die(resolved.left)
  const shardingConfig: Partial<ShardingConfig.ShardingConfig["Type"]> = {
    ...defaultShardingConfig,
    ...options.shardingConfig,
    // Explicit, so that the service's own PORT/HOST variables never become the runner's address.
    runnerAddress: Option.some(RunnerAddress.make(options.runnerAddress.host, options.runnerAddress.port)),
    runnerListenAddress: Option.some(RunnerAddress.make((options.listenAddress ?? options.runnerAddress).host, (options.listenAddress ?? options.runnerAddress).port))
  }
  const handoverTimeout = options.handoverTimeout ?? Duration.seconds(5)
  return Layer.unwrapEffect(Effect.gen(function*() {
    const config = { ...ShardingConfig.defaults, ...shardingConfig }
    const table = yield* setupSchema(config)
    const Runner = runnerLayer(config)
    const local = new LocalPartitions()
    // The runner's budget: every partition it owns draws on these global buckets (not kept across restarts).
    const limits = budgetLimits(resolved.right.budget)
    const buckets = globalBuckets(limits, yield* Clock.currentTimeMillis)
    const durable = options.ackMode === "durable"
    const Owners = ownerLayer.pipe(
      Layer.provideMerge(hostLayer({
        queueOptions,
        handoverTimeout,
        table,
        local,
        budget: buckets,
        durable,
        runner: `${options.runnerAddress.host}:${options.runnerAddress.port}`
      }))
    )
    const Router = Layer.scopedContext(Effect.gen(function*() {
      const { acks, service } = yield* makeRouter(resolved.right.config, local, { limits, buckets }, durable)
      // In the router's scope, closed first: while the partitions hand over at a stop, none is started again.
      const { beginStop, sendOnThrough, slots } = yield* PartitionHost
      yield* Effect.addFinalizer(() => beginStop) // from here on, partitions that stop add up to the node's stop line
      // A partition lost while it held counts it could not store sends them to its new owner as writes.
      sendOnThrough((retains, forgets) =>
        Effect.suspend(() => {
          for (const [bankId, count] of retains) service.unsafeNotifyRetain(bankId, count)
          for (const [bankId, count] of forgets) service.unsafeNotifyForget(bankId, count)
          return acks.settle([...retains.keys(), ...forgets.keys()])
        })
      )
      yield* slots.reconcile.pipe(Effect.zipRight(Effect.sleep(RECONCILE_INTERVAL)), Effect.forever, Effect.forkScoped)
      return Context.make(CompileQueue, service).pipe(Context.add(WriteAcks, acks))
    }))
    // The router is built after the owners and closed before them: its last writes still find their owners here.
    return Router.pipe(Layer.provide(Owners), Layer.provide(Runner))
  }))
}
