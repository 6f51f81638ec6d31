/**
 * Where a partition's queue runs in cluster mode, and when it starts and stops. The cluster's shard assignment says
 * which runner should run a partition; a partition runs here only while it is assigned here **and** this runner holds
 * the partition's lock (`partitionLocks.ts`), and a runner gives the lock up only after its queue closed and flushed.
 *
 * Why the second lock: @effect/cluster 0.60 builds an entity before it registers it, and a shard released while an
 * entity of it is being built does not wait for that entity — the build goes on, and the entity then runs on a runner
 * that no longer holds the shard while the next holder starts its own. Here a late start finds the lock taken (or
 * takes it first and makes the next holder wait), and `reconcile` stops what is no longer assigned.
 *
 * @internal
 */
import { Duration, Effect, Exit, Option, Scope } from "effect"
import type { CompileQueueService } from "../../CompileQueue.js"
import type { PartitionLocks } from "./partitionLocks.js"
import { type LeaveReason, logMove, markLeft, type PartitionMoves } from "./partitionMoves.js"

/** A partition's queue while it runs, and the way to stop its compiles from starting. */
export interface PartitionRun {
  readonly queue: CompileQueueService
  /** No compile starts any more; waits for the running ones up to `timeout`: false when some were still running. */
  readonly closeGate: (timeout: Duration.DurationInput) => Effect.Effect<boolean>
}

/** Partition number → its queue, for the partitions running here (set once restored, removed first at a stop). */
export type LocalPartitions = Map<number, CompileQueueService>

export interface PartitionSlotsOptions<E> {
  readonly partitions: number
  readonly locks: PartitionLocks
  /** Whether the cluster assigns the partition to this runner now. */
  readonly isAssigned: (partition: number) => boolean
  /** Builds the partition's queue in the scope (restoring its banks); closing the scope closes it and flushes. */
  readonly build: (partition: number) => Effect.Effect<PartitionRun, E, Scope.Scope>
  readonly local: LocalPartitions
  /** How long a stopping partition's running compiles may go on before they are cut off. */
  readonly handoverTimeout: Duration.DurationInput
  /** Where each partition's owner is recorded, so that a move is logged once (by the runner taking it over). */
  readonly moves?: PartitionMoves | undefined
}

export interface PartitionSlots {
  /** Starts the partition if it is assigned here and its lock is free: its queue, or undefined when it cannot run here. */
  readonly start: (partition: number) => Effect.Effect<CompileQueueService | undefined>
  /**
   * Hands the partition over: no new compile, the running ones finish (up to the hand-over timeout; at once when its
   * lock was lost), the queue closes and flushes, the lock goes. `why` is recorded for the next owner's log.
   */
  readonly stop: (partition: number, why: LeaveReason) => Effect.Effect<void>
  /**
   * Starts the assigned partitions, stops the ones no longer assigned, takes lost locks again where it can and cuts off
   * the partitions whose lock another runner took.
   */
  readonly reconcile: Effect.Effect<void>
  /** Stops every partition running here. */
  readonly stopAll: Effect.Effect<void>
}

interface Slot {
  /** One start or stop at a time. */
  readonly mutex: Effect.Semaphore
  running: { readonly run: PartitionRun; readonly scope: Scope.CloseableScope } | undefined
  /** A reconcile pass started a stop that has not ended (its final flush may be waiting for Postgres). */
  stopping: boolean
}

/** A reconcile pass waits this long for a stop it started; a longer one (its flush waits for Postgres) goes on alone. */
const PASS_WAITS_FOR_STOP = Duration.seconds(1)

/** One start or stop of the slot at a time, uninterruptible: once asked for, it runs to its end. */
const exclusive = <A>(slot: Slot, effect: Effect.Effect<A>) =>
  Effect.uninterruptible(slot.mutex.withPermits(1)(effect))

/**
 * Builds the partition's queue in a scope of its own, its lock taken: the queue, or undefined when the build failed
 * (the lock is let go again).
 */
const launch = <E>(options: PartitionSlotsOptions<E>, partition: number, slot: Slot) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    // Interruptible: the queue's fibers inherit it (an uninterruptible worker would never let the queue close).
    const exit = yield* Effect.exit(Scope.extend(Effect.interruptible(options.build(partition)), scope))
    if (Exit.isFailure(exit)) {
      yield* Scope.close(scope, exit)
      yield* Effect.ignore(options.locks.release(partition))
      yield* Effect.logWarning(`partition ${partition}: could not start here`, exit.cause)
      return undefined
    }
    slot.running = { run: exit.value, scope }
    options.local.set(partition, exit.value.queue)
    yield* Effect.logDebug(`partition ${partition}: taken over`)
    if (options.moves !== undefined) yield* logMove(options.moves, partition)
    return exit.value.queue
  })

/** `PartitionSlots.start`: the running queue, or a new one when the partition is assigned here and its lock is free. */
const start = <E>(options: PartitionSlotsOptions<E>, slots: ReadonlyArray<Slot>, partition: number) =>
  Effect.suspend(() => {
    // Running and not being stopped (a stop removes it first): every call for the partition, without the mutex.
    const queue = options.local.get(partition)
    if (queue !== undefined) return Effect.succeed(queue)
    const slot = slots[partition]!
    return exclusive(
      slot,
      Effect.suspend(() => {
        if (slot.running !== undefined) return Effect.succeed(slot.running.run.queue)
        if (!options.isAssigned(partition)) return Effect.succeed(undefined)
        return options.locks.tryAcquire(partition).pipe(
          Effect.catchAll((error) => Effect.as(Effect.logWarning(`partition ${partition}: lock unavailable`, error), false)),
          Effect.flatMap((acquired) => acquired ? launch(options, partition, slot) : Effect.succeed(undefined))
        )
      })
    )
  })

