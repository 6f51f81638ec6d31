/**
 * One replay: a workload through a real `CompileQueue` built with one combination of settings and a model engine,
 * in virtual time, stepped synchronously — time moves only when the next event is at or past the earliest timer.
 *
 * @internal
 */
import { Cause, Duration, Effect, Exit, Layer, Logger, LogLevel, Scope } from "effect"
import { CompileEngine, type CompileJob, CompileResult } from "../../CompileEngine.js"
import type { CompileQueueService } from "../../CompileQueue.js"
import type { CompileQueueOptions } from "../../CompileQueueOptions.js"
import { make as makeQueue } from "../runtime/compileQueue.js"
import { bankRetains, type BankRetains, MemoryBacklog, WeightedDelays } from "./freshness.js"
import { VirtualClock, VirtualScheduler } from "./virtualTime.js"

const DAY = 86_400_000

/**
 * The events of a workload, in time order, as columns. Banks are numbers into `bankIds`.
 */
export interface Workload {
  readonly bankIds: ReadonlyArray<string>
  /** Epoch milliseconds, non-decreasing. */
  readonly times: Float64Array
  readonly banks: Int32Array
  /** > 0: a retain of that many memories; < 0: a forget of −count memories. */
  readonly counts: Int32Array
  /** Sparse: the scopes an event named (by its index), from the log's optional `scopes` field. */
  readonly scopes?: ReadonlyMap<number, ReadonlyArray<string>> | undefined
  /** Per bank: how many distinct scopes its events named — what a whole-bank compile rebuilds (absent: none). */
  readonly bankScopes?: Int32Array | undefined
  readonly length: number
  /** The replayed window, epoch milliseconds: the queue starts at `start`; timers due by `end` fire. */
  readonly start: number
  readonly end: number
}

/** The model of the compile engine and of the queue's fixed options. */
export interface EngineModel {
  /** Latency of one compile. */
  readonly compileSeconds: number
  /** Tokens of a compile = tokensBase + tokensPerMemory × the memories it consumed. */
  readonly tokensBase: number
  readonly tokensPerMemory: number
  /**
   * Tokens per scope a compile rebuilds: the job's dirty scopes, or every scope the bank's events ever named when the
   * job says `"all"` or names none (a whole-bank compile). Absent: 0.
   */
  readonly tokensPerScope?: number | undefined
  /** Every compile rebuilds all the bank's scopes, whatever its job names: the cost without targeted compiles. */
  readonly wholeBank?: boolean | undefined
  readonly concurrency: number
  readonly sweepIntervalMillis: number
  /** Banks that may wait in the queue; 0 = unbounded. */
  readonly maxQueueSize: number
  /** The period over which the budget's buckets refill (the queue's `budget.period`). */
  readonly budgetPeriodMillis: number
}

/** One combination of trigger settings. */
export interface TuneSettings {
  readonly sizeThreshold: number
  readonly stalenessDays: number
  readonly stalenessMinMemories: number
  readonly forgetThreshold: number
  readonly forgetDelaySeconds: number
  /** The freshness deadline: a bank is queued once its oldest memory waited this long; 0: off. */
  readonly maxWaitSeconds: number
  /** The queue's `budget.tokens` / `budget.compiles` per `EngineModel.budgetPeriodMillis`; null: unlimited. */
  readonly budgetTokens: number | null
  readonly budgetCompiles: number | null
}

/** What one replay measured. Times are in milliseconds. */
export interface ReplayMeasures {
  readonly compiles: number
  readonly compilesByReason: Readonly<Record<string, number>>
  readonly tokens: number
  /** Compiles and tokens per day of the window (compiles counted on the day they ended). */
  readonly dailyCompiles: ReadonlyArray<number>
  readonly dailyTokens: ReadonlyArray<number>
  readonly days: number
  readonly freshnessP50: number
  readonly freshnessP95: number
  readonly freshnessMax: number
  /** The mean delay over every compiled memory (NaN when none was compiled). */
  readonly freshnessMean: number
  readonly compiledMemories: number
  readonly uncompiledMemories: number
  readonly banksNeverCompiled: number
  /**
   * Against the deadline (`maxWaitSeconds`; all 0 when it is off): compiled memories whose compile started after it,
   * and the largest lateness (retain to compile start, minus the max wait).
   */
  readonly lateMemories: number
  readonly latenessMax: number
  readonly events: number
}

