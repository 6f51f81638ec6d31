/**
 * The owner side of cluster mode. The runner keeps a slot per partition (`partitionSlots.ts`): a partition's
 * `CompileQueue` (restored from Postgres) runs in it while the cluster assigns the partition here and this runner
 * holds the partition's lock. The partition entity is the way in: its RPCs go to the slot's queue (starting it if it
 * is not running yet), and when its shard goes (released, rebalanced, SIGTERM) its close hands the partition over —
 * running compiles finish or are cut off within the hand-over timeout, then the final flush, then the lock — before
 * the cluster releases the shard lock. Every partition queue shares the runner's engine permits.
 *
 * @internal
 */
import { Entity, EntityId, Sharding } from "@effect/cluster"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Deferred, Duration, Effect, Exit, FiberId, Layer, Option } from "effect"
import { BankStateStore, type BankStateStoreService, bankStoreError, BankStoreError } from "../../BankStateStore.js"
import { CompileEngine, CompileError, type CompileEngineService } from "../../CompileEngine.js"
import type { CompileQueueService } from "../../CompileQueue.js"
import type { CompileQueueOptions } from "../../CompileQueueOptions.js"
import { DEFAULT_MAX_BANKS } from "../../BankLimit.js"
import { PARTITIONS, PartitionEntity, PartitionMoved } from "./protocol.js"
import { partitionStore } from "./store.js"
import { make as makeQueue, SharedBudget } from "../runtime/compileQueue.js"
import { type PartitionLocks, pgPartitionLocks } from "./partitionLocks.js"
import { type LocalPartitions, makePartitionSlots, type PartitionSlots } from "./partitionSlots.js"
import { pgPartitionMoves } from "./partitionMoves.js"
import type { GlobalBuckets } from "../core/tokenBucket.js"
import { addStops, describeStop, logStop, NO_STOP, type StopSummary } from "../runtime/stopSummary.js"

/**
 * The runner's partition slots, whether the cluster assigns a partition to this runner now, and whether a `Write` is
 * answered only once stored.
 */
export class PartitionHost extends Context.Tag("effect-compile-trigger/PartitionHost")<PartitionHost, {
  readonly slots: PartitionSlots
  readonly isAssigned: (partition: number) => boolean
  /** The queue still runs the partition here (a stop removes it before it closes the queue). */
  readonly isRunning: (partition: number, queue: CompileQueueService) => boolean
  readonly durable: boolean
  /**
   * The runner begins to stop (the router's close, before any partition's): every partition stopped from now on adds
   * its summary to the node's one `stopped: …` line, logged once they all stopped.
   */
  readonly beginStop: Effect.Effect<void>
}>() {}

/**
 * When the runner stops, its partitions' final flushes retry at most this long while Postgres fails (a hand-over
 * while the runner lives retries until the flush lands, or another runner holds the partition).
 */
const STOP_FLUSH_LIMIT = Duration.seconds(15)

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

/**
 * A partition's share of the queue size (0: unbounded): the size split exactly over the partitions, so that the shares
 * add up to it (10,000: 16 partitions of 157 banks and 48 of 156). A size below the number of partitions still gives
 * every partition one (a share of 0 would be unbounded).
 */
export const queueShare = (maxQueueSize: number, partition: number, partitions: number = PARTITIONS): number =>
  maxQueueSize <= 0
    ? 0
    : Math.max(1, Math.floor(maxQueueSize / partitions) + (partition < maxQueueSize % partitions ? 1 : 0))

/**
 * A partition queue's options: its share of the queue size; the runner's permits bound the compiles; the hand-over
 * bounds the close.
 */
const partitionOptions = (queueOptions: CompileQueueOptions, partition: number): CompileQueueOptions => ({
  ...queueOptions,
  // One partition may use every permit; the permits bound the runner.
  concurrency: queueOptions.concurrency ?? 1,
  compileTimeout: undefined,
  maxQueueSize: queueShare(queueOptions.maxQueueSize ?? 100, partition),
  // The cluster's maximum number of banks split the same way: a runner owning every partition holds at most it.
  maxBanks: queueShare(queueOptions.maxBanks ?? DEFAULT_MAX_BANKS, partition),
  // The hand-over (`closeGate`) waits for the running compiles first; then whatever is left is cut off at once.
  shutdownTimeout: 0
})

