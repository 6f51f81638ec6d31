/**
 * The owner side of cluster mode. The runner keeps a slot per partition (`partitionSlots.ts`): a partition's
 * `CompileQueue` (restored from Postgres) runs in it while the cluster assigns the partition here and this runner
 * holds the partition's lease (`partitionLeases.ts`). The partition entity is the way in: its RPCs go to the slot's
 * queue (starting it if it is not running yet), and when its shard goes (released, rebalanced, SIGTERM) its close
 * hands the partition over — running compiles finish or are cut off within the hand-over timeout, then the final
 * flush, then the lease — before the cluster releases the shard. Every partition queue shares the runner's engine
 * permits.
 *
 * While the runner cannot prove a partition's lease by its own clock (its renewals fail, or it was frozen), the
 * partition is paused: no compile starts and no write is taken. A renewal that proves it again resumes it; one that
 * finds another runner holds it cuts it off, and what it counted but could not store is sent on to the new owner.
 *
 * @internal
 */
import { Entity, EntityId, Sharding } from "@effect/cluster"
import * as SqlClient from "@effect/sql/SqlClient"
import { Cause, Context, Deferred, Duration, Effect, Exit, FiberId, Layer, Option, Schedule, type Scope } from "effect"
import { BankStateStore, type BankStateStoreService, bankStoreError, BankStoreError } from "../../BankStateStore.js"
import { CompileEngine, CompileError, type CompileEngineService } from "../../CompileEngine.js"
import type { CompileQueueService } from "../../CompileQueue.js"
import type { CompileQueueOptions } from "../../CompileQueueOptions.js"
import { DEFAULT_MAX_BANKS } from "../../BankLimit.js"
import { PARTITIONS, PartitionEntity, PartitionMoved } from "./protocol.js"
import { partitionStore } from "./store.js"
import { make as makeQueue, SharedBudget } from "../runtime/compileQueue.js"
import { makePartitionLeases, type PartitionLeases, pgLeaseRows, RENEW_EVERY_MILLIS } from "./partitionLeases.js"
import { type LocalPartitions, makePartitionSlots, type PartitionRun, type PartitionSlots } from "./partitionSlots.js"
import { toSendOn, UnstoredCounts } from "./unstoredCounts.js"
import type { GlobalBuckets } from "../core/tokenBucket.js"
import { addStops, describeStop, logStop, NO_STOP, type StopSummary } from "../runtime/stopSummary.js"
import { countScoped } from "./scopedWrites.js"
import { WarningThrottle } from "../core/warningThrottle.js"
import { withWorkloadLog, WorkloadLog } from "../workloadLog/workloadLog.js"

/** Where a partition that was lost sends on what it counted but could not store: the router (set once it is built). */
export type SendOn = (
  retains: ReadonlyMap<string, number>,
  forgets: ReadonlyMap<string, number>
) => Effect.Effect<void, unknown>

/**
 * The runner's partition slots, whether the cluster assigns a partition to this runner now, and whether a `Write` is
 * answered only once stored.
 */
