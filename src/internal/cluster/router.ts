/**
 * The router side of cluster mode, on every runner: a `CompileQueueService` whose every call goes to the owner of the
 * bank's partition. Retains and forgets of the partitions running here are counted here; the others are coalesced
 * per runner into one `Forward` RPC at a time (`writeBatches.ts`: the next batch collects while one is in flight), and
 * `WriteAcks.settle` waits for the batch holding a write; reads go to the owner; queue-wide reads fan out to every
 * partition.
 *
 * @internal
 */
import { Sharding } from "@effect/cluster"
import { Cause, Clock, DateTime, Deferred, Duration, Effect, Option, Runtime } from "effect"
import type { BankCompileState } from "../../BankCompileState.js"
import { BankPolicyError, validatePolicy } from "../../BankPolicy.js"
import type { BankPage, CompileQueueService, CompileQueueStats } from "../../CompileQueue.js"
import type { CompileTriggerConfig } from "../../CompileTriggerConfig.js"
import { combine, type StoreHealth } from "../../StoreHealth.js"
import { CompileBudgetState } from "../../CompileBudget.js"
import { PARTITIONS, PartitionEntity, partitionOf, RouterEntity } from "./protocol.js"
import { globalBucketStates, globalLevels } from "../core/compileCore.js"
import type { BudgetLimits, GlobalBuckets } from "../core/tokenBucket.js"
import type { LocalPartitions } from "./partitionSlots.js"
import { badCountMessage, invalidBankId, isCount } from "../core/inputRules.js"
import type { WriteOptions } from "../../DirtyScopes.js"
import { invalidScopedWrite, scopedWrite } from "./scopedWrites.js"
import { WriteAcks, WriteNotConfirmed } from "../runtime/writeAcks.js"
import { routed, ROUTE_TIMEOUT } from "./routed.js"
import { type Ack, type Batcher, forwardHandler, makeLanes, makeRoutes, type WriteKind } from "./writeBatches.js"
import { PartitionHost } from "./owner.js"

/** The runner's budget as the router reports it: its limits and its global buckets (shared by its partitions). */
export interface RunnerBudget {
  readonly limits: BudgetLimits
  readonly buckets: GlobalBuckets
}

/** The RPC client of one partition's entity: its calls reach whichever runner owns the partition now. */
type PartitionClient = ReturnType<Effect.Effect.Success<typeof PartitionEntity.client>>

/** Every partition's client, by partition number. */
type Clients = ReadonlyArray<PartitionClient>

// --- writes: counted here or routed, settled -------------------------------------------------------------------------

/** Why a retain or forget is ignored (a bad bank id, count or scope), or undefined when it is counted. */
const invalidWrite = (bankId: string, count: number | WriteOptions): string | undefined =>
  typeof count === "number"
    ? invalidBankId(bankId) ?? (isCount(count) ? undefined : badCountMessage(count))
    : invalidBankId(bankId) ?? invalidScopedWrite(count)

/**
 * The coalescing side of the routes: a retain or forget of a partition running here is counted at once; any other
 * joins its route's open batch (`latest[p]` is then that batch's ack). Synchronous, so that the HTTP route can settle
 * right after it: the partition's latest batch is then the one holding the request's write (a route changes only when
 * a `Forward` is answered, in a fiber of its own). A write that names scopes travels as it is, beside the counts.
 */
const makeWrite = (
  routes: ReturnType<typeof makeRoutes>,
  latest: Array<Ack | undefined>,
  local: LocalPartitions,
  runSync: <A>(effect: Effect.Effect<A>) => A
) =>
(kind: WriteKind, bankId: string, count: number | WriteOptions = 1): void => {
  const invalid = invalidWrite(bankId, count)
  if (invalid !== undefined) {
    return runSync(Effect.logWarning(`ignored request for bank ${JSON.stringify(bankId)}: ${invalid}`))
  }
  const p = partitionOf(bankId)
  // This runner owns the partition and runs its queue: counted here and now, no RPC.
  const queue = local.get(p)
  if (queue !== undefined) {
    return kind === "retains" ? queue.unsafeNotifyRetain(bankId, count) : queue.unsafeNotifyForget(bankId, count)
  }
  latest[p] = typeof count === "number"
    ? routes.add(p, kind, bankId, count)
    : routes.addScoped(p, scopedWrite(kind === "forgets", bankId, count))
}

/** Durable: a write counted here, by a partition this runner runs, is confirmed once that queue stored it. */
const storedHere = (queue: CompileQueueService, p: number): Effect.Effect<void, WriteNotConfirmed> =>
  Effect.mapError(queue.flush, (error) =>
    new WriteNotConfirmed({
      message: `partition ${p} counted the write but did not store it: ${error.message}`,
      notStored: true
    }))

/**
 * `WriteAcks.settle`: what to wait for is taken now, at the call (the batches holding each partition's latest write,
 * and in durable mode the flushes of the partitions running here); the returned effect only waits. One batch carries
 * the writes of many partitions (all those of a runner), so there are few batches to wait for, and they are awaited
 * one after the other: a fiber forked per wait inside the HTTP request's fiber (and its fiber refs joined back) cost
 * more than the rest of the route. Flushes start together (a flush is asked for when its wait begins).
 */
