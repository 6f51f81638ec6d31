/**
 * The owner side of cluster mode: the partition entity. When this runner takes a partition's shard the entity starts,
 * builds a `CompileQueue` over that partition's banks (restored from Postgres) and answers the partition's RPCs; when
 * the shard goes (released, rebalanced, SIGTERM) the entity's scope closes the queue — running compiles finish or are
 * cut off within the hand-over timeout, then the final flush — before the cluster releases the shard lock, so a bank
 * is never compiled on two runners at once. Every partition queue shares the runner's engine permits.
 *
 * @internal
 */
import { Entity } from "@effect/cluster"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Duration, Effect, Layer, Option } from "effect"
import { BankStateStore, type BankStateStoreService } from "../BankStateStore.js"
import { CompileEngine, CompileError, type CompileEngineService } from "../CompileEngine.js"
import { CompileQueue, type CompileQueueService } from "../CompileQueue.js"
import type { CompileQueueOptions } from "../CompileQueueOptions.js"
import { PARTITIONS, PartitionEntity } from "./clusterProtocol.js"
import { partitionStore } from "./clusterStore.js"

/** What every partition of this runner shares: the engine behind the runner-wide permits, the store, the options. */
export class PartitionHost extends Context.Tag("effect-compile-trigger/PartitionHost")<PartitionHost, {
  readonly engine: CompileEngineService
  readonly storeFor: (partition: number) => BankStateStoreService
  readonly options: CompileQueueOptions
}>() {}

/**
 * The runner's engine: at most `concurrency` compiles at once across all the partitions it owns; the compile timeout
 * starts once a permit is held (waiting for one is not compiling). A runner-wide budget (issue 12) wraps here too.
 */
export const runnerEngine = (
  engine: CompileEngineService,
  concurrency: number,
  compileTimeout: Option.Option<Duration.Duration>
): CompileEngineService => {
  const permits = Effect.unsafeMakeSemaphore(concurrency)
  return {
    run: (bankId, job) => {
      const run = engine.run(bankId, job)
      return permits.withPermits(1)(
        Option.isNone(compileTimeout) ? run : Effect.timeoutFail(run, {
          duration: compileTimeout.value,
          onTimeout: () =>
            new CompileError({ bankId, message: `compile timed out after ${Duration.format(compileTimeout.value)}` })
        })
      )
    }
  }
}

/** Builds the host from the service's queue options; `handoverTimeout` replaces `shutdownTimeout` per partition. */
export const hostLayer = (
  queueOptions: CompileQueueOptions,
  handoverTimeout: Duration.DurationInput,
  table: BankStateStoreService
): Layer.Layer<PartitionHost, never, CompileEngine | SqlClient.SqlClient> =>
  Layer.effect(
    PartitionHost,
    Effect.gen(function*() {
      const engine = yield* CompileEngine
      const sql = yield* SqlClient.SqlClient
      const concurrency = queueOptions.concurrency ?? 1
      const maxQueueSize = queueOptions.maxQueueSize ?? 100
      return {
        engine: runnerEngine(
          engine,
          concurrency,
          queueOptions.compileTimeout === undefined ? Option.none() : Option.some(Duration.decode(queueOptions.compileTimeout))
        ),
        storeFor: (partition) => partitionStore(sql, table, partition),
        options: {
          ...queueOptions,
          // One partition may use every permit; the permits bound the runner.
          concurrency,
          compileTimeout: undefined,
          maxQueueSize: maxQueueSize <= 0 ? 0 : Math.ceil(maxQueueSize / PARTITIONS),
          shutdownTimeout: handoverTimeout
        }
      }
    })
  )

const handlers = (queue: CompileQueueService) =>
  PartitionEntity.of({
    Write: ({ payload }) =>
      Effect.sync(() => {
        for (const [bankId, count] of payload.retains) queue.unsafeNotifyRetain(bankId, count)
        for (const [bankId, count] of payload.forgets) queue.unsafeNotifyForget(bankId, count)
      }),
    Ping: () => Effect.void,
    BankState: ({ payload }) => Effect.map(queue.bankState(payload.bankId), Option.getOrNull),
    SetPolicy: ({ payload }) => queue.setPolicy(payload.bankId, payload.policy),
    ClearPolicy: ({ payload }) => queue.clearPolicy(payload.bankId),
    PolicyOf: ({ payload }) => Effect.map(queue.policyOf(payload.bankId), Option.getOrNull),
    ConfigFor: ({ payload }) => queue.configFor(payload.bankId),
    CompileNow: ({ payload }) => queue.compileNow(payload.bankId),
    Stats: () =>
      Effect.map(queue.stats, (stats) => ({
        ...stats,
        capacity: Number.isFinite(stats.capacity) ? stats.capacity : null
      })),
    ListBanks: ({ payload }) =>
      Effect.map(
        queue.listBanks({
          status: payload.status ?? undefined,
          limit: payload.limit,
          cursor: payload.cursor ?? undefined
        }),
        (page) => ({ banks: page.banks, nextCursor: Option.getOrNull(page.nextCursor) })
      ),
    Banks: ({ payload }) =>
      Effect.map(payload.status === "running" ? queue.runningBanks : queue.pendingBanks, (ids) => Array.from(ids)),
    State: () => Effect.map(queue.state, (state) => Array.from(state.values())),
    Sweep: () => queue.sweepNow,
    Drain: ({ payload }) =>
      queue.drain({ timeout: payload.timeoutMillis }).pipe(Effect.as(true), Effect.orElseSucceed(() => false))
  })

/** The partition entity on this runner: one queue per partition it owns, alive until its shard goes. */
export const ownerLayer = PartitionEntity.toLayer(
  Effect.gen(function*() {
    const address = yield* Entity.CurrentAddress
    const partition = Number(address.entityId)
    const host = yield* PartitionHost
    const queue = yield* CompileQueue.make(host.options).pipe(
      Effect.provideService(CompileEngine, { run: host.engine.run }),
      Effect.provideService(BankStateStore, host.storeFor(partition))
    )
    yield* Effect.logDebug(`partition ${partition}: taken over`)
    yield* Effect.addFinalizer(() => Effect.logDebug(`partition ${partition}: handing over`))
    return handlers(queue)
  }),
  // Never reaped for idleness: a taken-over partition's pending banks must compile with no message arriving.
  { maxIdleTime: Duration.infinity, concurrency: "unbounded" }
)
