/**
 * The compile workers: take a bank from the queue, run the engine for it (with the timeout and, when a tracer is
 * installed, a span), tell the core how it ended and carry out the answer — re-queue, retry timer, logs, metrics.
 *
 * @internal
 */
import {
  Cause,
  Duration,
  Effect,
  Exit,
  FiberRef,
  FiberSet,
  HashMap,
  Option,
  Random
} from "effect"
import { CompileError, type CompileEngineService, type CompileJob, type CompileResult } from "../../CompileEngine.js"
import * as CompileMetrics from "../../CompileMetrics.js"
import * as FencingToken from "../../FencingToken.js"
import type { Taker } from "./bankQueue.js"
import { type DEFERRED, NOTHING, type WAIT_BUDGET } from "../core/compileCore.js"
import type { TokenCounter } from "./fencingTokens.js"
import { loopForever } from "./loop.js"
import { NO_TAGS, type QueueRuntime } from "./queueRuntime.js"
import { sleepMillis } from "./sleep.js"

type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

const describeFailure = (cause: Cause.Cause<CompileError>): string => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return failure.value.message
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) {
    const value = defect.value
    return `defect: ${value instanceof Error ? value.message : String(value)}`
  }
  return "interrupted"
}

/** The engine call for one bank, with `compileTimeout` and, when tracing, the `CompileQueue.compile` span. */
const engineRunner = (rt: QueueRuntime, engine: CompileEngineService, tracing: boolean) => {
  const timeout = rt.opts.compileTimeout
  const timeoutMessage = Option.map(timeout, (d) => `compile timed out after ${Duration.format(d)}`)
  return (bankId: string, job: CompileJob): Effect.Effect<CompileResult, CompileError> => {
    const run = Effect.suspend(() => engine.run(bankId, job))
    const limited = Option.isSome(timeout) && Option.isSome(timeoutMessage)
      ? Effect.timeoutFail(run, {
        duration: timeout.value,
        onTimeout: () => new CompileError({ bankId, message: timeoutMessage.value })
      })
      : run
    return tracing
      ? Effect.withSpan(limited, "CompileQueue.compile", {
        attributes: { bankId, reason: job.reason, attempt: job.attempt, fencingToken: FencingToken.format(job.fencingToken) },
        captureStackTrace: false
      })
      : limited
  }
}

const succeeded = (rt: QueueRuntime, i: number, taken: number, now: number, result: CompileResult) => {
  // Charged before the re-check, so a bank that spent its own budget is deferred when a worker next reaches it.
  if (result.tokensUsed > 0) {
    rt.core.charge(i, result.tokensUsed, now)
    CompileMetrics.tokensUsed.unsafeUpdate(result.tokensUsed, NO_TAGS)
  }
  // Recorded before the answer is carried out: a re-queued bank's next run must not start before this one ended.
  rt.history.finished(
    rt.core.table.ids[i]!,
    now,
    result.error === undefined ? "success" : "reported_error",
    result.tokensUsed,
    result.error
  )
  const answer = rt.core.succeeded(i, taken, now, result.error, result.scopesCompiled)
  rt.fireSignals()
  if (answer !== NOTHING) rt.answered(i, answer)
  if (result.error !== undefined) {
    CompileMetrics.compilesReportedError.unsafeUpdate(1, NO_TAGS)
    return Effect.logError(`compile reported an error: ${result.error}`)
  }
  CompileMetrics.compilesSucceeded.unsafeUpdate(1, NO_TAGS)
  return rt.compileLogs ? Effect.logDebug(`compile finished; ${taken} memories consumed`) : Effect.void
}

const failed = (rt: QueueRuntime, i: number, now: number, cause: Cause.Cause<CompileError>): Effect.Effect<void> => {
  const message = describeFailure(cause)
  const { attempt, retry } = rt.core.failed(i, message)
  rt.fireSignals()
  rt.history.finished(rt.core.table.ids[i]!, now, "failure", 0, message)
  CompileMetrics.compilesFailed.unsafeUpdate(1, NO_TAGS)
  const { maxAttempts } = rt.opts
  if (!retry) {
    return Effect.logError(`compile failed (attempt ${attempt} of ${maxAttempts}): ${message}; next try at the next sweep`)
  }
  // Stay pending while the delay runs, without holding a worker.
  CompileMetrics.retries.unsafeUpdate(1, NO_TAGS)
  return Effect.flatMap(Random.nextRange(0.5, 1.5), (jitter) => {
    const delay = rt.core.retryDelay(attempt, jitter)
    return Effect.zipRight(
      Effect.logWarning(
        `compile failed (attempt ${attempt} of ${maxAttempts}): ${message}; retrying in ${Math.round(delay)} ms`
      ),
      // Forked from the worker's uninterruptible bookkeeping: make it interruptible so close cancels it.
      FiberSet.run(rt.retries, Effect.interruptible(Effect.zipRight(sleepMillis(delay), rt.requeue(i))))
    )
  })
}

const finish = (
  rt: QueueRuntime,
  i: number,
  taken: number,
  startedAt: number,
  exit: Exit.Exit<CompileResult, CompileError>
): Effect.Effect<void> => {
  rt.publishCounts()
  const now = rt.now()
  CompileMetrics.compileDuration.unsafeUpdate((now - startedAt) / 1000, NO_TAGS)
  CompileMetrics.running.unsafeModify(-1, NO_TAGS)
  const carriedOut = ended(rt, i, taken, now, exit)
  rt.wakeIfClosing() // a closing queue looks again at what it still waits for (its charge may have spent the budget)
  return carriedOut
}

