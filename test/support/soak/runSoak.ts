/**
 * The overload and shutdown soak, shared by `npm run soak` (bench/soak.ts, full size) and test/runtime/soak.test.ts (10×
 * smaller). Live clock, bounded in time.
 *
 * Part 1, overload: `notifies` retains over `banks` banks (a fifth of them on 1% "hot" banks) in batches, against a
 * small queue and an engine with random latency and failures. Then no more retains: every bank the rule says is due
 * must get compiled through the sweep, and the books must balance for every bank (`retained = consumed + counter`,
 * see test/support/reconcile.ts). Heap after GC is measured at the start, after the retains and at the end.
 *
 * Part 3, a cost budget under the same kind of load: a queue with a global token budget and a per-bank one, an engine
 * whose results report random `tokensUsed`; after `budgetRunMs` the queue is closed. Checked: the tokens used in all
 * over the run stay within what the global bucket allowed — its starting capacity plus `tokens × elapsed / period` —
 * plus one compile's tokens per worker (compiles may start while a little is left, and are charged when they end);
 * each bank within the same bound with its own limit plus one compile (it runs one compile at a time).
 *
 * Part 2, shutdown under load: a fresh queue under the same load (four banks hang forever, holding four workers), then
 * the scope is closed while compiles run. Checked: close returns within shutdownTimeout + 1 s; from the moment close
 * begins no bank is accepted (a brand-new bank id is retained in every batch: once one is refused, no later one is
 * accepted, and every compile that starts afterwards is of a bank that was already pending or running); nothing starts
 * after close returns; retains and compileNow after close are no-ops that do not throw.
 */
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { DateTime, Duration, Effect, Exit, Layer, Logger, Metric, Option, Context, Scope } from "effect"
import {
  type CompileEngineService,
  CompileEngine,
  CompileError,
  CompileMetrics,
  CompileQueue,
  type CompileQueueOptions,
  CompileResult,
  type CompileQueueService,
  shouldTrigger
} from "../../../src/index.js"
import { type EngineBehavior, makeBooks, ok, prng } from "../reconcile.js"

export interface SoakOptions {
  readonly banks: number
  readonly notifies: number
  readonly maxQueueSize: number
  readonly concurrency: number
  /** Engine latency is uniform in [0, maxLatencyMs). */
  readonly maxLatencyMs: number
  readonly failureRate: number
  readonly sizeThreshold: number
  readonly sweepInterval: Duration.DurationInput
  readonly retryBaseDelay: Duration.DurationInput
  readonly shutdownTimeout: Duration.DurationInput
  /** Retains per synchronous batch; the notifier sleeps 1 ms between batches so compiles interleave. */
  readonly notifyBatch: number
  /** How long part 2 loads the queue before closing it. */
  readonly loadBeforeCloseMs: number
  /** Part 1 fails if the due banks are not all compiled this long after the last retain. */
  readonly recoveryDeadlineMs: number
  readonly seed: number
  /** Part 3: the budget (per `budgetPeriod`), the most tokens one compile uses (uniform from half of it), how long. */
  readonly budgetTokens: number
  readonly budgetBankTokens: number
  readonly budgetPeriod: Duration.DurationInput
  readonly maxCompileTokens: number
  readonly budgetRunMs: number
  readonly log?: ((line: string) => void) | undefined
}

export const fullSoak: SoakOptions = {
  banks: 100_000,
  notifies: 2_000_000,
  maxQueueSize: 100,
  concurrency: 16,
  maxLatencyMs: 5,
  failureRate: 0.1,
  sizeThreshold: 10,
  sweepInterval: "25 millis",
  retryBaseDelay: "50 millis",
  shutdownTimeout: "1 second",
  notifyBatch: 2_000,
  loadBeforeCloseMs: 1_000,
  recoveryDeadlineMs: 240_000,
  seed: 4,
  budgetTokens: 20_000,
  budgetBankTokens: 150,
  budgetPeriod: "1 second",
  maxCompileTokens: 150,
  budgetRunMs: 10_000
}

/** 10× smaller: what `npm test` runs. */
export const reducedSoak: SoakOptions = {
  ...fullSoak,
  banks: 10_000,
  notifies: 200_000,
  loadBeforeCloseMs: 500,
  recoveryDeadlineMs: 60_000,
  budgetRunMs: 3_000
}