export class PartitionHost extends Context.Tag("effect-compile-trigger/PartitionHost")<PartitionHost, {
  readonly slots: PartitionSlots
  readonly isAssigned: (partition: number) => boolean
  /** The queue still runs the partition here and its lease is proven now (a stop removes it before it closes). */
  readonly isRunning: (partition: number, queue: CompileQueueService) => boolean
  readonly durable: boolean
  /**
   * The runner begins to stop (the router's close, before any partition's): every partition stopped from now on adds
   * its summary to the node's one `stopped: …` line, logged once they all stopped.
   */
  readonly beginStop: Effect.Effect<void>
  /** The router's way in, for the counts a lost partition sends on. */
  readonly sendOnThrough: (sendOn: SendOn) => void
  /** When (epoch ms, this runner's clock) the partition's run here took its lease: a `Write` sent before is refused. */
  readonly takenAt: (partition: number) => number
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
  options: HostOptions
): Layer.Layer<PartitionHost, never, CompileEngine | SqlClient.SqlClient | Sharding.Sharding> =>
  Layer.scoped(
    PartitionHost,
    Effect.gen(function*() {
      const { durable, handoverTimeout, local, runner } = options
      const sql = yield* SqlClient.SqlClient
      const sharding = yield* Sharding.Sharding
      const isAssigned = (partition: number): boolean => {
        const entityId = EntityId.make(String(partition))
        return sharding.hasShardId(sharding.getShardId(entityId, PartitionEntity.getShardGroup(entityId)))
      }
      const holder = `${runner} pid ${process.pid} ${Math.random().toString(36).slice(2, 10)}`
      const rows = yield* pgLeaseRows(sql, `effect-compile-trigger ${runner}`)
      const leases = yield* makePartitionLeases({ rows, runner, holder })
      local.validWhile(leases.isValid)
      const sendOn: { current: SendOn | undefined } = { current: undefined }
      const takenAt = new Map<number, number>()
      const stops = nodeStops()
      // Completed STOP_FLUSH_LIMIT after the runner began to stop: the final flushes still failing give up then.
      const stopDeadline = Deferred.unsafeMake<void>(FiberId.none)
      const lost = (partition: number, epoch: number): Effect.Effect<void> => slots.lost(partition, epoch)
      const build = yield* partitionBuilder(options, { sql, leases, stops, stopDeadline, sendOn, lost, takenAt })
      const slots: PartitionSlots = makePartitionSlots({ partitions: PARTITIONS, leases, isAssigned, build, local, handoverTimeout })
      // Forked before the stop is added: the leases are renewed until every partition has been handed over.
      yield* Effect.forkScoped(renewLeases(leases, slots))
      const armStopDeadline = Effect.forkDaemon(
        Effect.zipRight(Effect.sleep(STOP_FLUSH_LIMIT), Deferred.succeed(stopDeadline, undefined))
      )
      yield* Effect.addFinalizer(() =>
        Effect.all([stops.beginStop, armStopDeadline, slots.stopAll, stops.logNodeStop], { discard: true })
      )
      return {
        slots,
        isAssigned,
        isRunning: (partition, queue) => local.get(partition) === queue,
        durable,
        beginStop: stops.beginStop,
        sendOnThrough: (f: SendOn) => {
          sendOn.current = f
        },
        takenAt: (partition) => takenAt.get(partition) ?? Infinity
      }
    })
  )

/**
 * Renews the leases every second, whatever fails: a partition whose lease another runner took is cut off at once. A
 * renewal that fails changes nothing by itself: the partitions pause once their leases can no longer be proven.
 */
const renewLeases = (leases: PartitionLeases, slots: PartitionSlots) => {
  const throttle = new WarningThrottle(60_000)
  const once = leases.renew.pipe(
    Effect.flatMap((lost) =>
      Effect.forEach(lost, ({ epoch, partition }) =>
        Effect.zipRight(
          Effect.logWarning(`partition ${partition}: another runner holds its lease now; cut off, nothing more is written here`),
          slots.lost(partition, epoch)
        ), { discard: true, concurrency: "unbounded" })
    ),
    Effect.catchAllCause((cause) =>
      Effect.suspend(() => {
        const note = throttle.note(Date.now())
        return note === undefined
          ? Effect.logDebug("could not renew the partition leases", cause)
          : Effect.logWarning(`could not renew the partition leases${note}: ${Cause.squash(cause)}`)
      })
    )
  )
  return Effect.forever(Effect.zipRight(once, Effect.sleep(Duration.millis(RENEW_EVERY_MILLIS))))
}

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
          // A hand-over that gave changes up (another node took the partition's lease) says so at error level.
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

/** What a partition's queue is built with, besides the runner's options. */
interface BuildContext {
  readonly sql: SqlClient.SqlClient
  readonly leases: PartitionLeases
  readonly stops: ReturnType<typeof nodeStops>
  readonly stopDeadline: Deferred.Deferred<void>
  readonly sendOn: { readonly current: SendOn | undefined }
  /** Partition → when its run here took the lease (set as a build starts, right after the take). */
  readonly takenAt: Map<number, number>
  /** Cuts the partition's run under `epoch` off (another runner holds its lease). */
  readonly lost: (partition: number, epoch: number) => Effect.Effect<void>
}

/**
 * Builds a partition's queue under its lease's epoch: its engine behind the runner's permits and the lease (`makeGate`),
 * its store fenced by the epoch, its retains and forgets noted until stored, and what to do once the lease is lost.
 */
const partitionBuilder = (
  options: HostOptions,
  context: BuildContext
): Effect.Effect<
  (partition: number, epoch: number) => Effect.Effect<PartitionRun, BankStoreError, Scope.Scope>,
  never,
  CompileEngine