export interface HostOptions {
  readonly queueOptions: CompileQueueOptions
  readonly handoverTimeout: Duration.DurationInput
  /** The whole bank table (its `save` is every partition's). */
  readonly table: BankStateStoreService
  readonly local: LocalPartitions
  /** The runner's global budget buckets, shared by its partitions. */
  readonly budget: GlobalBuckets
  /** `Write` answers once the owner's flush stored it. */
  readonly durable: boolean
  /** This runner's address (`host:port`), as the partition moves it logs name it. */
  readonly runner: string
}

/**
 * The runner's partition slots over the queue options, the bank table and the runner's budget buckets. Closing it
 * hands over every partition still running here; it closes before the cluster releases the runner's shard locks.
 */
export const hostLayer = (
  { budget, durable, handoverTimeout, local, queueOptions, runner, table }: HostOptions
): Layer.Layer<PartitionHost, never, CompileEngine | SqlClient.SqlClient | Sharding.Sharding> =>
  Layer.scoped(
    PartitionHost,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const sharding = yield* Sharding.Sharding
      const permits = yield* Effect.makeSemaphore(queueOptions.concurrency ?? 1)
      const engine = withTimeout(
        yield* CompileEngine,
        queueOptions.compileTimeout === undefined ? Option.none() : Option.some(Duration.decode(queueOptions.compileTimeout))
      )
      const isAssigned = (partition: number): boolean => {
        const entityId = EntityId.make(String(partition))
        return sharding.hasShardId(sharding.getShardId(entityId, PartitionEntity.getShardGroup(entityId)))
      }
      const locks = yield* pgPartitionLocks
      // Completed STOP_FLUSH_LIMIT after the runner began to stop: the final flushes still failing give up then.
      const stopDeadline = Deferred.unsafeMake<void>(FiberId.none)
      const stops = nodeStops()
      const build = (partition: number) =>
        Effect.gen(function*() {
          const gate = makeGate(permits, engine)
          const lockLost = Deferred.unsafeMake<void>(FiberId.none)
          // A partition's changes are not dropped for an outage, however long: its final flush goes on until it lands.
          const finalFlushUntil = Effect.raceFirst(Deferred.await(lockLost), Deferred.await(stopDeadline))
          const store = fenced(partitionStore(sql, table, partition), locks, partition, lockLost)
          const onStopped = stops.partitionStopped(partition)
          const queue = yield* makeQueue(partitionOptions(queueOptions, partition), { finalFlushUntil, onStopped }).pipe(
            Effect.provideService(CompileEngine, { run: gate.run }),
            Effect.provideService(BankStateStore, store),
            Effect.provideService(SharedBudget, budget)
          )
          return { queue, closeGate: gate.close }
        })
      const moves = pgPartitionMoves(sql, runner)
      const slots = makePartitionSlots({ partitions: PARTITIONS, locks, isAssigned, build, local, handoverTimeout, moves })
      const armStopDeadline = Effect.forkDaemon(
        Effect.zipRight(Effect.sleep(STOP_FLUSH_LIMIT), Deferred.succeed(stopDeadline, undefined))
      )
      yield* Effect.addFinalizer(() =>
        Effect.all([stops.beginStop, armStopDeadline, slots.stopAll, stops.logNodeStop], { discard: true })
      )
      const isRunning = (partition: number, queue: CompileQueueService) => local.get(partition) === queue
      return { slots, isAssigned, isRunning, durable, beginStop: stops.beginStop }
    })
  )

/**
 * The node's stop summary: once the runner begins to stop, each partition's close adds its figures (a hand-over
 * while the runner lives logs its own, at debug level — at error level when it gave changes up); the node logs their
 * sum as one `stopped: …` line.
 */
