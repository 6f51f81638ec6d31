/**
 * How the router's retains and forgets travel to the owners of their partitions. They collect in batches, one per
 * destination, and a batch is sent once the one before it was answered (the next collects meanwhile): a route per
 * runner (`RouterEntity`'s `Forward`: one RPC carries the writes of every partition that runner runs) and a lane per
 * partition (`PartitionEntity`'s `Write`, for what a runner did not take). `forwardHandler` is the receiving side of
 * `Forward`.
 *
 * @internal
 */
import { Cause, Deferred, Duration, Effect, Fiber, FiberId, Option } from "effect"
import type { CompileQueueService } from "../../CompileQueue.js"
import { WriteNotConfirmed } from "../runtime/writeAcks.js"
import type { LocalPartitions } from "./partitionSlots.js"
import { PARTITIONS, type PartitionEntity, partitionOf, type RouterEntity } from "./protocol.js"
import { routed } from "./routed.js"
import { countScoped, type ScopedWrite } from "./scopedWrites.js"
import { oncePerTask } from "../runtime/taskClock.js"

/**
 * A destination takes its next batch once the one in flight is answered, or once that one has been out this long: an
 * owner frozen or cut off must not hold up the writes that will reach its successor. (A batch is never sent twice: the
 * one out goes on, and is answered by the cluster, or fails at ROUTE_TIMEOUT.)
 */
const STALL = Duration.seconds(1)

/**
 * How long a route waits for company before it sends, when its last batch carried the writes of more than one task
 * (on the HTTP routes, one request each). Requests that arrive together then share one `Forward`: each costs the
 * sender and the receiver far more CPU in @effect/rpc and @effect/cluster than the writes it carries. A route whose
 * batches carry one request each (one client writing at a time) sends at once.
 */
export const ROUTE_LINGER = Duration.millis(10)

/** Which task a write is taken in (a number drawn once per task): a batch with more than one makes the next linger. */
let tasksSoFar = 0
const currentTask = oncePerTask(() => ++tasksSoFar)

/** Completes with the banks the owners refused (new ones past their partition's `maxBanks`). */
export type Ack = Deferred.Deferred<ReadonlyArray<string>, WriteNotConfirmed>

export type WriteKind = "retains" | "forgets"

type Pairs = ReadonlyArray<readonly [string, number]>

/** Writes that named scopes, as they are (absent when a batch has none: `scopedWrites.ts`). */
type Scoped = ReadonlyArray<ScopedWrite> | undefined

/** Sends one batch: the banks refused, or why it was not confirmed. */
type Send = (retains: Pairs, forgets: Pairs, scoped: Scoped) => Effect.Effect<ReadonlyArray<string>, WriteNotConfirmed>

/** Runs an effect on its own (the router's runtime). */
type Fork = (effect: Effect.Effect<void>) => void

/**
 * The writes collecting for one destination, and its sender: the first write that finds it idle starts it (at once,
 * or after `linger` when the last batch held more than one task's writes); it sends the batch, then (once that one is
 * answered or stalled) whatever collected meanwhile, until nothing is left.
 */
export class Batcher {
  private readonly retains = new Map<string, number>()
  private readonly forgets = new Map<string, number>()
  private scoped: Array<ScopedWrite> = []
  /** The batch collecting now; its ack completes when the destination answers for it. */
  private open: Ack | undefined = undefined
  private sending = false
  /** The tasks whose writes the open batch holds (counted up to two), and the last of them. */
  private tasks = 0
  private lastTask = 0
  /** Whether the last batch sent held the writes of more than one task: the next one waits `linger` for company. */
  private hadCompany = false
  /** The ack of the batch holding the last write taken (a close waits for it). */
  latest: Ack | undefined = undefined

  constructor(
    private readonly send: Send,
    private readonly fork: Fork,
    private readonly linger?: Duration.Duration
  ) {}

  /**
   * Whether its sender runs: a batch is collecting, or out and neither answered nor stalled yet. Idle, it holds no
   * write taken since the last batch went.
   */
  get busy(): boolean {
    return this.sending
  }

  /** Takes a write into the batch collecting now: the ack that batch completes. Synchronous. */
  add(kind: WriteKind, bankId: string, count: number): Ack {
    const counts = this[kind]
    counts.set(bankId, (counts.get(bankId) ?? 0) + count)
    return this.joined()
  }

  /** Takes a write that named scopes into the batch collecting now (never summed with others). Synchronous. */
  addScoped(write: ScopedWrite): Ack {
    this.scoped.push(write)
    return this.joined()
  }