> =>
  Effect.gen(function*() {
    const { budget, queueOptions, table } = options
    // Read here, where the runner's layer is built: a partition's queue is built from whichever fiber first asks for it.
    const workloadLog = yield* Effect.serviceOption(WorkloadLog)
    const permits = yield* Effect.makeSemaphore(queueOptions.concurrency ?? 1)
    const engine = withTimeout(
      yield* CompileEngine,
      queueOptions.compileTimeout === undefined ? Option.none() : Option.some(Duration.decode(queueOptions.compileTimeout))
    )
    return (partition: number, epoch: number) =>
      Effect.gen(function*() {
        context.takenAt.set(partition, Date.now())
        const gate = makeGate(permits, engine, context.leases, partition)
        const leaseLost = Deferred.unsafeMake<void>(FiberId.none)
        // A partition's changes are not dropped for an outage, however long: its final flush goes on until it lands.
        const finalFlushUntil = Effect.raceFirst(Deferred.await(leaseLost), Deferred.await(context.stopDeadline))
        const unstored = new UnstoredCounts()
        const fence = { sql: context.sql, leases: context.leases, partition, epoch, unstored }
        const onLost = Effect.zipRight(Deferred.succeed(leaseLost, undefined), Effect.forkDaemon(context.lost(partition, epoch)))
        const store = { ...fenced(partitionStore(context.sql, table, partition), fence, onLost), epoch }
        const queue = yield* makeQueue(partitionOptions(queueOptions, partition), {
          finalFlushUntil,
          onStopped: context.stops.partitionStopped(partition),
          tally: unstored.register
        }).pipe(
          Effect.provideService(CompileEngine, { run: gate.run }),
          Effect.provideService(BankStateStore, store),
          Effect.provideService(SharedBudget, budget),
          withWorkloadLog(workloadLog)
        )
        return {
          queue,
          closeGate: gate.close,
          sendOnUnstored: sendOnUnstored(fence, queue, context.sendOn)
        }
      })
  })

/** How long a closed partition tries to hand its unstored counts on (a stopping runner's router may be gone). */
const SEND_ON_TIMEOUT = Duration.seconds(60)

/**
 * How long a closed partition tries to read which of its failed flushes were stored after all. Short: a partition that
 * lost its lease learned it from Postgres a moment ago, and a stopping runner whose Postgres is down must not hold its
 * counts back from the next owner for long.
 */
const LANDED_READ_TIMEOUT = Duration.seconds(5)

/**
 * Which flushes of the partition's run that failed at their COMMIT, or are still under way, were stored after all
 * (the COMMIT reached Postgres, the answer was lost), read from the store's record: their counts are not sent on. Once
 * another runner took the lease no flush of this run can still commit (each holds the lease row's shared lock until it
 * ends, and the take updates the row), so the record is final. (A stopping runner whose final flush gave up still
 * holds its lease: a flush of it under way may commit after the read, and its counts are then counted twice.) When the
 * record cannot be read, everything in doubt is sent on: a write counted twice costs a compile, a lost one is never
 * compiled.
 */
export const settleDoubts = (fence: Pick<Fence, "leases" | "partition" | "epoch" | "unstored">) =>
  Effect.suspend(() => {
    const { epoch, leases, partition, unstored } = fence
    if (!unstored.doubtful) return Effect.void
    return leases.flushedUnder(partition, epoch).pipe(
      Effect.retry(Schedule.spaced(Duration.millis(500))),
      Effect.timeout(LANDED_READ_TIMEOUT),
      Effect.matchCauseEffect({
        onSuccess: (flushed) => Effect.sync(() => unstored.landed(flushed)),
        onFailure: (cause) =>
          Effect.logWarning(
            `partition ${partition}: could not read which of its failed flushes were stored; all their counts are sent on (some may be counted twice)`,
            cause
          )
      })
    )
  })

/**
 * After the partition's queue closed: what it counted but could not store (its lease was lost, or its final flush gave
 * up) goes to the next owner through the router (see `unstoredCounts.ts` for exactly what), and the log says how much,
 * and whether it arrived. After a flush that stored everything, there is nothing to send.
 */
const sendOnUnstored = (fence: Fence, queue: CompileQueueService, sendOn: BuildContext["sendOn"]) =>
  Effect.gen(function*() {
    const { partition, unstored } = fence
    yield* settleDoubts(fence)
    const { forgets, retains } = yield* toSendOn(queue, unstored)
    if (retains.size === 0 && forgets.size === 0) return
    const sum = (counts: ReadonlyMap<string, number>) => Array.from(counts.values()).reduce((a, b) => a + b, 0)
    const what = `${sum(retains)} retains and ${sum(forgets)} forgets of ${new Set([...retains.keys(), ...forgets.keys()]).size} banks`
    if (sendOn.current === undefined) return yield* Effect.logError(`partition ${partition}: ${what} were not stored and are lost`)
    yield* sendOn.current(retains, forgets).pipe(
      Effect.timeout(SEND_ON_TIMEOUT),
      Effect.matchCauseEffect({
        onSuccess: () => Effect.logWarning(`partition ${partition}: ${what} counted here but not stored were sent on to its new owner`),
        onFailure: (cause) => Effect.logError(`partition ${partition}: ${what} counted here but not stored could not be sent on; lost`, cause)
      })
    )
  })