const nodeStops = () => {
  let stopping = false
  let total: StopSummary = { ...NO_STOP, unstored: 0 }
  let partitions = 0
  return {
    beginStop: Effect.sync(() => {
      stopping = true
    }),
    partitionStopped: (partition: number) => (summary: StopSummary): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (!stopping) {
          // A hand-over that gave changes up (another node took the partition's lock) says so at error level.
          const line = `partition ${partition}: ${describeStop(summary)}`
          return (summary.unstored ?? 0) > 0 ? Effect.logError(line) : Effect.logDebug(line)
        }
        total = addStops(total, summary)
        partitions++
        return Effect.void
      }),
    logNodeStop: Effect.suspend(() =>
      logStop(total, ` (${partitions} ${partitions === 1 ? "partition" : "partitions"} stopped here)`)
    )
  }
}

/**
 * A partition's store that writes only while this runner holds the partition's lock: each write first makes sure of
 * the lock (one round trip on the lock connection), taking it again if it went with a connection (a Postgres restart
 * ends every session) and no other runner took it meanwhile. A runner that lost it keeps its changes unwritten rather
 * than overwrite the rows of the partition's new owner, and completes `lockLost`: its final flush gives up (those
 * changes are lost, and the close says how many).
 */
const fenced = (
  store: BankStateStoreService,
  locks: PartitionLocks,
  partition: number,
  lockLost: Deferred.Deferred<void>
): BankStateStoreService => {
  const heldElsewhere = new BankStoreError({
    operation: "save",
    message: `partition ${partition}: another runner holds its lock now; its changes here are not written`
  })
  const lockHeld = Effect.flatMap(
    Effect.mapError(locks.ensure(partition), bankStoreError("save")),
    (held) => held ? Effect.void : Effect.zipRight(Deferred.succeed(lockLost, undefined), Effect.fail(heldElsewhere))
  )
  return { ...store, save: (banks) => Effect.zipRight(lockHeld, store.save(banks)) }
}

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
  const close = (timeout: Duration.DurationInput): Effect.Effect<boolean> =>
    Effect.suspend(() => {
      closing = true
      if (active === 0) return Effect.succeed(true)
      idle = Deferred.unsafeMake<void>(FiberId.none)
      return Deferred.await(idle).pipe(Effect.interruptible, Effect.timeout(timeout), Effect.isSuccess)
    })
  return { run, close }
}

/** How long a call waits between attempts to start a partition assigned here whose lock the last owner still holds. */
const START_RETRY = Duration.millis(100)

/**
 * The partition's queue here: started if need be; while the last owner still hands it over, the call waits; once the
 * partition is no longer assigned here, `PartitionMoved` (the router asks again, and reaches the new owner).
 */
const queueOf = (host: PartitionHost["Type"], partition: number): Effect.Effect<CompileQueueService, PartitionMoved> =>
  Effect.flatMap(host.slots.start(partition), (queue) => {
    if (queue !== undefined) return Effect.succeed(queue)
    if (!host.isAssigned(partition)) return Effect.fail(new PartitionMoved({ partition }))
    return Effect.zipRight(Effect.sleep(START_RETRY), queueOf(host, partition))
  })

