/**
 * The router side of cluster mode, on every runner: a `CompileQueueService` whose every call goes to the owner of the
 * bank's partition. Retains and forgets are coalesced per partition into one `Write` RPC at a time (the next batch
 * collects while one is in flight), and `WriteAcks.settle` waits for the batch holding a write; reads go to the owner;
 * queue-wide reads fan out to every partition.
 *
 * @internal
 */
import {
  Cause,
  Clock,
  Fiber,
  DateTime,
  Deferred,
  Duration,
  Effect,
  Exit,
  FiberId,
  Option,
  Runtime,
  Schedule
} from "effect"
import type { AlreadyProcessingMessage, MailboxFull, PersistenceError } from "@effect/cluster/ClusterError"
import type { BankCompileState } from "../../BankCompileState.js"
import { BankPolicyError, validatePolicy } from "../../BankPolicy.js"
import type { BankPage, CompileQueueService, CompileQueueStats } from "../../CompileQueue.js"
import type { CompileTriggerConfig } from "../../CompileTriggerConfig.js"
import { combine, type StoreHealth } from "../../StoreHealth.js"
import { CompileBudgetState } from "../../CompileBudget.js"
import { PARTITIONS, PartitionEntity, type PartitionMoved, partitionOf } from "./protocol.js"
import { globalBucketStates, globalLevels } from "../core/compileCore.js"
import type { BudgetLimits, GlobalBuckets } from "../core/tokenBucket.js"
import type { LocalPartitions } from "./partitionSlots.js"
import { badCountMessage, invalidBankId, isCount } from "../core/inputRules.js"
import type { WriteOptions } from "../../DirtyScopes.js"
import { invalidScopedWrite, type ScopedWrite, scopedWrite } from "./scopedWrites.js"
import { WriteAcks, WriteNotConfirmed } from "../runtime/writeAcks.js"

/** A write or read the owner has not answered in this long fails (503 for a write: it may or may not count). */
const ROUTE_TIMEOUT = Duration.seconds(30)
/**
 * A lane sends its next batch once the one in flight is answered, or once that one has been out this long: an owner
 * frozen or cut off must not hold up the writes that will reach its successor. (A batch is never sent twice: the one
 * out goes on, and is answered by the cluster, or fails at ROUTE_TIMEOUT.)
 */
const LANE_STALL = Duration.seconds(1)

/** Completes with the banks the owner refused (new ones past its partition's `maxBanks`). */
type Ack = Deferred.Deferred<ReadonlyArray<string>, WriteNotConfirmed>

/** One partition's writes not yet sent, and whether a `Write` is in flight. */
class Lane {
  retains = new Map<string, number>()
  forgets = new Map<string, number>()
  /** Writes that named scopes, sent as they are (`scopedWrites.ts`). */
  scoped: Array<ScopedWrite> = []
  /** The batch collecting now; its deferred completes when the owner answers for it. */
  open: Ack | undefined = undefined
  /** The batch that holds the latest write (the open one, or one in flight). */
  latest: Ack | undefined = undefined
  sending = false
}

const isClusterError = (error: unknown): boolean => {
  const tag = (error as { readonly _tag?: unknown } | null)?._tag
  return tag === "MailboxFull" || tag === "AlreadyProcessingMessage" || tag === "PersistenceError" ||
    tag === "RpcClientError" || tag === "TimeoutException" || tag === "PartitionMoved"
}

type ClusterErrors = MailboxFull | AlreadyProcessingMessage | PersistenceError | PartitionMoved

const retried = (error: unknown): boolean => {
  const tag = (error as { readonly _tag?: unknown } | null)?._tag
  return tag === "MailboxFull" || tag === "PartitionMoved"
}

/**
 * An owner's answer. A full mailbox, or a partition that moved while the call was on its way, is asked again (the
 * cluster resolves the owner anew), bounded by ROUTE_TIMEOUT; the cluster's own errors are defects.
 */
const routed = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, Exclude<E, ClusterErrors>, R> =>
  effect.pipe(
    Effect.retry({ while: retried, schedule: Schedule.spaced(Duration.millis(50)) }),
    Effect.timeout(ROUTE_TIMEOUT),
    Effect.catchIf(isClusterError, (error) => Effect.die(error))
  ) as unknown as Effect.Effect<A, Exclude<E, ClusterErrors>, R>