export interface SoakReport {
  readonly options: Omit<SoakOptions, "log">
  readonly overload: {
    readonly notifies: number
    readonly notifyPhaseMs: number
    readonly engineRuns: number
    readonly succeeded: number
    readonly failed: number
    readonly retries: number
    /** `compile_trigger_dropped_total`: times a due bank found the queue full (a bank can be counted many times). */
    readonly droppedEvents: number
    /** Banks due but idle (dropped) when the retains stopped, and how many of them the sweep got compiled. */
    readonly dueIdleAtEnd: number
    readonly recovered: number
    readonly recoveryMs: number
    readonly maxStatsQueued: number
    readonly maxRunsOfOneBank: number
    readonly unbalancedBanks: number
  }
  /** JS heap used plus ArrayBuffers after a full GC, in MB; null when no GC could be forced. */
  readonly heapMB: { readonly start: number; readonly afterNotifies: number; readonly end: number } | null
  readonly shutdown: {
    readonly shutdownTimeoutMs: number
    readonly closeMs: number
    readonly pendingAtClose: number
    readonly runningAtClose: number
    readonly startedDuringClose: number
    readonly startsAfterClose: number
    readonly notifiesAfterClose: number
  }
  readonly budget: {
    readonly elapsedMs: number
    readonly engineRuns: number
    readonly tokensUsed: number
    /** Starting capacity + tokens × elapsed / period + maxCompileTokens × concurrency. */
    readonly tokensBound: number
    /** What the global bucket let through (capacity + refill over the run), and the share of it used. */
    readonly tokensAllowed: number
    readonly used: number
    /** The bank that used most, its tokens, and its bound. */
    readonly topBank: string
    readonly topBankTokens: number
    readonly bankBound: number
    /** Most banks deferred at once (seen by the loader). */
    readonly maxDeferred: number
  }
  /** Failed checks, as readable lines; empty when the soak passed. */
  readonly problems: ReadonlyArray<string>
}

const forceGc = (() => {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (exposed !== undefined) return exposed
  try {
    // Under vitest the process has no --expose-gc: expose it now and fetch it from a fresh context.
    v8.setFlagsFromString("--expose-gc")
    return vm.runInNewContext("gc") as () => void
  } catch {
    return undefined
  }
})()

const heapMB = (): number => {
  forceGc!()
  forceGc!()
  const { arrayBuffers, heapUsed } = process.memoryUsage()
  return Math.round((heapUsed + arrayBuffers) / 1e5) / 10 // the queue's columns are typed arrays: count them too
}

/**
 * Heap used after GC, once the fiber has yielded: until it does, the fiber still holds the last value it computed
 * (here, a snapshot of every bank's state), which would read as ~26 MB of "growth" per 100,000 banks.
 */
const measureHeap = Effect.zipRight(Effect.sleep(Duration.millis(5)), Effect.sync(() => forceGc ? heapMB() : NaN))

const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)

/** The engine: random latency, a share of failures; `hang` banks never finish. */
const soakBehavior = (options: SoakOptions, random: () => number, hang: ReadonlySet<string>): EngineBehavior =>
(bankId) => {
  if (hang.has(bankId)) return Effect.never
  const latency = Effect.sleep(Duration.millis(random() * options.maxLatencyMs))
  return random() < options.failureRate
    ? Effect.zipRight(latency, Effect.fail(new CompileError({ bankId, message: "soak failure" })))
    : Effect.as(latency, ok(bankId))
}

const openQueue = (options: SoakOptions, engine: CompileEngineService, budget?: CompileQueueOptions["budget"]) =>
  Effect.gen(function*() {
    const queueOptions: CompileQueueOptions = {
      budget,
      config: { sizeThreshold: options.sizeThreshold },
      maxQueueSize: options.maxQueueSize,
      concurrency: options.concurrency,
      sweepInterval: options.sweepInterval,
      retry: { maxAttempts: 3, baseDelay: options.retryBaseDelay },
      shutdownTimeout: options.shutdownTimeout
    }
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      CompileQueue.layer(queueOptions).pipe(Layer.provide(Layer.succeed(CompileEngine, engine)), Layer.orDie),
      scope
    )
    return { queue: Context.get(context, CompileQueue), scope }
  })

const dueBanks = (queue: CompileQueueService) =>
  Effect.map(queue.state, (states) => {
    const now = DateTime.unsafeNow()
    const due: Array<string> = []
    for (const state of states.values()) {
      if (state.status === "idle" && shouldTrigger(state, queue.config, now)) due.push(state.bankId)
    }
    return due
  })

