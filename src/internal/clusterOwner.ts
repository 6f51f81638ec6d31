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
import { Context, Deferred, Duration, Effect, Exit, FiberId, Layer, Option } from "effect"
import { BankStateStore, type BankStateStoreService } from "../BankStateStore.js"
import { CompileEngine, CompileError, type CompileEngineService } from "../CompileEngine.js"
import { CompileQueue, type CompileQueueService } from "../CompileQueue.js"
import type { CompileQueueOptions } from "../CompileQueueOptions.js"
import { PARTITIONS, PartitionEntity } from "./clusterProtocol.js"
import { SharedBudget } from "./compileQueue.js"
import type { GlobalBuckets } from "./tokenBucket.js"
import { partitionStore } from "./clusterStore.js"

/** What every partition of this runner shares: the engine permits, the engine, the store, the options. */
export class PartitionHost extends Context.Tag("effect-compile-trigger/PartitionHost")<PartitionHost, {
  /** `COMPILE_CONCURRENCY` permits for the whole runner, across its partitions. */
  readonly permits: Effect.Semaphore
  /** The user's engine under the compile timeout (which starts once a permit is held). */
  readonly engine: CompileEngineService
  readonly storeFor: (partition: number) => BankStateStoreService
  readonly options: CompileQueueOptions
  readonly handoverTimeout: Duration.Duration
  /** The queues of the partitions running here, while they run: the router calls them directly. */
  readonly local: LocalPartitions
  /** The runner's global budget buckets, drawn on by all its partitions (their per-bank buckets are their own). */
  readonly budget: GlobalBuckets
}>() {}

/** Partition number → its queue, for the partitions this runner runs now (added once restored, removed first at close). */
export type LocalPartitions = Map<number, CompileQueueService>

const withTimeout = (
  engine: CompileEngineService,
  compileTimeout: Option.Option<Duration.Duration>
): CompileEngineService =>
  Option.isNone(compileTimeout) ? engine : {
    run: (bankId, job) =>
      Effect.timeoutFail(engine.run(bankId, job), {
        duration: compileTimeout.value,
        onTimeout: () =>
          new CompileError({ bankId, message: `compile timed out after ${Duration.format(compileTimeout.value)}` })
      })
  }

/** Builds the host from the service's queue options and the runner's budget buckets. */
export const hostLayer = (
  queueOptions: CompileQueueOptions,
  handoverTimeout: Duration.DurationInput,
  table: BankStateStoreService,
  local: LocalPartitions,
  budget: GlobalBuckets
): Layer.Layer<PartitionHost, never, CompileEngine | SqlClient.SqlClient> =>
  Layer.effect(
    PartitionHost,
    Effect.gen(function*() {
      const engine = yield* CompileEngine
      const sql = yield* SqlClient.SqlClient
      const concurrency = queueOptions.concurrency ?? 1
      const maxQueueSize = queueOptions.maxQueueSize ?? 100
      return {
        permits: yield* Effect.makeSemaphore(concurrency),
        engine: withTimeout(
          engine,
          queueOptions.compileTimeout === undefined ? Option.none() : Option.some(Duration.decode(queueOptions.compileTimeout))
        ),
        storeFor: (partition) => partitionStore(sql, table, partition),
        handoverTimeout: Duration.decode(handoverTimeout),
        local,
        budget,
        options: {
          ...queueOptions,
          // One partition may use every permit; the permits bound the runner.
          concurrency,
          compileTimeout: undefined,
          maxQueueSize: maxQueueSize <= 0 ? 0 : Math.ceil(maxQueueSize / PARTITIONS),
          // The hand-over (`gate`) waits for the running compiles first; then whatever is left is cut off at once.
          shutdownTimeout: 0
        }
      }
    })
  )

/**
 * One partition's way into the engine. While it is open a compile takes a runner permit and runs; once the partition
 * is leaving, no new compile starts (its worker waits, to be cut off by the queue's close: the bank stays pending for
 * the next owner) and `close` waits for the running ones, up to the hand-over timeout.
 */
const makeGate = (permits: Effect.Semaphore, engine: CompileEngineService) => {
  let closing = false
  let active = 0
  let idle: Deferred.Deferred<void> | undefined
  const leave = Effect.sync(() => {
    if (--active === 0 && idle !== undefined) Deferred.unsafeDone(idle, Exit.void)
  })
  const run: CompileEngineService["run"] = (bankId, job) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(permits.take(1)), () => {
        if (closing) return Effect.zipRight(permits.release(1), restore(Effect.never))
        active++
        return restore(engine.run(bankId, job)).pipe(Effect.ensuring(Effect.zipRight(permits.release(1), leave)))
      })
    )
  const close = (timeout: Duration.Duration): Effect.Effect<boolean> =>
    Effect.suspend(() => {
      closing = true
      if (active === 0) return Effect.succeed(true)
      idle = Deferred.unsafeMake<void>(FiberId.none)
      return Deferred.await(idle).pipe(Effect.interruptible, Effect.timeout(timeout), Effect.isSuccess)
    })
  return { run, close }
}

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
        banks: stats.banks,
        pending: stats.pending,
        running: stats.running,
        queued: stats.queued,
        capacity: Number.isFinite(stats.capacity) ? stats.capacity : null,
        deferred: stats.budget.deferred
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
      queue.drain({ timeout: payload.timeoutMillis }).pipe(Effect.as(true), Effect.orElseSucceed(() => false)),
    Budget: () => queue.budget,
    RecentCompiles: ({ payload }) =>
      queue.recentCompiles({
        limit: payload.limit,
        bankId: payload.bankId ?? undefined,
        outcome: payload.outcome ?? undefined
      }),
    RunningCompiles: ({ payload }) => queue.runningCompiles(payload.bankId ?? undefined)
  })

/** The partition entity on this runner: one queue per partition it owns, alive until its shard goes. */
export const ownerLayer = PartitionEntity.toLayer(
  Effect.gen(function*() {
    const address = yield* Entity.CurrentAddress
    const partition = Number(address.entityId)
    const host = yield* PartitionHost
    const gate = makeGate(host.permits, host.engine)
    const queue = yield* CompileQueue.make(host.options).pipe(
      Effect.provideService(CompileEngine, { run: gate.run }),
      Effect.provideService(BankStateStore, host.storeFor(partition)),
      Effect.provideService(SharedBudget, host.budget)
    )
    yield* Effect.logDebug(`partition ${partition}: taken over`)
    host.local.set(partition, queue)
    // Added after the queue, so it runs before the queue's own close (which then cuts off what is left, and flushes).
    // From its first step on, the router sends this partition's calls through the cluster (to the next owner).
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(Effect.zipRight(Effect.sync(() => host.local.delete(partition)), gate.close(host.handoverTimeout)), (finished) =>
        Effect.logDebug(
          `partition ${partition}: handing over${
            finished ? "" : `; compiles still running after ${Duration.format(host.handoverTimeout)} are cut off`
          }`
        ))
    )
    return handlers(queue)
  }),
  // Never reaped for idleness: a taken-over partition's pending banks must compile with no message arriving.
  { maxIdleTime: Duration.infinity, concurrency: "unbounded" }
)