const handlers = (host: PartitionHost["Type"], partition: number) => {
  const queue = queueOf(host, partition)
  const on = <A, E>(f: (queue: CompileQueueService) => Effect.Effect<A, E>) => Effect.flatMap(queue, f)
  /**
   * A change reaches the queue only while it still runs the partition: one that is stopping ignores what it is
   * given (it stopped accepting), so the call is sent on to the next owner (`PartitionMoved`, which the router
   * retries) instead of being answered as counted.
   */
  const change = <A, E>(f: (queue: CompileQueueService) => Effect.Effect<A, E>) =>
    on((queue) =>
      Effect.suspend((): Effect.Effect<A, E | PartitionMoved> =>
        host.isRunning(partition, queue) ? f(queue) : Effect.fail(new PartitionMoved({ partition }))
      )
    )
  return PartitionEntity.of({
    Write: ({ payload }) =>
      change((queue) => {
        // Each bank on its own: a new bank past the partition's maximum is refused (the queue warns), the rest of the
        // batch is counted; the router learns which were refused.
        const refused: Array<string> = []
        for (const [bankId, count] of payload.retains) {
          if (queue.unsafeCheckRoom([bankId]) !== undefined) refused.push(bankId)
          queue.unsafeNotifyRetain(bankId, count)
        }
        for (const [bankId, count] of payload.forgets) {
          if (queue.unsafeCheckRoom([bankId]) !== undefined) refused.push(bankId)
          queue.unsafeNotifyForget(bankId, count)
        }
        return Effect.as(host.durable ? queue.flush : Effect.void, refused)
      }),
    Ping: () => on(() => Effect.void),
    BankState: ({ payload }) => on((queue) => Effect.map(queue.bankState(payload.bankId), Option.getOrNull)),
    SetPolicy: ({ payload }) => change((queue) => queue.setPolicy(payload.bankId, payload.policy)),
    ClearPolicy: ({ payload }) => change((queue) => queue.clearPolicy(payload.bankId)),
    PolicyOf: ({ payload }) => on((queue) => Effect.map(queue.policyOf(payload.bankId), Option.getOrNull)),
    ConfigFor: ({ payload }) => on((queue) => queue.configFor(payload.bankId)),
    CompileNow: ({ payload }) => change((queue) => queue.compileNow(payload.bankId)),
    Stats: () =>
      on((queue) =>
        Effect.map(queue.stats, (stats) => ({
          banks: stats.banks,
          pending: stats.pending,
          running: stats.running,
          queued: stats.queued,
          capacity: Number.isFinite(stats.capacity) ? stats.capacity : null,
          deferred: stats.budget.deferred,
          store: stats.store ?? null
        }))
      ),
    ListBanks: ({ payload }) =>
      on((queue) =>
        Effect.map(
          queue.listBanks({ status: payload.status ?? undefined, limit: payload.limit, cursor: payload.cursor ?? undefined }),
          (page) => ({ banks: page.banks, nextCursor: Option.getOrNull(page.nextCursor) })
        )
      ),
    Banks: ({ payload }) =>
      on((queue) =>
        Effect.map(payload.status === "running" ? queue.runningBanks : queue.pendingBanks, (ids) => Array.from(ids))
      ),
    State: () => on((queue) => Effect.map(queue.state, (state) => Array.from(state.values()))),
    Sweep: () => on((queue) => queue.sweepNow),
    Drain: ({ payload }) =>
      on((queue) =>
        queue.drain({ timeout: payload.timeoutMillis }).pipe(Effect.as(true), Effect.orElseSucceed(() => false))
      ),
    Budget: () => on((queue) => queue.budget),
    RecentCompiles: ({ payload }) =>
      on((queue) =>
        queue.recentCompiles({
          limit: payload.limit,
          bankId: payload.bankId ?? undefined,
          outcome: payload.outcome ?? undefined
        })
      ),
    RunningCompiles: ({ payload }) => on((queue) => queue.runningCompiles(payload.bankId ?? undefined))
  })
}

/**
 * The partition entity on this runner: a way into the partition's slot. Its build does no I/O, so the cluster
 * registers it at once; its close (the shard leaving, or the runner stopping) hands the partition over.
 */
export const ownerLayer = PartitionEntity.toLayer(
  Effect.gen(function*() {
    const partition = Number((yield* Entity.CurrentAddress).entityId)
    const host = yield* PartitionHost
    const sharding = yield* Sharding.Sharding
    // Sharding shuts down before it closes the entities when the runner stops; a shard that moves closes them alone.
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(sharding.isShutdown, (stopping) => host.slots.stop(partition, stopping ? "stopping" : "reassigned"))
    )
    return handlers(host, partition)
  }),
  // Not reaped for idleness: closing the entity hands its partition over, and that is for the shard's moves alone.
  { maxIdleTime: Duration.infinity, concurrency: "unbounded" }
)