/** The runner's budget as the router reports it: its limits and its global buckets (shared by its partitions). */
export interface RunnerBudget {
  readonly limits: BudgetLimits
  readonly buckets: GlobalBuckets
}

/** The RPC client of one partition's entity: its calls reach whichever runner owns the partition now. */
type PartitionClient = ReturnType<Effect.Effect.Success<typeof PartitionEntity.client>>

/** Every partition's client, by partition number. */
type Clients = ReadonlyArray<PartitionClient>

// --- write lanes: coalescing, send, settle ------------------------------------------------------------------------

/**
 * A bank's partition, remembered for the rest of the task: a request's writes, its room check and its `settle` each
 * need it, and hashing the id costs more than counting the retain. Bounded by what one task writes.
 */
let partitionsInTask: Map<string, number> | undefined
const forgetPartitionsInTask = () => {
  partitionsInTask = undefined
}
const partitionInTask = (bankId: string): number => {
  if (partitionsInTask === undefined) {
    partitionsInTask = new Map()
    queueMicrotask(forgetPartitionsInTask)
  }
  let p = partitionsInTask.get(bankId)
  if (p === undefined) {
    p = partitionOf(bankId)
    partitionsInTask.set(bankId, p)
  }
  return p
}

/** Why a retain or forget is ignored (a bad bank id or count), or undefined when it is counted. */
const invalidWrite = (bankId: string, count: number): string | undefined =>
  invalidBankId(bankId) ?? (isCount(count) ? undefined : badCountMessage(count))

/**
 * Sends the lane's open batch as one `Write` and completes its ack with the owner's answer, then the batch that
 * collected meanwhile, and so on until none is open: then the lane stops sending (the next write starts it again).
 */
const sendLane = (lane: Lane, client: PartitionClient, p: number): Effect.Effect<void> =>
  Effect.suspend(() => {
    const ack = lane.open
    if (ack === undefined) {
      lane.sending = false
      return Effect.void
    }
    const retains = Array.from(lane.retains)
    const forgets = Array.from(lane.forgets)
    const scoped = lane.scoped.length === 0 ? undefined : lane.scoped
    lane.retains.clear()
    lane.forgets.clear()
    if (scoped !== undefined) lane.scoped = []
    lane.open = undefined
    // Each attempt a copy of its own, sent now (see the protocol's `sentAt`).
    const answered = Effect.suspend(() => client.Write({ retains, forgets, sentAt: Date.now(), scoped })).pipe(
      routed,
      Effect.exit,
      Effect.map((exit) => {
        Deferred.unsafeDone(
          ack,
          Exit.isSuccess(exit) ? Exit.succeed(exit.value) : Exit.fail(
            new WriteNotConfirmed({
              message: `the owner of partition ${p} did not confirm the write: ${Cause.pretty(exit.cause)}`,
              notStored: Option.exists(Cause.failureOption(exit.cause), (error) => error._tag === "BankStoreError")
            })
          )
        )
      })
    )
    // Answered, or stalled: either way the next batch (if one collected meanwhile) goes now.
    return Effect.forkDaemon(answered).pipe(
      Effect.flatMap((fiber) => Effect.raceFirst(Fiber.await(fiber), Effect.sleep(LANE_STALL))),
      Effect.zipRight(sendLane(lane, client, p))
    )
  })

/**
 * The coalescing side of the lanes: a retain or forget joins its partition's open batch, and the first write of an
 * idle lane starts its sender. Synchronous, so that the HTTP route can settle right after it.
 */