  /** The open batch's ack (opened if none is), its sender started if idle. */
  private joined(): Ack {
    const ack = this.latest = this.open ??= Deferred.unsafeMake<ReadonlyArray<string>, WriteNotConfirmed>(FiberId.none)
    // Counted up to two (company): past that, a write does not look at the task any more.
    if (this.linger !== undefined && this.tasks < 2) {
      const task = currentTask()
      if (task !== this.lastTask) {
        this.lastTask = task
        this.tasks++
      }
    }
    if (!this.sending) {
      this.sending = true
      // Yield first: the rest of a batch request joins this send (and, after a batch in company, the requests that
      // arrive within the linger).
      const linger = this.hadCompany ? this.linger : undefined
      this.fork(Effect.zipRight(linger === undefined ? Effect.yieldNow() : Effect.sleep(linger), this.drain))
    }
    return ack
  }

  private readonly drain: Effect.Effect<void> = Effect.suspend(() => {
    const ack = this.open
    if (ack === undefined) {
      this.sending = false
      return Effect.void
    }
    const retains = Array.from(this.retains)
    const forgets = Array.from(this.forgets)
    const scoped = this.scoped.length === 0 ? undefined : this.scoped
    this.retains.clear()
    this.forgets.clear()
    if (scoped !== undefined) this.scoped = []
    this.open = undefined
    this.hadCompany = this.tasks > 1
    this.tasks = 0
    const answer = Effect.flatMap(Effect.exit(this.send(retains, forgets, scoped)), (exit) => Deferred.done(ack, exit))
    // Answered, or stalled: either way the next batch (if one collected meanwhile) goes now.
    return Effect.forkDaemon(answer).pipe(
      Effect.flatMap((fiber) => Effect.raceFirst(Fiber.await(fiber), Effect.sleep(STALL))),
      Effect.zipRight(this.drain)
    )
  })
}

/** A failure as the writes' acks report it: `notStored` when the owner counted them but could not store them. */
const notConfirmed = (who: string) => (cause: Cause.Cause<{ readonly _tag: string }>) =>
  Effect.fail(
    new WriteNotConfirmed({
      message: `${who} did not confirm the write: ${Cause.pretty(cause)}`,
      notStored: Option.exists(Cause.failureOption(cause), (error) => error._tag === "BankStoreError")
    })
  )

type PartitionClient = ReturnType<Effect.Effect.Success<typeof PartitionEntity.client>>
type RouterClient = ReturnType<Effect.Effect.Success<typeof RouterEntity.client>>

/** A lane per partition: its writes go to the partition's owner, one `Write` at a time. */
export const makeLanes = (clientOf: (p: number) => PartitionClient, fork: Fork): ReadonlyArray<Batcher> =>
  Array.from({ length: PARTITIONS }, (_, p) =>
    new Batcher(
      (retains, forgets, scoped) =>
        // Each attempt a copy of its own, sent now (see the protocol's `sentAt`).
        routed(Effect.suspend(() => clientOf(p).Write({ retains, forgets, sentAt: Date.now(), scoped }))).pipe(
          Effect.catchAllCause(notConfirmed(`the owner of partition ${p}`))
        ),
      fork
    ))

/** Writes what a runner did not take through the partitions' lanes: the banks their owners refused. */
const throughLanes = (
  lanes: ReadonlyArray<Batcher>,
  notTaken: { readonly retains: Pairs; readonly forgets: Pairs; readonly scoped?: Scoped }
): Effect.Effect<ReadonlyArray<string>, WriteNotConfirmed> => {
  const acks = new Set<Ack>()
  for (const [bankId, count] of notTaken.retains) acks.add(lanes[partitionOf(bankId)]!.add("retains", bankId, count))
  for (const [bankId, count] of notTaken.forgets) acks.add(lanes[partitionOf(bankId)]!.add("forgets", bankId, count))
  for (const write of notTaken.scoped ?? []) acks.add(lanes[partitionOf(write.bankId)]!.addScoped(write))
  return Effect.map(Effect.forEach(acks, Deferred.await), (refused) => refused.flat())
}

/**
 * The routes of the partitions this router does not run: partition `q`'s writes go to router entity `via[q]`, on the
 * runner holding that partition's shard. At first each partition has its own route; each `Forward` answers the
 * partitions its runner runs, and from then on they share that one. A partition the answer leaves out has its own
 * route again. Nothing depends on this being right but the number of RPCs: what a runner does not take, the sender
 * writes to the partition's owner.
 */