/** The core told how the compile ended; what is left to do (logs, a retry timer). */
const ended = (
  rt: QueueRuntime,
  i: number,
  taken: number,
  now: number,
  exit: Exit.Exit<CompileResult, CompileError>
): Effect.Effect<void> => {
  if (Exit.isSuccess(exit)) return succeeded(rt, i, taken, now, exit.value)
  if (rt.interruptingCompiles && Cause.isInterruptedOnly(exit.cause)) {
    // Cut off by shutdown: the compile did not happen, so the bank still needs one.
    rt.cutOff++
    rt.core.interrupted(i)
    rt.fireSignals()
    rt.history.abandoned(rt.core.table.ids[i]!)
    return Effect.logWarning("compile interrupted by shutdown; the bank stays pending")
  }
  return failed(rt, i, now, exit.cause)
}

/** The budget held the bank at the head or deferred it: nothing runs; the gauge follows, a deferral arms its timer. */
const waitedForBudget = (rt: QueueRuntime, i: number, answer: typeof WAIT_BUDGET | typeof DEFERRED): Effect.Effect<void> => {
  rt.fireSignals()
  rt.publishBudgetWaiting()
  rt.wakeIfClosing()
  if (answer._tag === "WaitBudget") return Effect.void
  rt.publishCounts()
  CompileMetrics.queueSize.unsafeModify(-1, NO_TAGS)
  return Effect.annotateLogs(
    Effect.logDebug("compile deferred: the bank's own token budget is spent; queued again when it refills"),
    "bankId",
    rt.core.table.ids[i]!
  )
}

/** A bank disabled while it waited in the queue: idle again, nothing runs. */
const skipped = (rt: QueueRuntime, i: number): Effect.Effect<void> => {
  rt.fireSignals()
  rt.publishBudgetWaiting()
  return Effect.annotateLogs(
    Effect.logDebug("compile skipped: the bank was disabled while it waited in the queue"),
    "bankId",
    rt.core.table.ids[i]!
  )
}

/**
 * One worker: takes banks in FIFO order (the head held for the global budget first); bookkeeping runs
 * uninterruptibly so no bank is lost between take and finish.
 */
export const makeWorker = (
  rt: QueueRuntime,
  engine: CompileEngineService,
  tracing: boolean,
  tokens: TokenCounter
): Effect.Effect<never> => {
  const runEngine = engineRunner(rt, engine, tracing)
  // Called synchronously where the bank was chosen, so two workers never start the same held bank.
  const compile = (i: number, restore: Restore): Effect.Effect<void> => {
    const startedAt = rt.now()
    const start = rt.core.start(i, startedAt)
    if (start._tag === "WaitBudget" || start._tag === "Deferred") return waitedForBudget(rt, i, start)
    rt.publishCounts() // its enqueue first: the gauge never dips below zero
    CompileMetrics.queueSize.unsafeModify(-1, NO_TAGS)
    if (start._tag === "Skipped") return skipped(rt, i)
    if (start.waitedMillis >= 0) {
      CompileMetrics.budgetWait.unsafeUpdate(start.waitedMillis / 1000, NO_TAGS)
      rt.publishBudgetWaiting()
    }
    const taken = start.memories
    CompileMetrics.running.unsafeModify(1, NO_TAGS)
    if (start.memoryWait !== undefined) CompileMetrics.memoryWait.observe(start.memoryWait.meanSeconds, taken)
    // Each engine run (a retry too) under a token higher than every earlier one of this queue's.
    const job = rt.core.job(i, taken, tokens.next())
    const bankId = job.bankId
    rt.history.started(job, startedAt)
    const run = restore(runEngine(bankId, job))
    // Set on the worker fiber without restoring (the next compile overwrites it): half the cost of annotateLogs.
    const annotated = rt.compileLogs
      ? Effect.zipRight(FiberRef.update(FiberRef.currentLogAnnotations, HashMap.set<string, unknown>("bankId", bankId)), run)
      : run
    return Effect.flatMap(Effect.exit(annotated), (exit) => finish(rt, i, taken, startedAt, exit))
  }
  const take = (restore: Restore, taker: Taker): Effect.Effect<void> =>
    Effect.flatMap(restore(taker.take), (i) => {
      rt.roomFreed()
      return compile(i, restore)
    })
  // With a global budget: while it is spent, wait for it to open (then come round again); else the held head first.
  const next = (restore: Restore, taker: Taker): Effect.Effect<void> =>
    Effect.suspend(() => {
      const wait = rt.budgetWait()
      if (wait !== undefined) return restore(wait)
      const held = rt.core.nextHeld()
      return held === -1 ? take(restore, taker) : compile(held, restore)
    })
  // Uninterruptible throughout, interruptible only where `restore` says (the waits): one mask for the worker's life.
  // Each worker fiber (the effect runs `concurrency` times) has its own taker, released as it stops.
  return Effect.suspend(() => {
    const taker = rt.queue.taker()
    return Effect.ensuring(
      Effect.uninterruptibleMask((restore) => loopForever((rt.budgeted ? next : take)(restore, taker))),
      taker.release
    )
  })
}