/**
 * The delays (retain to compile end), also judged against the deadline: with a constant compile latency, a memory's
 * compile started `delay − latency` after its retain, late by what exceeds the max wait.
 */
class DeadlineDelays extends WeightedDelays {
  late = 0
  latenessMax = 0
  /** The sum of every delay times its weight (the mean's numerator). */
  sum = 0

  constructor(expected: number, private readonly allowedMillis: number) {
    super(expected)
  }

  override add(delay: number, weight: number): void {
    super.add(delay, weight)
    this.sum += delay * weight
    const lateness = delay - this.allowedMillis
    if (lateness <= 0) return
    this.late += weight
    if (lateness > this.latenessMax) this.latenessMax = lateness
  }
}

/** The replay's measurements, filled in by the model engine. */
class Recorder {
  readonly backlog: MemoryBacklog
  readonly delays: DeadlineDelays
  readonly compiledBanks: Uint8Array
  readonly dailyCompiles: Float64Array
  readonly dailyTokens: Float64Array
  readonly byReason: Record<string, number> = {}
  compiles = 0
  tokens = 0

  constructor(workload: Workload, days: number, readonly start: number, settings: TuneSettings, model: EngineModel) {
    const banks = workload.bankIds.length
    this.backlog = new MemoryBacklog(retainsOf(workload))
    // At most every retained memory is compiled. Without a deadline nothing is late.
    const allowed = settings.maxWaitSeconds > 0 ? (settings.maxWaitSeconds + model.compileSeconds) * 1000 : Infinity
    this.delays = new DeadlineDelays(totals(workload).memories, allowed)
    this.compiledBanks = new Uint8Array(banks)
    this.dailyCompiles = new Float64Array(days)
    this.dailyTokens = new Float64Array(days)
  }

  compiled(bank: number, job: CompileJob, tokens: number, now: number): void {
    this.backlog.consumed(bank, job.memories, now, this.delays)
    this.compiledBanks[bank] = 1
    this.compiles++
    this.tokens += tokens
    this.byReason[job.reason] = (this.byReason[job.reason] ?? 0) + 1
    const day = Math.min(this.dailyCompiles.length - 1, Math.floor((now - this.start) / DAY))
    this.dailyCompiles[day]! += 1
    this.dailyTokens[day]! += tokens
  }
}

/** The model engine: takes `compileSeconds` of virtual time, then records the compile and reports its tokens. */
const modelEngine = (
  model: EngineModel,
  bankIndex: ReadonlyMap<string, number>,
  bankScopes: Int32Array | undefined,
  clock: VirtualClock,
  recorder: Recorder
): Layer.Layer<CompileEngine> => {
  const perScope = model.tokensPerScope ?? 0
  /** The scopes a compile rebuilds: the job's, else the bank's every scope. */
  const scopesRebuilt = (bank: number, job: CompileJob): number =>
    Array.isArray(job.scopes) && model.wholeBank !== true ? job.scopes.length : bankScopes?.[bank] ?? 0
  const latency = Math.round(model.compileSeconds * 1000)
  const template = new CompileResult({ bankId: "" })
  // The class constructor merges defaults field by field (~10 µs even unvalidated): copy a valid template instead,
  // and reuse a bank's last result while its tokens are the same (most compiles take exactly the size threshold).
  const results: Array<CompileResult | undefined> = []
  const finish = (bankId: string, job: CompileJob): CompileResult => {
    const bank = bankIndex.get(bankId)!
    const tokensUsed = model.tokensBase + model.tokensPerMemory * job.memories +
      (perScope === 0 ? 0 : perScope * scopesRebuilt(bank, job))
    recorder.compiled(bank, job, tokensUsed, clock.now)
    const last = results[bank]
    if (last !== undefined && last.tokensUsed === tokensUsed) return last
    const result = Object.assign(Object.create(CompileResult.prototype) as CompileResult, template, { bankId, tokensUsed })
    results[bank] = result
    return result
  }
  // The compile ends on a timer of the virtual clock that records it and resumes the worker with its result: no
  // sleep and continuation in between (the time and order are the same: the driver runs each timer's fibers before
  // the next timer).
  return CompileEngine.layer((bankId, job) =>
    latency === 0
      ? Effect.sync(() => finish(bankId, job))
      : Effect.async<CompileResult>((resume) => clock.after(latency, () => resume(Effect.succeed(finish(bankId, job)))))
  )
}