const makeWrite = (
  clients: Clients,
  lanes: ReadonlyArray<Lane>,
  local: LocalPartitions,
  runtime: Runtime.Runtime<never>
) => {
  const runFork = Runtime.runFork(runtime)
  const runSync = Runtime.runSync(runtime)
  return (kind: "retains" | "forgets", bankId: string, count: number | WriteOptions = 1): void => {
    const options = typeof count === "number" ? undefined : count
    const invalid = options === undefined
      ? invalidWrite(bankId, count as number)
      : invalidBankId(bankId) ?? invalidScopedWrite(options)
    if (invalid !== undefined) {
      return runSync(Effect.logWarning(`ignored request for bank ${JSON.stringify(bankId)}: ${invalid}`))
    }
    const p = partitionInTask(bankId)
    // This runner owns the partition and runs its queue: counted here and now, no RPC.
    const queue = local.get(p)
    if (queue !== undefined) {
      return kind === "retains" ? queue.unsafeNotifyRetain(bankId, count) : queue.unsafeNotifyForget(bankId, count)
    }
    const lane = lanes[p]!
    if (options !== undefined) lane.scoped.push(scopedWrite(kind === "forgets", bankId, options))
    else lane[kind].set(bankId, (lane[kind].get(bankId) ?? 0) + (count as number))
    lane.latest = lane.open ??= Deferred.unsafeMake<ReadonlyArray<string>, WriteNotConfirmed>(FiberId.none)
    if (!lane.sending) {
      lane.sending = true
      // Yield first: the rest of a batch request (and concurrent requests) joins this RPC.
      runFork(Effect.zipRight(Effect.yieldNow(), sendLane(lane, clients[p]!, p)))
    }
  }
}

/** Durable: a write counted here, by a partition this runner runs, is confirmed once that queue stored it. */
const storedHere = (queue: CompileQueueService, p: number): Effect.Effect<void, WriteNotConfirmed> =>
  Effect.mapError(queue.flush, (error) =>
    new WriteNotConfirmed({
      message: `partition ${p} counted the write but did not store it: ${error.message}`,
      notStored: true
    }))

/**
 * `WriteAcks.settle`: what to wait for is taken now, at the call (the batch holding each partition's latest write,
 * and in durable mode the flush of a partition running here); the returned effect only waits.
 */
const makeSettle = (lanes: ReadonlyArray<Lane>, local: LocalPartitions, durable: boolean) =>
  (bankIds: Iterable<string>): Effect.Effect<void, WriteNotConfirmed> => {
    const waits: Array<Effect.Effect<void, WriteNotConfirmed>> = []
    const byPartition = new Map<number, Array<string>>()
    for (const bankId of bankIds) {
      if (typeof bankId !== "string") continue
      const p = partitionInTask(bankId)
      const ids = byPartition.get(p)
      if (ids !== undefined) {
        ids.push(bankId)
        continue
      }
      byPartition.set(p, [bankId])
      const queue = durable ? local.get(p) : undefined
      if (queue !== undefined) waits.push(storedHere(queue, p))
    }
    for (const [p, ids] of byPartition) {
      const ack = lanes[p]!.latest
      if (ack !== undefined) waits.push(Effect.flatMap(answerOf(ack, p), (refused) => refusedOf(refused, ids, p)))
    }
    if (waits.length === 0) return Effect.void
    return Effect.all(waits, { concurrency: "unbounded", discard: true })
  }

/**
 * The owner's answer to the batch holding a write, within ROUTE_TIMEOUT of the wait: a batch waits for the one in
 * flight before it is sent, and the two together must not hold a request longer than one route's deadline.
 */
const answerOf = (ack: Ack, p: number): Effect.Effect<ReadonlyArray<string>, WriteNotConfirmed> =>
  Deferred.await(ack).pipe(
    Effect.timeoutFail({
      duration: ROUTE_TIMEOUT,
      onTimeout: () =>
        new WriteNotConfirmed({
          message: `the owner of partition ${p} did not confirm the write within ${Duration.format(ROUTE_TIMEOUT)}`,
          notStored: false
        })
    })
  )

/** Fails when the owner refused one of `bankIds` (a new bank past its partition's maximum). */
const refusedOf = (
  refused: ReadonlyArray<string>,
  bankIds: ReadonlyArray<string>,
  p: number
): Effect.Effect<void, WriteNotConfirmed> => {
  if (refused.length === 0) return Effect.void
  const bankId = bankIds.find((id) => refused.includes(id))
  return bankId === undefined ? Effect.void : Effect.fail(
    new WriteNotConfirmed({
      message: `bank ${JSON.stringify(bankId)} was refused: partition ${p} already holds its maximum number of banks`,
      refused: bankId
    })
  )
}

