/**
 * Builds the compile queue service: the synchronous core (`compileCore.ts`) under a thin Effect runtime — the bank
 * queue (`bankQueue.ts`), the worker, retry and background fibers, persistence, and the graceful shutdown finalizer.
 *
 * @internal
 */
import { Context, Duration, Effect, Either, FiberSet, Option, type Scope } from "effect"
import type { BankCompileState } from "../../BankCompileState.js"
import { type BankLimitError, bankLimitError } from "../../BankLimit.js"
import { BankPolicyError, type BankPolicyInput, validatePolicy } from "../../BankPolicy.js"
import { BankStateStore, type BankStoreError } from "../../BankStateStore.js"
import { CompileEngine } from "../../CompileEngine.js"
import * as CompileMetrics from "../../CompileMetrics.js"
import type { CompileQueueService } from "../../CompileQueue.js"
import { type CompileQueueOptions, resolve, type ResolvedCompileBudget } from "../../CompileQueueOptions.js"
import { BankQueue, DEADLINE, ORDINARY, type Priorities, URGENT } from "./bankQueue.js"
import { type Answer, CompileCore, NOTHING } from "../core/compileCore.js"
import { FORGET, MANUAL, REASON_NAMES } from "../core/bankTable.js"
import { freshness, nextCompile } from "../core/freshnessViews.js"
import { CompileHistory } from "./compileHistory.js"
import { makeWorker } from "./compileWorker.js"
import { watchDeadlines } from "./deadlineWatch.js"
import { tokenCounter } from "./fencingTokens.js"
import { invalidBankId } from "../core/inputRules.js"
import { makeCompileNow, makeNotifyForget, makeNotifyRetain } from "./queueEntries.js"
import { supervised } from "./loop.js"
import { restore } from "./queuePersistence.js"
import { sleepMillis } from "./sleep.js"
import { appTracing } from "./tracing.js"
import { NO_TAGS, QueueRuntime } from "./queueRuntime.js"
import type { BudgetLimits, GlobalBuckets } from "../core/tokenBucket.js"
import { logStop, type StopSummary } from "./stopSummary.js"
import { WriteBehind } from "./writeBehind.js"
import { WorkloadLog } from "../workloadLog/workloadLog.js"
import { type BankIds, bothTallies, type Tally } from "../workloadLog/tally.js"

/** The flush at close gets this long by default (on top of `shutdownTimeout`), retrying while the store fails. */
const FINAL_FLUSH_TIMEOUT = Duration.seconds(10)

/**
 * Closing: stop accepting, cancel the timers, let running compiles finish and queued ones start for up to
 * `shutdownTimeout` — but not wait for queued banks the global budget will not let start before that deadline —
 * interrupt the rest, flush the store once more, and say what was left (`onStopped`, by default one log line).
 */
const shutdown = (
  rt: QueueRuntime,
  workers: FiberSet.FiberSet,
  background: FiberSet.FiberSet,
  writer: WriteBehind | undefined,
  finalFlushUntil: Effect.Effect<void>,
  onStopped: (summary: StopSummary) => Effect.Effect<void>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    rt.core.close()
    rt.publishCounts()
    yield* FiberSet.clear(background)
    yield* FiberSet.clear(rt.retries)
    const timeout = rt.opts.shutdownTimeout
    const deadline = rt.now() + Duration.toMillis(timeout)
    // Finalizers are uninterruptible: the deadline only fires on an interruptible wait.
    yield* rt.settled(deadline).pipe(Effect.interruptible, Effect.timeout(timeout), Effect.option)
    const forBudget = rt.core.waitingForBudget(rt.now())
    rt.interruptingCompiles = true
    yield* FiberSet.clear(workers)
    yield* rt.queue.shutdown // what it discards stays "pending" in the table (and in a store)
    CompileMetrics.queueSize.unsafeModify(-rt.core.queueShutDown(), NO_TAGS)
    rt.publishBudgetWaiting() // banks waiting for budget stay pending, but this queue no longer waits for it
    const unstored = writer === undefined ? undefined : yield* writer.final(finalFlushUntil)
    const { cutOff } = rt
    const leftPending = rt.core.pending.size - cutOff
    yield* onStopped({ leftPending, forBudget: Math.min(forBudget, leftPending), cutOff, unstored })
  })