export const queueOptions = (settings: TuneSettings, model: EngineModel): CompileQueueOptions => ({
  config: {
    sizeThreshold: settings.sizeThreshold,
    stalenessDays: settings.stalenessDays,
    stalenessMinMemories: settings.stalenessMinMemories,
    forgetThreshold: settings.forgetThreshold,
    forgetDelaySeconds: settings.forgetDelaySeconds,
    maxWaitSeconds: settings.maxWaitSeconds
  },
  concurrency: model.concurrency,
  maxQueueSize: model.maxQueueSize,
  sweepInterval: Duration.millis(model.sweepIntervalMillis),
  retry: { maxAttempts: 1 }, // the model engine never fails
  shutdownTimeout: 0,
  historyCapacity: 0, // nothing reads recentCompiles: no ring entry per compile
  ...(settings.budgetTokens === null && settings.budgetCompiles === null ? {} : {
    budget: {
      ...(settings.budgetTokens === null ? {} : { tokens: settings.budgetTokens }),
      ...(settings.budgetCompiles === null ? {} : { compiles: settings.budgetCompiles }),
      period: Duration.millis(model.budgetPeriodMillis)
    }
  })
})

/** Runs `effect` on the virtual clock and scheduler (quiet: the queue's logs are off). */
const virtually = <A, E, R>(effect: Effect.Effect<A, E, R>, clock: VirtualClock, scheduler: VirtualScheduler) =>
  effect.pipe(Logger.withMinimumLogLevel(LogLevel.None), Effect.withClock(clock), Effect.withScheduler(scheduler))

/** A progress callback: events replayed so far. Called every 2^16 events. */
export type OnProgress = (replayed: number) => void

const PROGRESS_EVERY = 0xffff

/** Feeds every event to the queue, moving virtual time only when the next event reaches the earliest timer. */
const feed = (
  workload: Workload,
  queue: CompileQueueService,
  clock: VirtualClock,
  scheduler: VirtualScheduler,
  onProgress: OnProgress | undefined
): void => {
  const { bankIds, banks, counts, length, scopes, times } = workload
  const retain = queue.unsafeNotifyRetain
  const forget = queue.unsafeNotifyForget
  for (let n = 0; n < length; n++) {
    const time = times[n]!
    // Timers are set while fibers run, and also synchronously by an entry point (a forget delay): ask every time.
    if (time >= clock.nextDue) clock.advanceTo(time)
    else clock.now = time
    const bank = banks[n]!
    const count = counts[n]!
    const named = scopes?.get(n)
    if (named !== undefined) {
      if (count > 0) retain(bankIds[bank]!, { count, scopes: named })
      else forget(bankIds[bank]!, { count: -count, scopes: named })
    } else if (count > 0) retain(bankIds[bank]!, count) // its memories wait in the backlog from here (see bankRetains)
    else forget(bankIds[bank]!, -count)
    if (!scheduler.idle) scheduler.flush() // fibers the event woke: a worker taking a queued bank, the watcher
    if ((n & PROGRESS_EVERY) === PROGRESS_EVERY && onProgress !== undefined) onProgress(n + 1)
  }
  clock.advanceTo(workload.end)
}

const bankIndexCache = new WeakMap<Workload, ReadonlyMap<string, number>>()

const bankIndexOf = (workload: Workload): ReadonlyMap<string, number> => {
  let index = bankIndexCache.get(workload)
  if (index === undefined) {
    index = new Map(workload.bankIds.map((id, n) => [id, n]))
    bankIndexCache.set(workload, index)
  }
  return index
}

/**
 * Runs `effect` to its end on the virtual scheduler, firing the timers due by now (the queue's build and close
 * suspend briefly, so `Effect.runSync` cannot run them).
 */
