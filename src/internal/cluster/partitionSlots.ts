/**
 * Where a partition's queue runs in cluster mode, and when it starts and stops. The cluster's shard assignment says
 * which runner should run a partition; a partition runs here only while it is assigned here **and** this runner holds
 * the partition's lease (`partitionLeases.ts`), and a runner gives the lease up only after its queue closed and
 * flushed. Where the assignment and the leases disagree, the lease wins: a runner the cluster assigns a partition to
 * waits until the last holder's lease is released or expired.
 *
 * Why the lease and not the shard alone: @effect/cluster 0.60 builds an entity before it registers it, and a shard
 * released while an entity of it is being built does not wait for that entity — the build goes on, and the entity then
 * runs on a runner that no longer holds the shard while the next holder starts its own. Here a late start finds the
 * lease taken (or takes it first and makes the next holder wait), and `reconcile` stops what is no longer assigned.
 *
 * @internal
 */
import { Duration, Effect, Exit, Fiber, Scope } from "effect"
import type { CompileQueueService } from "../../CompileQueue.js"
import type { LeaseTaken, PartitionLeases } from "./partitionLeases.js"
import { type LeaveReason, logMove } from "./partitionMoves.js"

/** A partition's queue while it runs, and the way to stop its compiles from starting. */
export interface PartitionRun {
  readonly queue: CompileQueueService
  /** No compile starts any more; waits for the running ones up to `timeout`: false when some were still running. */
  readonly closeGate: (timeout: Duration.DurationInput) => Effect.Effect<boolean>
  /**
   * After the queue closed and the lease went: hands on what the queue counted but could not store (its lease was
   * lost, or its final flush gave up), so that the next owner counts it.
   */
  readonly sendOnUnstored?: Effect.Effect<void> | undefined
}

/**
 * Partition number → its queue, for the partitions running here (set once restored, removed first at a stop), as the
 * router sees them: a partition whose lease this runner cannot prove now (`valid`) is not answered here — its calls go
 * through the cluster, and its owner's entity refuses them until the lease is proven again or lost.
 */
export class LocalPartitions {
  /** By partition number: looked up for every write the router counts here. */
  private readonly queues: Array<CompileQueueService | undefined> = []
  private valid: (partition: number) => boolean = () => true

  /** From now on, a partition counts as local only while `valid` says its lease is proven. */
  validWhile(valid: (partition: number) => boolean): void {
    this.valid = valid
  }
  get(partition: number): CompileQueueService | undefined {
    const queue = this.queues[partition]
    return queue !== undefined && this.valid(partition) ? queue : undefined
  }
  has(partition: number): boolean {
    return this.get(partition) !== undefined
  }
  /** The queues of the partitions local now. */
  values(): Array<CompileQueueService> {
    const local: Array<CompileQueueService> = []
    for (let partition = 0; partition < this.queues.length; partition++) {
      const queue = this.get(partition)
      if (queue !== undefined) local.push(queue)
    }
    return local
  }
  /** Whether one of the queues local now satisfies `test` (asked per request: no array is made). */
  some(test: (queue: CompileQueueService) => boolean): boolean {
    for (let partition = 0; partition < this.queues.length; partition++) {
      const queue = this.get(partition)
      if (queue !== undefined && test(queue)) return true
    }
    return false
  }
  /** The queue running the partition here, whether or not its lease is proven now. */
  running(partition: number): CompileQueueService | undefined {
    return this.queues[partition]
  }
  set(partition: number, queue: CompileQueueService): void {
    this.queues[partition] = queue
  }
  delete(partition: number): void {
    this.queues[partition] = undefined
  }
}

export interface PartitionSlotsOptions<E> {
  readonly partitions: number
  readonly leases: PartitionLeases
  /** Whether the cluster assigns the partition to this runner now. */
  readonly isAssigned: (partition: number) => boolean
  /** Builds the partition's queue in the scope (restoring its banks) under `epoch`; closing it closes and flushes. */
  readonly build: (partition: number, epoch: number) => Effect.Effect<PartitionRun, E, Scope.Scope>
  readonly local: LocalPartitions
  /** How long a stopping partition's running compiles may go on before they are cut off. */
  readonly handoverTimeout: Duration.DurationInput
}