/** `setPolicy` / `clearPolicy` / `policyOf` / `configFor`: checked input, one core transition, its answer carried out. */
const policyMethods = (rt: QueueRuntime) => {
  const { core } = rt
  const known = (bankId: string): number | undefined => core.table.index.get(bankId)
  const carryOut = (i: number, answer: Answer) => {
    rt.fireSignals()
    if (answer !== NOTHING) rt.answered(i, answer)
  }
  return {
    setPolicy: (bankId: string, input: BankPolicyInput): Effect.Effect<void, BankPolicyError | BankLimitError> =>
      Effect.suspend((): Effect.Effect<void, BankPolicyError | BankLimitError> => {
        const invalid = invalidBankId(bankId)
        if (invalid !== undefined) return Effect.fail(new BankPolicyError({ bankId: String(bankId), message: invalid }))
        const policy = validatePolicy(input)
        if (Either.isLeft(policy)) return Effect.fail(new BankPolicyError({ bankId, message: policy.left }))
        if (!core.accepting) return Effect.void
        const i = known(bankId) ?? core.add(bankId)
        if (i === -1) return Effect.fail(bankLimitError(bankId, core.table.maxBanks))
        carryOut(i, core.setPolicy(i, policy.right, rt.now()))
        return Effect.void
      }),
    clearPolicy: (bankId: string): Effect.Effect<void> =>
      Effect.sync(() => {
        const i = known(bankId)
        if (i !== undefined && core.accepting) carryOut(i, core.clearPolicy(i, rt.now()))
      }),
    policyOf: (bankId: string) =>
      Effect.sync(() => {
        const i = known(bankId)
        return Option.fromNullable(i === undefined ? undefined : core.policyOf(i))
      }),
    configFor: (bankId: string) =>
      Effect.sync(() => {
        const i = known(bankId)
        return i === undefined ? core.config : core.configOf(i)
      })
  }
}

/** The service's methods over a running queue. */
const service = (
  rt: QueueRuntime,
  writer: WriteBehind | undefined,
  tally: Tally | undefined
): CompileQueueService => {
  const { core } = rt
  const unsafeNotifyRetain = makeNotifyRetain(rt, tally)
  const unsafeCompileNow = makeCompileNow(rt)
  const unsafeNotifyForget = makeNotifyForget(rt, tally)
  return {
    ...policyMethods(rt),
    notifyForget: (bankId, count) => Effect.sync(() => unsafeNotifyForget(bankId, count)),
    unsafeNotifyForget,
    notifyRetain: (bankId, count) => Effect.sync(() => unsafeNotifyRetain(bankId, count)),
    unsafeNotifyRetain,
    compileNow: (bankId, options) => Effect.sync(() => unsafeCompileNow(bankId, options)),
    unsafeCheckRoom: (bankIds) => {
      const refused = core.table.firstRefused(bankIds)
      return refused === undefined ? undefined : bankLimitError(refused, core.table.maxBanks)
    },
    drain: (options) => Effect.timeout(rt.drained, options?.timeout ?? Duration.seconds(5)),
    pendingBanks: rt.read(() => core.idsOf(core.pending)),
    runningBanks: rt.read(() => core.idsOf(core.running)),
    state: rt.read(() => {
      const all = new Map<string, BankCompileState>()
      for (let i = 0; i < core.table.size; i++) all.set(core.table.ids[i]!, core.snapshot(i))
      return all
    }),
    bankState: (bankId) =>
      rt.read(() => {
        const i = core.table.index.get(bankId)
        return i === undefined ? Option.none() : Option.some(core.snapshot(i))
      }),
    listBanks: (options) => rt.read(() => core.page(options)),
    sweepNow: rt.sweep,
    recentCompiles: (options) => Effect.sync(() => rt.history.recent(options)),
    runningCompiles: (bankId) => Effect.sync(() => rt.history.running(bankId)),
    stats: rt.read(() => {
      writer?.publish()
      rt.publishBudgetWaiting()
      return { ...core.counts(), budget: core.budgetCounts(rt.now()), store: writer?.health() }
    }),
    freshness: rt.read(() => rt.publishFreshness(freshness(core, rt.now(), rt.queue.lanes()))),
    nextCompile: (bankId) =>
      rt.read(() => {
        const i = core.table.index.get(bankId)
        return i === undefined ? Option.none() : Option.some(nextCompile(core, i, rt.now(), (b) => rt.queue.placeOf(b)))
      }),
    flush: writer === undefined ? Effect.void : writer.flush,
    budget: rt.read(() => core.budgetState(rt.now())),
    config: core.config
  }
}

/** The reason code of deadline-triggered compiles. */
const DEADLINE_REASON = (REASON_NAMES as ReadonlyArray<string>).indexOf("deadline")

/**
 * The bank queue's lanes from why the core queued a bank: forget and manual compiles are urgent, deadline ones go in
 * deadline order, the rest (size, staleness, restored) first come first served (decision 0011).
 */
export const corePriorities = (core: CompileCore): Priorities => ({
  laneOf: (i) => {
    const reason = core.table.reasons.get(i)
    if (reason === FORGET || reason === MANUAL) return URGENT
    return reason === DEADLINE_REASON ? DEADLINE : ORDINARY
  },
  deadlineOf: (i) => core.deadlineAt(i)
})