const makeSettle = (
  latest: ReadonlyArray<Ack | undefined>,
  local: LocalPartitions,
  durable: boolean,
  batchers: ReadonlyArray<Batcher>
) =>
  (bankIds: Iterable<string>): Effect.Effect<void, WriteNotConfirmed> => {
    // No batch collecting or out: the writes just counted were all counted here, and in memory mode that answers them.
    if (!durable && !batchers.some((batcher) => batcher.busy)) return Effect.void
    const ids: ReadonlyArray<string> = Array.isArray(bankIds) ? bankIds : Array.from(bankIds)
    const flushes: Array<Effect.Effect<void, WriteNotConfirmed>> = []
    const acks = new Set<Ack>()
    const seen = new Uint8Array(PARTITIONS)
    for (const bankId of ids) {
      if (typeof bankId !== "string") continue
      const p = partitionOf(bankId)
      if (seen[p] === 1) continue
      seen[p] = 1
      const queue = durable ? local.get(p) : undefined
      if (queue !== undefined) flushes.push(storedHere(queue, p))
      const ack = latest[p]
      if (ack !== undefined) acks.add(ack)
    }
    const confirmed = acks.size === 0 ? Effect.void : answersOf(acks, ids, () => routedPartitions(seen, local))
    if (flushes.length === 0) return confirmed
    return Effect.all([confirmed, ...flushes], { concurrency: "unbounded", discard: true })
  }

/** The partitions among `seen` that do not run here, for a message: "partition 3", "partitions 3, 17". */
const routedPartitions = (seen: Uint8Array, local: LocalPartitions): string => {
  const routed: Array<number> = []
  seen.forEach((touched, p) => {
    if (touched === 1 && !local.has(p)) routed.push(p)
  })
  return `${routed.length === 1 ? "partition" : "partitions"} ${routed.join(", ")}`
}

/**
 * The owners' answers to the batches holding the writes, within ROUTE_TIMEOUT of the wait: a batch waits for the one
 * in flight before it is sent, and the two together must not hold a request longer than one route's deadline.
 */
const answersOf = (
  acks: Iterable<Ack>,
  bankIds: ReadonlyArray<string>,
  partitions: () => string
): Effect.Effect<void, WriteNotConfirmed> =>
  Effect.forEach(acks, (ack) => Effect.flatMap(Deferred.await(ack), (refused) => refusedOf(refused, bankIds)), {
    discard: true
  }).pipe(
    Effect.timeoutFail({
      duration: ROUTE_TIMEOUT,
      onTimeout: () =>
        new WriteNotConfirmed({
          message: `the owners of ${partitions()} did not confirm the write within ${Duration.format(ROUTE_TIMEOUT)}`,
          notStored: false
        })
    })
  )

/** Fails when the owners refused one of `bankIds` (a new bank past its partition's maximum). */
const refusedOf = (
  refused: ReadonlyArray<string>,
  bankIds: ReadonlyArray<string>
): Effect.Effect<void, WriteNotConfirmed> => {
  if (refused.length === 0) return Effect.void
  const bankId = bankIds.find((id) => refused.includes(id))
  return bankId === undefined ? Effect.void : Effect.fail(
    new WriteNotConfirmed({
      message: `bank ${JSON.stringify(bankId)} was refused: partition ${
        partitionOf(bankId)
      } already holds its maximum number of banks`,
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
  if (!local.some((queue) => queue.unsafeCheckRoom(bankIds) !== undefined)) return undefined
  const byPartition = new Map<number, Array<string>>()
  for (const bankId of bankIds) {
    const p = partitionOf(bankId)
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
const batchesSent = (batchers: ReadonlyArray<Batcher>): Effect.Effect<void> =>
  Effect.forEach(
    batchers,
    (batcher) => batcher.latest === undefined ? Effect.void : Effect.ignore(Deferred.await(batcher.latest)),
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

/**
 * The router's `CompileQueueService` and its `WriteAcks`, on one client per partition, a route per runner and a lane
 * per partition; registers the router entity, which receives the other runners' forwarded writes.
 */
export const makeRouter = (
  config: CompileTriggerConfig,
  local: LocalPartitions,
  runnerBudget: RunnerBudget,
  durable: boolean
) =>
  Effect.gen(function*() {
    const clientFor = yield* PartitionEntity.client
    const clients = Array.from({ length: PARTITIONS }, (_, p) => clientFor(String(p)))
    const routerClientFor = yield* RouterEntity.client
    const runtime = yield* Effect.runtime<never>()
    const runSync = Runtime.runSync(runtime)
    const runFork = Runtime.runFork(runtime)
    const fork = (effect: Effect.Effect<void>) => void runFork(effect)
    const lanes = makeLanes((p) => clients[p]!, fork)
    const routes = makeRoutes((c) => routerClientFor(String(c)), lanes, fork)
    const latest: Array<Ack | undefined> = Array.from({ length: PARTITIONS }, () => undefined)
    const now = () => runSync(Clock.currentTimeMillis)
    const write = makeWrite(routes, latest, local, runSync)

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

    const sharding = yield* Sharding.Sharding
    const { takenAt } = yield* PartitionHost
    yield* sharding.registerEntity(
      RouterEntity,
      Effect.succeed(RouterEntity.of({ Forward: forwardHandler(local, takenAt, durable) })),
      { maxIdleTime: Duration.infinity, concurrency: "unbounded" }
    )
    const batchers = [...routes.routes, ...lanes]
    // Added after the entity: closed before it, so the writes already taken still reach their owners.
    yield* Effect.addFinalizer(() => batchesSent(batchers))
    return { service, acks: WriteAcks.of({ settle: makeSettle(latest, local, durable, batchers) }) }
  })