/**
 * `unsafeCheckRoom` over the partitions this runner runs (the owner of any other checks when the write reaches it:
 * `refusedOf`).
 */
const makeCheckRoom = (local: LocalPartitions): CompileQueueService["unsafeCheckRoom"] => (bankIds) => {
  // Room for all of them in every local partition (the usual case): no need to hash each id to its partition.
  let full = false
  for (const queue of local.values()) if ((full = queue.unsafeCheckRoom(bankIds) !== undefined)) break
  if (!full) return undefined
  const byPartition = new Map<number, Array<string>>()
  for (const bankId of bankIds) {
    const p = partitionInTask(bankId)
    if (!local.has(p)) continue
    const ids = byPartition.get(p)
    if (ids === undefined) byPartition.set(p, [bankId])
    else ids.push(bankId)
  }
  for (const [p, ids] of byPartition) {
    const refused = local.get(p)?.unsafeCheckRoom(ids)
    if (refused !== undefined) return refused
  }
  return undefined
}

/** At close: let the writes already taken reach their owners (bounded). */
const lanesSent = (lanes: ReadonlyArray<Lane>): Effect.Effect<void> =>
  Effect.forEach(
    lanes,
    (lane) => lane.latest === undefined ? Effect.void : Effect.ignore(Deferred.await(lane.latest)),
    { discard: true }
  ).pipe(Effect.interruptible, Effect.timeout(ROUTE_TIMEOUT), Effect.ignore)

// --- the owner of one bank ----------------------------------------------------------------------------------------

type OwnerCalls = "setPolicy" | "clearPolicy" | "policyOf" | "configFor" | "compileNow" | "bankState"

/** The calls about one bank: its partition's queue answers them when it runs here, else its owner over RPC. */
const ownerCalls = (clients: Clients, local: LocalPartitions): Pick<CompileQueueService, OwnerCalls> => {
  const owner = (bankId: string) => clients[partitionOf(bankId)]!
  const localOwner = (bankId: string) => local.get(partitionOf(bankId))
  return {
    // Checked here as the owner's queue checks it: bad input fails the same way, without a round trip.
    setPolicy: (bankId, input) =>
      Effect.suspend(() => {
        const invalid = invalidBankId(bankId)
        if (invalid !== undefined) return Effect.fail(new BankPolicyError({ bankId: String(bankId), message: invalid }))
        const policy = validatePolicy(input)
        if (policy._tag === "Left") return Effect.fail(new BankPolicyError({ bankId, message: policy.left }))
        const queue = localOwner(bankId)
        return queue !== undefined
          ? queue.setPolicy(bankId, policy.right)
          : routed(owner(bankId).SetPolicy({ bankId, policy: policy.right }))
      }),
    clearPolicy: (bankId) =>
      Effect.suspend(() => localOwner(bankId)?.clearPolicy(bankId) ?? routed(owner(bankId).ClearPolicy({ bankId }))),
    policyOf: (bankId) =>
      Effect.suspend(() =>
        localOwner(bankId)?.policyOf(bankId) ??
          Effect.map(routed(owner(bankId).PolicyOf({ bankId })), Option.fromNullable)
      ),
    configFor: (bankId) =>
      Effect.suspend(() => localOwner(bankId)?.configFor(bankId) ?? routed(owner(bankId).ConfigFor({ bankId }))),
    compileNow: (bankId, options) =>
      Effect.suspend(() =>
        localOwner(bankId)?.compileNow(bankId, options) ??
          routed(owner(bankId).CompileNow(options?.scopes === undefined ? { bankId } : { bankId, scopes: options.scopes }))
      ),
    bankState: (bankId) =>
      Effect.suspend(() =>
        localOwner(bankId)?.bankState(bankId) ??
          Effect.map(routed(owner(bankId).BankState({ bankId })), Option.fromNullable)
      )
  }
}

// --- fan-out over every partition ---------------------------------------------------------------------------------

/** Asks every partition at once; the answers in partition order. */
const everyPartition = <A, E>(f: (p: number) => Effect.Effect<A, E>) =>
  Effect.forEach(Array.from({ length: PARTITIONS }, (_, p) => p), f, { concurrency: "unbounded" })