const overload = (options: SoakOptions, problems: Array<string>) =>
  Effect.gen(function*() {
    const log = options.log ?? (() => {})
    const random = prng(options.seed)
    const ids = Array.from({ length: options.banks }, (_, i) => `bank-${i}`)
    const hot = Math.max(1, Math.floor(options.banks / 100))
    const books = makeBooks(soakBehavior(options, prng(options.seed + 1), new Set()))
    // the harness's own per-bank books exist before the first heap reading
    for (const id of ids) {
      books.retained.set(id, 0)
      books.consumed.set(id, 0)
    }
    const { queue, scope } = yield* openQueue(options, books.engine)
    books.attach(queue)
    const before = {
      dropped: yield* counter(CompileMetrics.dropped),
      retries: yield* counter(CompileMetrics.retries)
    }
    const heapStart = yield* measureHeap

    log(`overload: ${options.notifies} retains over ${options.banks} banks ...`)
    const notifyStart = Date.now()
    let sent = 0
    let maxQueued = 0
    while (sent < options.notifies) {
      yield* books.notify((notify) => {
        const end = Math.min(sent + options.notifyBatch, options.notifies)
        for (; sent < end; sent++) {
          const r = random()
          notify(ids[r < 0.2 ? Math.floor(r * 5 * hot) : Math.floor(random() * options.banks)]!, 1)
        }
        maxQueued = Math.max(maxQueued, Effect.runSync(queue.stats).queued)
      })
      yield* Effect.sleep(Duration.millis(1))
    }
    const notifyPhaseMs = Date.now() - notifyStart
    if (maxQueued > options.maxQueueSize) problems.push(`stats.queued reached ${maxQueued} > ${options.maxQueueSize}`)
    const heapAfterNotifies = yield* measureHeap
    const dueIdle = yield* dueBanks(queue)
    const notifyEnd = Date.now()
    log(`  retains done in ${notifyPhaseMs} ms; ${dueIdle.length} due banks idle (dropped); recovering ...`)

    // from now on only the sweep queues banks
    const deadline = notifyEnd + options.recoveryDeadlineMs
    let recovered = false
    while (Date.now() < deadline) {
      yield* Effect.sleep(Duration.millis(100))
      const stats = yield* queue.stats
      if (stats.pending > 0 || stats.running > 0) continue
      if ((yield* dueBanks(queue)).length === 0) {
        recovered = true
        break
      }
    }
    const recoveryMs = Date.now() - notifyEnd
    if (!recovered) problems.push(`due banks left uncompiled ${options.recoveryDeadlineMs} ms after the last retain`)

    const heapEnd = yield* measureHeap
    const states = yield* queue.state
    let recoveredBanks = 0
    for (const id of dueIdle) {
      const compiledAt = states.get(id)?.lastCompileAt
      if (compiledAt !== undefined && Option.exists(compiledAt, (at) => DateTime.toEpochMillis(at) >= notifyEnd)) {
        recoveredBanks++
      }
    }
    if (recovered && recoveredBanks !== dueIdle.length) {
      problems.push(`${dueIdle.length - recoveredBanks} banks dropped while due were never compiled`)
    }
    const unbalanced = yield* books.unbalanced()
    if (unbalanced.length > 0) problems.push(`books do not balance: ${unbalanced.slice(0, 5).join("; ")}`)
    if (books.counts.maxPerBank > 1) problems.push(`a bank ran ${books.counts.maxPerBank} compiles at once`)
    if (forceGc) {
      // The queue keeps well under 100 bytes per bank: allow 300 bytes per bank plus 16 MB, and no growth (beyond
      // 8 MB of noise) while ~100,000 compiles recover the dropped banks.
      const bound = heapStart + options.banks * 300 / 1e6 + 16
      if (heapAfterNotifies > bound) problems.push(`heap after retains ${heapAfterNotifies} MB > ${bound} MB`)
      if (heapEnd > heapAfterNotifies + 8) {
        problems.push(`heap grew while recovering: ${heapAfterNotifies} MB -> ${heapEnd} MB`)
      }
    }
    const report = {
      notifies: sent,
      notifyPhaseMs,
      engineRuns: books.counts.calls,
      succeeded: books.counts.successes,
      failed: books.counts.failures,
      retries: (yield* counter(CompileMetrics.retries)) - before.retries,
      droppedEvents: (yield* counter(CompileMetrics.dropped)) - before.dropped,
      dueIdleAtEnd: dueIdle.length,
      recovered: recoveredBanks,
      recoveryMs,
      maxStatsQueued: maxQueued,
      maxRunsOfOneBank: books.counts.maxPerBank,
      unbalancedBanks: unbalanced.length
    }
    yield* Scope.close(scope, Exit.void)
    return {
      report,
      heap: forceGc ? { start: heapStart, afterNotifies: heapAfterNotifies, end: heapEnd } : null
    }
  })