/** Stops the partition's run (only `expected`, when given: a run started since is left alone). */
const stopRun = <E>(
  options: PartitionSlotsOptions<E>,
  slots: ReadonlyArray<Slot>,
  partition: number,
  { cutOff, why }: { readonly cutOff: boolean; readonly why: LeaveReason },
  expected?: Slot["running"]
) =>
  Effect.suspend(() => {
    const slot = slots[partition]!
    return exclusive(
      slot,
      Effect.suspend(() => {
        const running = slot.running
        if (running === undefined || (expected !== undefined && running !== expected)) return Effect.void
        // From here on the router sends this partition's calls through the cluster (to the next owner).
        options.local.delete(partition)
        return Effect.gen(function*() {
          yield* Effect.logDebug(`partition ${partition}: handing over${cutOff ? " (its lock was lost: cut off)" : ""}`)
          const finished = yield* running.run.closeGate(cutOff ? 0 : options.handoverTimeout)
          // The queue cuts off what still runs (the banks stay pending for the next owner) and flushes.
          yield* Scope.close(running.scope, Exit.void)
          slot.running = undefined
          if (options.moves !== undefined) yield* markLeft(options.moves, partition, why)
          yield* Effect.ignore(options.locks.release(partition))
          yield* Effect.logDebug(
            `partition ${partition}: handed over${finished ? "" : "; compiles still running were cut off"}`
          )
        })
      })
    )
  })

/**
 * A stop started by a reconcile pass, which waits for it only so long: a hand-over whose final flush waits for
 * Postgres must not hold up the other partitions (nor the lock re-takes the flush needs). One at a time per slot.
 */
const stopFromPass = <E>(
  options: PartitionSlotsOptions<E>,
  slots: ReadonlyArray<Slot>,
  partition: number,
  cutOff: boolean,
  running: NonNullable<Slot["running"]>
) =>
  Effect.suspend(() => {
    const slot = slots[partition]!
    if (slot.stopping) return Effect.void
    slot.stopping = true
    const why: LeaveReason = cutOff ? "lock lost" : "reassigned"
    return stopRun(options, slots, partition, { cutOff, why }, running).pipe(
      Effect.ensuring(Effect.sync(() => {
        slot.stopping = false
      })),
      Effect.disconnect,
      Effect.timeout(PASS_WAITS_FOR_STOP),
      Effect.ignore
    )
  })

/**
 * A running partition whose lock the last look did not find: taken again when no other runner took it meanwhile (a
 * Postgres restart ends every session, and with it every lock, while the partitions run on), else cut off. When
 * Postgres cannot be asked, nothing is decided: the next round looks again.
 */
const lockMissing = <E>(
  options: PartitionSlotsOptions<E>,
  slots: ReadonlyArray<Slot>,
  partition: number,
  running: NonNullable<Slot["running"]>
) =>
  Effect.flatMap(Effect.option(options.locks.ensure(partition)), (held) => {
    if (Option.isNone(held)) return Effect.void
    if (!held.value) return stopFromPass(options, slots, partition, true, running)
    const retaken = Effect.logInfo(`partition ${partition}: its lock went with its connection; taken again`)
    return options.isAssigned(partition)
      ? retaken
      : Effect.zipRight(retaken, stopFromPass(options, slots, partition, false, running))
  })

/** Runs `f` for every partition at once. */
const everyPartition = (slots: ReadonlyArray<Slot>, f: (partition: number) => Effect.Effect<unknown>) =>
  Effect.forEach(slots, (_, partition) => f(partition), { concurrency: "unbounded", discard: true })

/**
 * `PartitionSlots.reconcile`. Judged against a look at the locks taken after noting what runs: a run's lock is missing
 * only if it ran before the look and its lock was not in it. A look that fails (Postgres unreachable) judges no lock
 * missing.
 */
const reconcile = <E>(options: PartitionSlotsOptions<E>, slots: ReadonlyArray<Slot>) =>
  Effect.suspend(() => {
    const before = slots.map((slot) => slot.running)
    return Effect.flatMap(Effect.option(options.locks.held), (look) =>
      everyPartition(slots, (partition) => {
        const running = slots[partition]!.running
        if (running !== undefined && running === before[partition] && Option.isSome(look) && !look.value.has(partition)) {
          return lockMissing(options, slots, partition, running)
        }
        if (running !== undefined && !options.isAssigned(partition)) {
          return stopFromPass(options, slots, partition, false, running)
        }
        if (running === undefined && options.isAssigned(partition)) return start(options, slots, partition)
        return Effect.void
      }))
  })

/** One slot per partition, each running the partition's queue at most once at a time. */
export const makePartitionSlots = <E>(options: PartitionSlotsOptions<E>): PartitionSlots => {
  const slots: ReadonlyArray<Slot> = Array.from(
    { length: options.partitions },
    (): Slot => ({ mutex: Effect.unsafeMakeSemaphore(1), running: undefined, stopping: false })
  )
  return {
    start: (partition) => start(options, slots, partition),
    stop: (partition, why) => stopRun(options, slots, partition, { cutOff: why === "lock lost", why }),
    reconcile: reconcile(options, slots),
    stopAll: everyPartition(slots, (partition) => stopRun(options, slots, partition, { cutOff: false, why: "stopping" }))
  }
}