/** Every partition's counts, summed; the budget levels are this runner's (its partitions share its buckets). */
const statsOfEveryPartition = (
  clients: Clients,
  runnerBudget: RunnerBudget,
  now: () => number
): Effect.Effect<CompileQueueStats> =>
  Effect.map(
    everyPartition((p) => routed(clients[p]!.Stats())),
    (all) => {
      let banks = 0, pending = 0, running = 0, queued = 0, capacity = 0, deferred = 0
      const stores: Array<StoreHealth> = []
      for (const s of all) {
        if (s.store !== null) stores.push(s.store)
        banks += s.banks
        pending += s.pending
        running += s.running
        queued += s.queued
        capacity += s.capacity === null ? Infinity : s.capacity
        deferred += s.deferred
      }
      return {
        banks,
        pending,
        running,
        queued,
        capacity,
        budget: { ...globalLevels(runnerBudget.buckets, now()), deferred },
        store: combine(stores),
        cluster: true
      }
    }
  )

/** This runner's global levels; the deferred and waiting banks of every partition, wherever it runs. */
const budgetOfEveryPartition = (
  clients: Clients,
  runnerBudget: RunnerBudget,
  now: () => number
): Effect.Effect<CompileBudgetState> =>
  Effect.map(
    everyPartition((p) => routed(clients[p]!.Budget())),
    (all) => {
      const at = now()
      const { bankTokens, periodMillis } = runnerBudget.limits
      const deferred = all.flatMap((state) => state.deferred)
        .sort((a, b) => DateTime.toEpochMillis(a.dueAt) - DateTime.toEpochMillis(b.dueAt))
        .slice(0, 1000)
      return new CompileBudgetState({
        periodSeconds: periodMillis / 1000,
        ...globalBucketStates(runnerBudget.buckets, at),
        bankTokens: Number.isFinite(bankTokens) ? bankTokens : null,
        waiting: all.reduce((sum, state) => sum + state.waiting, 0),
        deferredCount: all.reduce((sum, state) => sum + state.deferredCount, 0),
        deferred
      }, true)
    }
  )

/** The pending and running banks, and every bank's state: every partition's, merged. */
const banksOfEveryPartition = (
  clients: Clients
): Pick<CompileQueueService, "pendingBanks" | "runningBanks" | "state"> => ({
  pendingBanks: Effect.map(
    everyPartition((p) => routed(clients[p]!.Banks({ status: "pending" }))),
    (all) => new Set(all.flat())
  ),
  runningBanks: Effect.map(
    everyPartition((p) => routed(clients[p]!.Banks({ status: "running" }))),
    (all) => new Set(all.flat())
  ),
  state: Effect.map(
    everyPartition((p) => routed(clients[p]!.State())),
    (all) => new Map(all.flat().map((bank) => [bank.bankId, bank] as const))
  )
})

/** Pages walk the partitions in order; the cursor is `<partition>.<that partition's cursor>`. */
const listBanksAcrossPartitions = (clients: Clients): CompileQueueService["listBanks"] => (options) =>
  Effect.gen(function*() {
    const limit = Math.min(1000, Math.max(1, Math.floor(options?.limit ?? 100)))
    const match = /^(\d+)\.(.*)$/s.exec(options?.cursor ?? "")
    let p = match === null ? 0 : Math.min(PARTITIONS, Number(match[1]))
    let cursor: string | null = match === null || match[2] === "" ? null : match[2]!
    const banks: Array<BankCompileState> = []
    while (p < PARTITIONS && banks.length < limit) {
      const page = yield* routed(
        clients[p]!.ListBanks({ status: options?.status ?? null, limit: limit - banks.length, cursor })
      )
      banks.push(...page.banks)
      if (page.nextCursor !== null) {
        cursor = page.nextCursor
        continue
      }
      p++
      cursor = null
    }
    const nextCursor = p >= PARTITIONS ? Option.none() : Option.some(`${p}.${cursor ?? ""}`)
    return { banks, nextCursor } satisfies BankPage
  })

/**
 * The compiles, recent and running: one bank's from its owner; otherwise every partition's, merged (recent ones
 * newest first, running ones in the order they started). A partition running here answers without RPC.
 */