const shutdownUnderLoad = (options: SoakOptions, problems: Array<string>) =>
  Effect.gen(function*() {
    const log = options.log ?? (() => {})
    const shutdownTimeoutMs = Duration.toMillis(Duration.decode(options.shutdownTimeout))
    const hang = new Set(["hang-0", "hang-1", "hang-2", "hang-3"])
    const books = makeBooks(soakBehavior(options, prng(options.seed + 2), hang))
    const { queue, scope } = yield* openQueue(options, books.engine)
    books.attach(queue)
    const random = prng(options.seed + 3)

    /** Set in the first batch whose brand-new bank was refused: the banks pending or running at that moment. */
    let closedSeen: ReadonlySet<string> | undefined
    let closeReturned = false
    let startsAfterClose = 0
    let notifiesAfterClose = 0
    let stop = false
    books.onStart = (bankId) => {
      if (closeReturned) startsAfterClose++
      else if (closedSeen !== undefined && !closedSeen.has(bankId)) {
        problems.push(`shutdown: ${bankId} started after close began but was not pending then`)
      }
    }
    for (const id of hang) queue.unsafeNotifyRetain(id, options.sizeThreshold)

    let probe = 0
    const loader = Effect.gen(function*() {
      while (!stop) {
        yield* Effect.sync(() => {
          const banksBefore = Effect.runSync(queue.stats).banks
          try {
            queue.unsafeNotifyRetain(`probe-${probe++}`, 1)
            for (let n = 0; n < options.notifyBatch; n++) {
              queue.unsafeNotifyRetain(`load-${Math.floor(random() * options.banks)}`, 1)
            }
          } catch (error) {
            problems.push(`shutdown: notifyRetain threw ${String(error)}`)
          }
          if (closeReturned) notifiesAfterClose += options.notifyBatch + 1
          const accepted = Effect.runSync(queue.stats).banks > banksBefore
          if (!accepted && closedSeen === undefined) {
            closedSeen = new Set([...Effect.runSync(queue.pendingBanks), ...Effect.runSync(queue.runningBanks)])
          } else if (accepted && closedSeen !== undefined) {
            problems.push("shutdown: a new bank was accepted after close began")
          }
        })
        yield* Effect.sleep(Duration.millis(1))
      }
    })
    const loading = yield* Effect.fork(loader)
    yield* Effect.sleep(Duration.millis(options.loadBeforeCloseMs))

    const atClose = yield* queue.stats
    const callsAtClose = books.counts.calls
    if (books.counts.inProgress < hang.size) problems.push("shutdown: the hanging compiles were not running at close")
    log(`shutdown: closing with ${atClose.pending} pending, ${atClose.running} running ...`)
    const closeStart = Date.now()
    // disconnect: if close never returned (a bug), report it instead of hanging the soak
    const closed = yield* Scope.close(scope, Exit.void).pipe(
      Effect.disconnect,
      Effect.timeout(Duration.millis(shutdownTimeoutMs + 10_000)),
      Effect.option
    )
    const closeMs = Date.now() - closeStart
    closeReturned = true
    const startedDuringClose = books.counts.calls - callsAtClose
    if (Option.isNone(closed)) problems.push("shutdown: close did not return")
    if (closeMs > shutdownTimeoutMs + 1000) problems.push(`shutdown: close took ${closeMs} ms`)
    if (closeMs < shutdownTimeoutMs - 50) problems.push(`shutdown: close returned before the hanging compiles' deadline`)
    if (books.counts.inProgress !== 0) problems.push(`shutdown: ${books.counts.inProgress} compiles still running`)
    if (closedSeen === undefined) problems.push("shutdown: no retain was refused during close")

    // after close: retains and compileNow are no-ops that do not throw, nothing starts
    const banksAfterClose = (yield* queue.stats).banks
    yield* Effect.sleep(Duration.millis(300))
    yield* queue.notifyRetain("after-close", 1_000)
    yield* queue.compileNow("after-close-now")
    stop = true
    yield* loading.await
    if ((yield* queue.stats).banks !== banksAfterClose) problems.push("shutdown: a bank was created after close")
    if (startsAfterClose > 0) problems.push(`shutdown: ${startsAfterClose} compiles started after close returned`)
    for (const id of hang) {
      const status = Option.map(yield* queue.bankState(id), (s) => s.status)
      if (!Option.contains(status, "pending")) problems.push(`shutdown: cut-off ${id} is not left pending`)
    }
    return {
      shutdownTimeoutMs,
      closeMs,
      pendingAtClose: atClose.pending,
      runningAtClose: atClose.running,
      startedDuringClose,
      startsAfterClose,
      notifiesAfterClose
    }
  })