export const makeRoutes = (clientOf: (c: number) => RouterClient, lanes: ReadonlyArray<Batcher>, fork: Fork) => {
  const via = Array.from({ length: PARTITIONS }, (_, q) => q)
  const learn = (c: number, running: ReadonlyArray<number>) => {
    for (let q = 0; q < PARTITIONS; q++) if (via[q] === c) via[q] = q
    for (const q of running) if (Number.isInteger(q) && q >= 0 && q < PARTITIONS) via[q] = c
  }
  const routes = Array.from({ length: PARTITIONS }, (_, c) =>
    new Batcher(
      (retains, forgets, scoped) =>
        routed(Effect.suspend(() => clientOf(c).Forward({ retains, forgets, sentAt: Date.now(), scoped }))).pipe(
          Effect.catchAllCause(notConfirmed(`the runner of partition ${c}`)),
          Effect.flatMap((answer) => {
            learn(c, answer.running)
            const { forgets, retains, scoped } = answer.notTaken
            if (retains.length === 0 && forgets.length === 0 && (scoped === undefined || scoped.length === 0)) {
              return Effect.succeed(answer.refused)
            }
            return Effect.map(throughLanes(lanes, answer.notTaken), (refused) => answer.refused.concat(refused))
          })
        ),
      fork,
      ROUTE_LINGER
    ))
  return {
    /** Takes a write of partition `p` into its route: the ack of the batch holding it. */
    add: (p: number, kind: WriteKind, bankId: string, count: number): Ack => routes[via[p]!]!.add(kind, bankId, count),
    /** Takes a write of partition `p` that named scopes into its route. */
    addScoped: (p: number, write: ScopedWrite): Ack => routes[via[p]!]!.addScoped(write),
    routes
  }
}

/** A retain or forget counted in a queue running here: refused when it is a new bank past the partition's maximum. */
const countHere = (queue: CompileQueueService, kind: WriteKind, bankId: string, count: number): boolean => {
  const refused = queue.unsafeCheckRoom([bankId]) !== undefined
  if (kind === "retains") queue.unsafeNotifyRetain(bankId, count)
  else queue.unsafeNotifyForget(bankId, count)
  return refused
}

/** The queue running partition `p` here when a copy sent at `sentAt` may count there; else undefined. */
const takerOf = (local: LocalPartitions, takenAt: (partition: number) => number, p: number, sentAt: number) => {
  const queue = local.get(p)
  return queue === undefined || sentAt < takenAt(p) ? undefined : queue
}

/**
 * `Forward`, on the runner it reached. Each write whose partition runs here, with its lease proven, and whose run here
 * took the lease before the copy was sent, is counted as the owner's `Write` counts it (a new bank past the partition's
 * maximum is refused, the rest counted); the others are answered back, not taken. Answered once the queues here
 * stored what they counted, in durable mode.
 */
export const forwardHandler = (local: LocalPartitions, takenAt: (partition: number) => number, durable: boolean) =>
(
  { payload }: {
    readonly payload: { readonly retains: Pairs; readonly forgets: Pairs; readonly sentAt: number; readonly scoped?: Scoped }
  }
) =>
  Effect.suspend(() => {
    const refused: Array<string> = []
    const notTaken = {
      retains: [] as Array<readonly [string, number]>,
      forgets: [] as Array<readonly [string, number]>,
      scoped: [] as Array<ScopedWrite>
    }
    const toStore = new Set<CompileQueueService>()
    const take = (kind: WriteKind, pairs: Pairs) => {
      for (const pair of pairs) {
        const queue = takerOf(local, takenAt, partitionOf(pair[0]), payload.sentAt)
        if (queue === undefined) {
          notTaken[kind].push(pair)
          continue
        }
        if (countHere(queue, kind, pair[0], pair[1])) refused.push(pair[0])
        if (durable) toStore.add(queue)
      }
    }
    take("retains", payload.retains)
    take("forgets", payload.forgets)
    for (const write of payload.scoped ?? []) {
      const queue = takerOf(local, takenAt, partitionOf(write.bankId), payload.sentAt)
      if (queue === undefined) notTaken.scoped.push(write)
      else countScoped(queue, [write], refused)
      if (queue !== undefined && durable) toStore.add(queue)
    }
    const running = Array.from({ length: PARTITIONS }, (_, p) => p).filter((p) => local.has(p))
    // Scoped writes are rare: the answer leaves the field out when it has none (as a batch does).
    const { forgets, retains, scoped } = notTaken
    const answer = { refused, running, notTaken: scoped.length === 0 ? { retains, forgets } : notTaken }
    if (toStore.size === 0) return Effect.succeed(answer)
    return Effect.as(Effect.forEach(toStore, (queue) => queue.flush, { concurrency: "unbounded", discard: true }), answer)
  })