const compilesOfEveryPartition = (
  clients: Clients,
  local: LocalPartitions
): Pick<CompileQueueService, "recentCompiles" | "runningCompiles"> => ({
  recentCompiles: (options) =>
    Effect.suspend(() => {
      const limit = options?.limit === undefined ? Number.MAX_SAFE_INTEGER : Math.max(0, Math.trunc(options.limit))
      const ask = (p: number) =>
        local.get(p)?.recentCompiles(options) ?? routed(clients[p]!.RecentCompiles({
          limit,
          bankId: options?.bankId ?? null,
          outcome: options?.outcome ?? null
        }))
      if (options?.bankId !== undefined) return ask(partitionOf(options.bankId))
      return Effect.map(everyPartition(ask), (all) =>
        all.flat()
          .sort((a, b) => DateTime.toEpochMillis(b.endedAt) - DateTime.toEpochMillis(a.endedAt))
          .slice(0, limit))
    }),
  runningCompiles: (bankId) =>
    Effect.suspend(() => {
      const ask = (p: number) =>
        local.get(p)?.runningCompiles(bankId) ?? routed(clients[p]!.RunningCompiles({ bankId: bankId ?? null }))
      if (bankId !== undefined) return ask(partitionOf(bankId))
      return Effect.map(everyPartition(ask), (all) =>
        all.flat().sort((a, b) => DateTime.toEpochMillis(a.startedAt) - DateTime.toEpochMillis(b.startedAt)))
    })
})

/** Drain and sweep every partition; flush what this runner holds. */
const commandsToEveryPartition = (
  clients: Clients,
  local: LocalPartitions
): Pick<CompileQueueService, "drain" | "sweepNow" | "flush"> => ({
  drain: (options) =>
    Effect.flatMap(
      everyPartition((p) =>
        routed(clients[p]!.Drain({ timeoutMillis: Duration.toMillis(options?.timeout ?? Duration.seconds(5)) }))
      ),
      (drained) => drained.every(Boolean) ? Effect.void : Effect.fail(new Cause.TimeoutException("drain timed out"))
    ),
  sweepNow: Effect.map(everyPartition((p) => routed(clients[p]!.Sweep())), (all) => all.reduce((a, b) => a + b, 0)),
  // What this runner holds in memory: its partitions' changes (writes to other owners are theirs to store).
  flush: Effect.suspend(() =>
    Effect.forEach(Array.from(local.values()), (queue) => queue.flush, { concurrency: "unbounded", discard: true })
  )
})

// --- the router ---------------------------------------------------------------------------------------------------

/** The router's `CompileQueueService` and its `WriteAcks`, on one client per partition and one write lane each. */
export const makeRouter = (
  config: CompileTriggerConfig,
  local: LocalPartitions,
  runnerBudget: RunnerBudget,
  durable: boolean
) =>
  Effect.gen(function*() {
    const clientFor = yield* PartitionEntity.client
    const clients = Array.from({ length: PARTITIONS }, (_, p) => clientFor(String(p)))
    const lanes = Array.from({ length: PARTITIONS }, () => new Lane())
    const runtime = yield* Effect.runtime<never>()
    const runSync = Runtime.runSync(runtime)
    const now = () => runSync(Clock.currentTimeMillis)
    const write = makeWrite(clients, lanes, local, runtime)

    const service: CompileQueueService = {
      notifyRetain: (bankId, count) => Effect.sync(() => write("retains", bankId, count)),
      unsafeNotifyRetain: (bankId, count) => write("retains", bankId, count),
      notifyForget: (bankId, count) => Effect.sync(() => write("forgets", bankId, count)),
      unsafeNotifyForget: (bankId, count) => write("forgets", bankId, count),
      unsafeCheckRoom: makeCheckRoom(local),
      ...ownerCalls(clients, local),
      ...commandsToEveryPartition(clients, local),
      ...banksOfEveryPartition(clients),
      ...compilesOfEveryPartition(clients, local),
      listBanks: listBanksAcrossPartitions(clients),
      stats: statsOfEveryPartition(clients, runnerBudget, now),
      budget: budgetOfEveryPartition(clients, runnerBudget, now),
      config
    }

    yield* Effect.addFinalizer(() => lanesSent(lanes))
    return { service, acks: WriteAcks.of({ settle: makeSettle(lanes, local, durable) }) }
  })