/** How long Postgres lets a partition's flush sit silent inside its transaction before it ends the session. */
const IDLE_IN_FLUSH = "3s"

/** What a partition's writes are fenced by: its lease's epoch, and the counts a flush takes. */
export interface Fence {
  readonly sql: SqlClient.SqlClient
  readonly leases: PartitionLeases
  readonly partition: number
  readonly epoch: number
  readonly unstored: UnstoredCounts
}

/**
 * A partition's store whose every write is conditional on the lease's epoch, in the write's own transaction: a write
 * of a runner that lost the partition is refused, stores nothing, and tells it (`onLost`: its final flush gives up,
 * and the partition is cut off). The counts of the banks a write stores are stored with it; when it fails, they are
 * unstored again, or in doubt when it failed at its COMMIT (under the write's number, which the transaction records
 * under the epoch when it commits).
 */
export const fenced = (store: BankStateStoreService, fence: Fence, onLost: Effect.Effect<unknown>): BankStateStoreService => {
  const { epoch, leases, partition, sql, unstored } = fence
  const lost = new BankStoreError({
    operation: "save",
    message: `partition ${partition}: another runner holds its lease now (this runner's epoch ${epoch}); not written`
  })
  const stillOurs = (flush: number) => Effect.flatMap(
    Effect.mapError(leases.fence(partition, epoch, flush), bankStoreError("save")),
    (ours) => ours ? Effect.void : Effect.zipRight(onLost, Effect.fail(lost))
  )
  // A flush whose runner is cut off mid-transaction holds the lease row's lock: Postgres ends the session after 3 s of
  // silence, so that the next holder's take is not blocked for as long as the dead connection lingers.
  const boundedSilence = sql.unsafe(`SET LOCAL idle_in_transaction_session_timeout = '${IDLE_IN_FLUSH}'`)
  return {
    ...store,
    save: (banks) => {
      const flight = unstored.take(banks.map((bank) => bank.bankId))
      // Set once every statement succeeded: a failure from then on is the COMMIT's, which may have landed.
      let atCommit = false
      const statements = Effect.zipRight(boundedSilence, Effect.zipRight(stillOurs(flight.number), store.save(banks)))
      return sql.withTransaction(Effect.tap(statements, () => (atCommit = true))).pipe(
        Effect.catchTag("SqlError", (error) => Effect.fail(bankStoreError("save")(error))),
        Effect.onExit((exit) =>
          Effect.sync(() => Exit.isSuccess(exit) ? unstored.stored(flight) : unstored.failed(flight, atCommit))
        )
      )
    }
  }
}

/**
 * One partition's way into the engine. While it is open a compile takes a runner permit and runs once the lease is
 * proven (a paused partition's compile waits for a renewal); once the partition is leaving, no new compile starts (its
 * worker waits, to be cut off by the queue's close: the bank stays pending for the next owner) and `close` waits for
 * the running ones, up to the hand-over timeout.
 */
const makeGate = (permits: Effect.Semaphore, engine: CompileEngineService, leases: PartitionLeases, partition: number) => {
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
        // Checked right before the call: the lease is proven for the safety margin at least.
        if (!leases.isValid(partition)) {
          return Effect.zipRight(permits.release(1), restore(Effect.zipRight(leases.renewed, run(bankId, job))))
        }
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

/** How long a call waits between attempts to start a partition assigned here whose lease the last owner still holds. */
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
      change((queue): Effect.Effect<ReadonlyArray<string>, PartitionMoved | BankStoreError> => {
        if (payload.sentAt < host.takenAt(partition)) return Effect.fail(new PartitionMoved({ partition }))
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
        countScoped(queue, payload.scoped, refused)
        return Effect.as(host.durable ? queue.flush : Effect.void, refused)
      }),
    Ping: () => on(() => Effect.void),
    BankState: ({ payload }) => on((queue) => Effect.map(queue.bankState(payload.bankId), Option.getOrNull)),
    SetPolicy: ({ payload }) => change((queue) => queue.setPolicy(payload.bankId, payload.policy)),
    ClearPolicy: ({ payload }) => change((queue) => queue.clearPolicy(payload.bankId)),
    PolicyOf: ({ payload }) => on((queue) => Effect.map(queue.policyOf(payload.bankId), Option.getOrNull)),
    ConfigFor: ({ payload }) => on((queue) => queue.configFor(payload.bankId)),
    CompileNow: ({ payload }) => change((queue) => queue.compileNow(payload.bankId, payload)),
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