const runNow = <A>(effect: Effect.Effect<A>, clock: VirtualClock, scheduler: VirtualScheduler): A => {
  const fiber = Effect.runFork(virtually(effect, clock, scheduler), { scheduler })
  for (let guard = 0; fiber.unsafePoll() === null && guard < 1000; guard++) clock.advanceTo(clock.now)
  const exit = fiber.unsafePoll()
  if (exit === null) throw new Error("the replay's queue did not settle at one instant")
  return Exit.getOrElse(exit, (cause) => {
    throw Cause.squash(cause)
  })
}

/** Replays `workload` through a `CompileQueue` with `settings` and the model engine. Synchronous and deterministic. */
export const replay = (
  workload: Workload,
  settings: TuneSettings,
  model: EngineModel,
  onProgress?: OnProgress
): ReplayMeasures => {
  const scheduler = new VirtualScheduler()
  const clock = new VirtualClock(workload.start, scheduler)
  const days = Math.max(1, Math.ceil((workload.end - workload.start) / DAY))
  const recorder = new Recorder(workload, days, workload.start, settings, model)
  const engine = modelEngine(model, bankIndexOf(workload), workload.bankScopes, clock, recorder)
  const scope = Effect.runSync(Scope.make())
  const queue = runNow(
    // `CompileQueue.make` itself, with the per-compile logs off (the replay's logging is off anyway).
    makeQueue(queueOptions(settings, model), { compileLogs: false }).pipe(
      Effect.provide(engine),
      Effect.orDie, // no store: nothing to restore
      Scope.extend(scope)
    ),
    clock,
    scheduler
  )
  feed(workload, queue, clock, scheduler, onProgress)
  const [p50, p95] = recorder.delays.quantiles([0.5, 0.95])
  let banksNeverCompiled = 0
  const seen = totals(workload).seen
  for (let bank = 0; bank < seen.length; bank++) if (seen[bank] === 1 && recorder.compiledBanks[bank] === 0) banksNeverCompiled++
  const measures: ReplayMeasures = {
    compiles: recorder.compiles,
    compilesByReason: { ...recorder.byReason },
    tokens: recorder.tokens,
    dailyCompiles: Array.from(recorder.dailyCompiles),
    dailyTokens: Array.from(recorder.dailyTokens),
    days: (workload.end - workload.start) / DAY,
    freshnessP50: p50!,
    freshnessP95: p95!,
    freshnessMax: recorder.delays.total === 0 ? NaN : recorder.delays.max,
    freshnessMean: recorder.delays.total === 0 ? NaN : recorder.delays.sum / recorder.delays.total,
    compiledMemories: recorder.delays.total,
    uncompiledMemories: totals(workload).memories - recorder.delays.total,
    banksNeverCompiled,
    lateMemories: recorder.delays.late,
    latenessMax: recorder.delays.latenessMax,
    events: workload.length
  }
  runNow(Scope.close(scope, Exit.void), clock, scheduler) // compiles still running at the end are not waited for
  return measures
}

interface WorkloadTotals {
  /** 1 for each bank with at least one retain. */
  readonly seen: Uint8Array
  readonly memories: number
}

const totalsCache = new WeakMap<Workload, WorkloadTotals>()

const totals = (workload: Workload): WorkloadTotals => {
  let found = totalsCache.get(workload)
  if (found === undefined) {
    const seen = new Uint8Array(workload.bankIds.length)
    let memories = 0
    for (let n = 0; n < workload.length; n++) {
      const count = workload.counts[n]!
      if (count > 0) {
        seen[workload.banks[n]!] = 1
        memories += count
      }
    }
    found = { seen, memories }
    totalsCache.set(workload, found)
  }
  return found
}

const retainsCache = new WeakMap<Workload, BankRetains>()

const retainsOf = (workload: Workload): BankRetains => {
  let retains = retainsCache.get(workload)
  if (retains === undefined) {
    retains = bankRetains(workload.banks, workload.times, workload.counts, workload.length, workload.bankIds.length)
    retainsCache.set(workload, retains)
  }
  return retains
}