const budgetUnderLoad = (options: SoakOptions, problems: Array<string>) =>
  Effect.gen(function*() {
    const log = options.log ?? (() => {})
    const random = prng(options.seed + 5)
    const engineRandom = prng(options.seed + 6)
    const byBank = new Map<string, number>()
    let tokensUsed = 0
    let engineRuns = 0
    const engine: CompileEngineService = {
      run: (bankId) =>
        Effect.suspend(() => {
          engineRuns++
          const tokens = Math.ceil(options.maxCompileTokens * (0.5 + engineRandom() / 2))
          const latency = Effect.sleep(Duration.millis(engineRandom() * options.maxLatencyMs))
          if (engineRandom() < options.failureRate) {
            return Effect.zipRight(latency, Effect.fail(new CompileError({ bankId, message: "soak failure" })))
          }
          return Effect.as(
            Effect.zipLeft(latency, Effect.sync(() => {
              tokensUsed += tokens
              byBank.set(bankId, (byBank.get(bankId) ?? 0) + tokens)
            })),
            new CompileResult({ bankId, tokensUsed: tokens }, true)
          )
        })
    }
    const periodMs = Duration.toMillis(Duration.decode(options.budgetPeriod))
    const started = Date.now()
    const { queue, scope } = yield* openQueue(options, engine, {
      tokens: options.budgetTokens,
      bankTokens: options.budgetBankTokens,
      period: options.budgetPeriod
    })
    log(`budget: ${options.budgetTokens} tokens and ${options.budgetBankTokens} per bank every ${Duration.format(Duration.decode(options.budgetPeriod))}, ${options.budgetRunMs} ms of load ...`)
    const ids = Array.from({ length: options.banks }, (_, i) => `budget-${i}`)
    const hot = Math.max(1, Math.floor(options.banks / 100))
    let maxDeferred = 0
    while (Date.now() - started < options.budgetRunMs) {
      for (let n = 0; n < options.notifyBatch; n++) {
        const r = random()
        queue.unsafeNotifyRetain(ids[r < 0.2 ? Math.floor(r * 5 * hot) : Math.floor(random() * options.banks)]!, 1)
      }
      maxDeferred = Math.max(maxDeferred, (yield* queue.stats).budget.deferred)
      yield* Effect.sleep(Duration.millis(1))
    }
    yield* Scope.close(scope, Exit.void)
    const elapsedMs = Date.now() - started
    const tokensAllowed = options.budgetTokens * (1 + elapsedMs / periodMs)
    const tokensBound = Math.ceil(tokensAllowed + options.maxCompileTokens * options.concurrency)
    const bankBound = Math.ceil(options.budgetBankTokens * (1 + elapsedMs / periodMs) + options.maxCompileTokens)
    let topBank = ""
    let topBankTokens = 0
    for (const [bankId, tokens] of byBank) {
      if (tokens > topBankTokens) {
        topBank = bankId
        topBankTokens = tokens
      }
    }
    if (tokensUsed > tokensBound) problems.push(`budget: ${tokensUsed} tokens used > bound ${tokensBound}`)
    if (topBankTokens > bankBound) problems.push(`budget: bank ${topBank} used ${topBankTokens} tokens > bound ${bankBound}`)
    if (tokensUsed < tokensAllowed / 2) problems.push(`budget: only ${tokensUsed} of ${Math.round(tokensAllowed)} tokens used (the load should exhaust the budget)`)
    return {
      elapsedMs,
      engineRuns,
      tokensUsed,
      tokensBound,
      tokensAllowed: Math.round(tokensAllowed),
      used: Math.round(tokensUsed / tokensAllowed * 1000) / 1000,
      topBank,
      topBankTokens,
      bankBound,
      maxDeferred
    }
  })

/** Runs the three parts on the live clock, with logging off (the failures would log tens of thousands of warnings). */
export const runSoak = (options: SoakOptions): Effect.Effect<SoakReport> =>
  Effect.gen(function*() {
    const problems: Array<string> = []
    const { heap, report } = yield* overload(options, problems)
    const shutdown = yield* shutdownUnderLoad(options, problems)
    const budget = yield* budgetUnderLoad(options, problems)
    const { log: _log, ...rest } = options
    return { options: rest, overload: report, heapMB: heap, shutdown, budget, problems }
  }).pipe(Effect.provide(Logger.remove(Logger.defaultLogger)))