export interface PartitionSlots {
  /** Starts the partition if it is assigned here and its lease is free: its queue, or undefined when it cannot run here. */
  readonly start: (partition: number) => Effect.Effect<CompileQueueService | undefined>
  /**
   * Hands the partition over: no new compile, the running ones finish (up to the hand-over timeout; at once when its
   * lease was lost), the queue closes and flushes, the lease goes. `why` is recorded for the next holder's log.
   */
  readonly stop: (partition: number, why: LeaveReason) => Effect.Effect<void>
  /**
   * Another runner took the partition's lease that this runner held under `epoch`: its run under that epoch is cut off
   * at once, nothing more written (waits a moment for it). A run under a later epoch is left alone.
   */
  readonly lost: (partition: number, epoch: number) => Effect.Effect<void>
  /** Starts the assigned partitions and stops the ones no longer assigned. */
  readonly reconcile: Effect.Effect<void>
  /** Stops every partition running here. */
  readonly stopAll: Effect.Effect<void>
}

interface Slot {
  /** One start or stop at a time. */
  readonly mutex: Effect.Semaphore
  running: { readonly run: PartitionRun; readonly scope: Scope.CloseableScope; readonly epoch: number } | undefined
  /** A reconcile pass started a stop that has not ended (its final flush may be waiting for Postgres). */
  stopping: boolean
  /**
   * Attempts to take the lease so far: calls that waited for the slot while an attempt ran share its outcome instead
   * of each asking Postgres again (a runner asked for a partition it cannot take yet is asked by every waiting call).
   */
  attempts: number
}

/** A reconcile pass waits this long for a stop it started; a longer one (its flush waits for Postgres) goes on alone. */
const PASS_WAITS_FOR_STOP = Duration.seconds(1)

/** One start or stop of the slot at a time, uninterruptible: once asked for, it runs to its end. */
const exclusive = <A>(slot: Slot, effect: Effect.Effect<A>) =>
  Effect.uninterruptible(slot.mutex.withPermits(1)(effect))

/**
 * Builds the partition's queue in a scope of its own, its lease just taken under `epoch`: the queue, or undefined
 * when the build failed (the lease is let go again).
 */
const launch = <E>(options: PartitionSlotsOptions<E>, partition: number, slot: Slot, taken: LeaseTaken) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    // Interruptible: the queue's fibers inherit it (an uninterruptible worker would never let the queue close). In a
    // fiber of its own: a call that asked for the start and gave up (its caller timed out) does not stop the restore.
    const building = Scope.extend(Effect.interruptible(options.build(partition, taken.epoch)), scope)
    const exit = yield* Effect.flatMap(Effect.forkDaemon(building), Fiber.await)
    if (Exit.isFailure(exit)) {
      yield* Scope.close(scope, exit)
      yield* Effect.ignore(options.leases.release(partition, "reassigned"))
      yield* Effect.logWarning(`partition ${partition}: could not start here`, exit.cause)
      return undefined
    }
    slot.running = { run: exit.value, scope, epoch: taken.epoch }
    options.local.set(partition, exit.value.queue)
    yield* Effect.logDebug(`partition ${partition}: taken over (epoch ${taken.epoch})`)
    yield* logMove(partition, taken.previous, options.leases.runner)
    return exit.value.queue
  })