/** The resolved budget option as the core's limits (`Infinity` where unlimited). */
export const budgetLimits = (budget: ResolvedCompileBudget): BudgetLimits => ({
  tokens: budget.tokens,
  compiles: budget.compiles,
  bankTokens: budget.bankTokens,
  periodMillis: Duration.toMillis(budget.period)
})

/**
 * Global budget buckets a queue shares with others instead of its own (cluster mode: every partition a runner owns
 * draws on the runner's budget). Its per-bank buckets and deferred banks stay its own.
 */
export class SharedBudget extends Context.Tag("effect-compile-trigger/SharedBudget")<SharedBudget, GlobalBuckets>() {}

/** What only this package's own callers set (the tuner's replay); `CompileQueue.make` leaves it out. */
export interface InternalOptions {
  /** See `QueueRuntime.compileLogs` (default true). */
  readonly compileLogs?: boolean | undefined
  /**
   * Until when the flush at close retries while the store fails: by default for FINAL_FLUSH_TIMEOUT; with this, until
   * the effect completes (a cluster partition: until another runner holds it, or the runner's stop deadline).
   */
  readonly finalFlushUntil?: Effect.Effect<void> | undefined
  /** Hands the core to a test, which checks its invariants between steps (the model test). */
  readonly inspectCore?: ((core: CompileCore) => void) | undefined
  /** What the close does with its summary (default: the `stopped: …` line; a cluster partition adds it to its node's). */
  readonly onStopped?: ((summary: StopSummary) => Effect.Effect<void>) | undefined
  /** A tally of every retain and forget counted, over the queue's bank table (a cluster partition's unstored counts). */
  readonly tally?: ((table: BankIds) => Tally) | undefined
}

export const make = (
  options?: CompileQueueOptions,
  internal?: InternalOptions
): Effect.Effect<CompileQueueService, BankStoreError, CompileEngine | Scope.Scope> =>
  Effect.gen(function*() {
    const opts = yield* Effect.orDie(resolve(options))
    const engine = yield* CompileEngine
    const store = yield* Effect.serviceOption(BankStateStore)
    const tracing = yield* appTracing // a span costs ~8 µs a compile
    const queue = new BankQueue(opts.maxQueueSize)
    const core = new CompileCore({
      config: opts.config,
      maxAttempts: opts.maxAttempts,
      baseDelayMillis: Duration.toMillis(opts.baseDelay),
      maxQueueSize: opts.maxQueueSize,
      maxBanks: opts.maxBanks,
      persistent: Option.isSome(store), // only a queue with a store pays for change tracking
      offer: (i) => queue.unsafeOffer(i),
      budget: budgetLimits(opts.budget),
      sharedBudget: Option.getOrUndefined(yield* Effect.serviceOption(SharedBudget))
    })
    queue.priorities = corePriorities(core)
    internal?.inspectCore?.(core)
    // Made before the shutdown finalizer, so they are closed after it (finalizers run in reverse order).
    const workers = yield* FiberSet.make()
    const retries = yield* FiberSet.make()
    const background = yield* FiberSet.make()
    // The synchronous entry points log and read time through what the layer was built with (logger, TestClock).
    const rt = new QueueRuntime({
      core,
      queue,
      opts,
      runtime: yield* Effect.runtime<never>(),
      clock: yield* Effect.clock,
      retries,
      workers,
      history: new CompileHistory(opts.historyCapacity),
      compileLogs: internal?.compileLogs
    })

    if (Option.isSome(store)) yield* restore(rt, store.value)
    const writer = Option.isSome(store) ? new WriteBehind(rt, store.value) : undefined
    const finalFlushUntil = internal?.finalFlushUntil ?? sleepMillis(Duration.toMillis(FINAL_FLUSH_TIMEOUT), rt.clock)
    const onStopped = internal?.onStopped ?? ((summary: StopSummary) => logStop(summary))
    // The workload log (when on) drains this queue's tally once more after the close, then forgets it.
    const tally = Option.getOrUndefined(yield* Effect.serviceOption(WorkloadLog))?.register(core.table)
    if (tally !== undefined) yield* Effect.addFinalizer(() => Effect.sync(() => (tally.closed = true)))
    yield* Effect.addFinalizer(() => shutdown(rt, workers, background, writer, finalFlushUntil, onStopped))

    const worker = makeWorker(rt, engine, tracing, yield* tokenCounter(Option.getOrUndefined(store)))
    for (let n = 0; n < opts.concurrency; n++) yield* FiberSet.run(workers, worker)
    yield* FiberSet.run(background, supervised("the staleness sweep", rt.sweepLoop))
    yield* FiberSet.run(background, supervised("the staleness watcher", rt.watchStaleness))
    yield* FiberSet.run(background, supervised("the deadline watcher", watchDeadlines(rt)))
    if (writer !== undefined) yield* FiberSet.run(background, writer.loop)
    return service(rt, writer, bothTallies(tally, internal?.tally?.(core.table)))
  })