/** `PartitionSlots.start`: the running queue, or a new one when the partition is assigned here and its lease is free. */
const start = <E>(options: PartitionSlotsOptions<E>, slots: ReadonlyArray<Slot>, partition: number) =>
  Effect.suspend(() => {
    // Running and not being stopped (a stop removes it first): every call for the partition, without the mutex.
    const queue = options.local.running(partition)
    if (queue !== undefined) return Effect.succeed(queue)
    const slot = slots[partition]!
    const seen = slot.attempts
    return exclusive(
      slot,
      Effect.suspend(() => {
        if (slot.running !== undefined) return Effect.succeed(slot.running.run.queue)
        if (!options.isAssigned(partition) || slot.attempts !== seen) return Effect.succeed(undefined)
        slot.attempts++
        return options.leases.tryAcquire(partition).pipe(
          Effect.catchAll((error) =>
            Effect.as(Effect.logWarning(`partition ${partition}: lease unavailable`, error), undefined)
          ),
          Effect.flatMap((taken) => taken !== undefined ? launch(options, partition, slot, taken) : Effect.succeed(undefined))
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
          yield* Effect.logDebug(`partition ${partition}: handing over${cutOff ? " (its lease was lost: cut off)" : ""}`)
          const finished = yield* running.run.closeGate(cutOff ? 0 : options.handoverTimeout)
          // The queue cuts off what still runs (the banks stay pending for the next owner) and flushes.
          yield* Scope.close(running.scope, Exit.void)
          slot.running = undefined
          yield* Effect.catchAllCause(
            options.leases.release(partition, why),
            (cause) => Effect.logWarning(`partition ${partition}: could not let its lease go (the next owner waits for it to expire)`, cause)
          )
          // Not waited for: sending goes through the cluster, which may route to this runner until the shard moves, and
          // the shard moves only once this stop ended.
          if (running.run.sendOnUnstored !== undefined) yield* Effect.forkDaemon(running.run.sendOnUnstored)
          yield* Effect.logDebug(
            `partition ${partition}: handed over${finished ? "" : "; compiles still running were cut off"}`
          )
        })
      })
    )
  })

/**
 * A stop started by a reconcile pass or a lost lease, which waits for it only so long: a hand-over whose final flush
 * waits for Postgres must not hold up the other partitions. One at a time per slot.
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
    const why: LeaveReason = cutOff ? "lease lost" : "reassigned"
    return stopRun(options, slots, partition, { cutOff, why }, running).pipe(
      Effect.ensuring(Effect.sync(() => {
        slot.stopping = false
      })),
      Effect.disconnect,
      Effect.timeout(PASS_WAITS_FOR_STOP),
      Effect.ignore
    )
  })

/** Runs `f` for every partition at once. */
const everyPartition = (slots: ReadonlyArray<Slot>, f: (partition: number) => Effect.Effect<unknown>) =>
  Effect.forEach(slots, (_, partition) => f(partition), { concurrency: "unbounded", discard: true })

/** `PartitionSlots.reconcile`: the assigned partitions that do not run start, the unassigned ones that run stop. */
const reconcile = <E>(options: PartitionSlotsOptions<E>, slots: ReadonlyArray<Slot>) =>
  everyPartition(slots, (partition) => {
    const running = slots[partition]!.running
    if (running !== undefined && !options.isAssigned(partition)) {
      return stopFromPass(options, slots, partition, false, running)
    }
    if (running === undefined && options.isAssigned(partition)) return start(options, slots, partition)
    return Effect.void
  })

/** One slot per partition, each running the partition's queue at most once at a time. */
export const makePartitionSlots = <E>(options: PartitionSlotsOptions<E>): PartitionSlots => {
  const slots: ReadonlyArray<Slot> = Array.from(
    { length: options.partitions },
    (): Slot => ({ mutex: Effect.unsafeMakeSemaphore(1), running: undefined, stopping: false, attempts: 0 })
  )
  return {
    start: (partition) => start(options, slots, partition),
    stop: (partition, why) => stopRun(options, slots, partition, { cutOff: why === "lease lost", why }),
    lost: (partition, epoch) =>
      Effect.suspend(() => {
        const running = slots[partition]!.running
        return running === undefined || running.epoch !== epoch
          ? Effect.void
          : stopFromPass(options, slots, partition, true, running)
      }),
    reconcile: reconcile(options, slots),
    stopAll: everyPartition(slots, (partition) => stopRun(options, slots, partition, { cutOff: false, why: "stopping" }))
  }
}
