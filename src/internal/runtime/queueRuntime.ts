/**
 * The Effect shell around the compile core, shared by the entry points, the workers, the timers and persistence:
 * it carries out the core's answers (the bank queue, metrics, logs, the `drain`/shutdown/timeline wake-ups),
 * and owns the staleness watcher, the sweep and the retry re-offer.
 *
 * @internal
 */
import {
  type Clock,
  Deferred,
  Duration,
  Effect,
  Exit,
  type Fiber,
  FiberId,
  FiberSet,
  type MetricLabel,
  Runtime
} from "effect"
import * as CompileMetrics from "../../CompileMetrics.js"
import type { ResolvedCompileQueueOptions } from "../../CompileQueueOptions.js"
import {
  type Answer,
  BUDGET,
  type CompileCore,
  DELAY,
  DRAINED,
  DROPPED_FIRST,
  NOTHING,
  QUEUED,
  QUIET,
  RECHECK,
  TIMELINE
} from "../core/compileCore.js"
import type { FreshnessFigures } from "../core/freshnessViews.js"
import type { BankQueue } from "./bankQueue.js"
import type { CompileHistory } from "./compileHistory.js"
import { loopForever } from "./loop.js"
import { sleepMillis } from "./sleep.js"
import { atEndOfTask } from "./taskClock.js"

/** One shared empty tag list: metric hooks are cached per tag-array identity. */
export const NO_TAGS: ReadonlyArray<MetricLabel.MetricLabel> = []

/** See `unpublishedRetains`. */
const PUBLISH_EVERY = 4096

const signal = (deferred: Deferred.Deferred<void> | undefined): undefined => {
  if (deferred !== undefined) Deferred.unsafeDone(deferred, Exit.void)
  return undefined
}

const waitOn = (deferred: Deferred.Deferred<void>): Effect.Effect<void> => Deferred.await(deferred)

export interface QueueRuntimeParts {
  readonly core: CompileCore
  readonly queue: BankQueue
  readonly opts: ResolvedCompileQueueOptions
  /** The runtime the layer was built with: the synchronous entry points log through it. */
  readonly runtime: Runtime.Runtime<never>
  readonly clock: Clock.Clock
  /** Retry, forget-delay and deferred-bank timers; cleared first at close. */
  readonly retries: FiberSet.FiberSet
  /** The last finished engine runs and those in flight (written by the workers only). */
  readonly history: CompileHistory
  /** The workers: the global budget's timer lives with them, so it still opens during the shutdown grace period. */
  readonly workers: FiberSet.FiberSet
  /** See `QueueRuntime.compileLogs` (default true). */
  readonly compileLogs?: boolean | undefined
}

export class QueueRuntime {
  readonly core: CompileCore
  readonly queue: BankQueue
  readonly opts: ResolvedCompileQueueOptions
  readonly clock: Clock.Clock
  readonly retries: FiberSet.FiberSet
  readonly history: CompileHistory
  readonly workers: FiberSet.FiberSet
  /**
   * False: the workers neither annotate a compile's logs with its bank nor log each finished compile at debug level
   * (the tuner's replay, whose logging is off, saves a FiberRef update and a log call per compile).
   */
  readonly compileLogs: boolean
  /** True once the shutdown deadline passed and compiles are being interrupted. */
  interruptingCompiles = false
  /** Compiles the shutdown interrupted (their banks stay pending). */
  cutOff = 0
  /**
   * Retains counted but not yet added to the retains metric. A metric update costs a third of a retain, so the
   * metric is published in batches (`publishCounts`, with the enqueues): at the end of a task that queued a bank or
   * counted PUBLISH_EVERY retains or more since the last time, at every compile's start and end, at each sweep, and
   * before every read through the service — whatever reads the queue sees exact figures.
   */
  unpublishedRetains = 0
  private readonly runSync: <A>(effect: Effect.Effect<A>) => A
  private readonly runFork: <A>(effect: Effect.Effect<A>, options?: Runtime.RunForkOptions) => Fiber.RuntimeFiber<A>
  private drainSignal: Deferred.Deferred<void> | undefined
  private quietSignal: Deferred.Deferred<void> | undefined
  private timelineSignal: Deferred.Deferred<void> | undefined
  /** Completed when the global budget's next crossing comes (one timer for every waiting worker). */
  private budgetSignal: Deferred.Deferred<void> | undefined
  /** The deferred banks' timer and when it fires. */
  private deferTimer: Fiber.RuntimeFiber<void> | undefined
  private deferTimerDue = NaN
  /** A global limit is set: workers pass the budget gate before they take a bank. */
  readonly budgeted: boolean
  /** `core.waitingForBudget` as last published to its gauge. */
  private publishedWaiting = 0

  constructor(parts: QueueRuntimeParts) {
    this.core = parts.core
    this.queue = parts.queue
    this.opts = parts.opts
    this.clock = parts.clock
    this.retries = parts.retries
    this.history = parts.history
    this.workers = parts.workers
    this.compileLogs = parts.compileLogs ?? true
    this.budgeted = parts.core.budget.globalLimited
    this.runSync = Runtime.runSync(parts.runtime)
    this.runFork = Runtime.runFork(parts.runtime)
  }

  now(): number {
    return this.clock.unsafeCurrentTimeMillis()
  }

  // ---- carrying out answers ----

  /** Fires the wake-ups the core raised during the last transition. */
  fireSignals(): void {
    const raised = this.core.takeSignals()
    if (raised === 0) return
    if ((raised & DRAINED) !== 0) this.drainSignal = signal(this.drainSignal)
    if ((raised & QUIET) !== 0) this.quietSignal = signal(this.quietSignal)
    if ((raised & TIMELINE) !== 0) this.timelineSignal = signal(this.timelineSignal)
    if ((raised & BUDGET) !== 0) this.armDeferTimer()
  }

  /**
   * The core answered (not `NOTHING`): a policy bank's exact re-check (one clock read), a forget delay to arm, or an
   * enqueue's metrics, the one "queue full" warning and wake-ups.
   */
  answered(i: number, answer: Answer): void {
    if (answer === RECHECK) answer = this.core.recheck(i, this.now())
    if (answer === DELAY) return this.armForget(i)
    if (answer === NOTHING) return
    if (answer === QUEUED) {
      this.unpublishedEnqueues++
      this.publishAtTaskEnd()
      this.fireSignals()
      if (this.budgetSignal !== undefined) this.publishBudgetWaiting() // the spent budget holds this one too
      return
    }
    this.publishCounts()
    CompileMetrics.dropped.unsafeUpdate(1, NO_TAGS)
    if (answer !== DROPPED_FIRST) return
    const bankId = this.core.table.ids[i]
    this.logFor(
      bankId,
      Effect.logWarning(
        `compile queue full (${this.opts.maxQueueSize} banks): bank ${bankId} not queued; the next sweep offers it again`
      )
    )
  }

  /** The end of a task that counted retains: the metric is published once enough wait. */
  readonly retainsTaskEnded = (): void => {
    if (this.unpublishedRetains >= PUBLISH_EVERY) this.publishCounts()
  }

  /**
   * Enqueues not yet added to the `enqueued` and `queueSize` metrics: three metric updates per enqueue were a tenth
   * of the retain path's time, so they wait for the end of their task (or a compile's start, which takes one off).
   */
  private unpublishedEnqueues = 0
  private readonly publishAtTaskEnd = atEndOfTask(() => this.publishCounts())

  /** Publishes the retains and enqueues counted since the last time. */
  publishCounts(): void {
    if (this.unpublishedEnqueues !== 0) {
      CompileMetrics.enqueued.unsafeUpdate(this.unpublishedEnqueues, NO_TAGS)
      CompileMetrics.queueSize.unsafeModify(this.unpublishedEnqueues, NO_TAGS)
      this.unpublishedEnqueues = 0
    }
    if (this.unpublishedRetains === 0) return
    CompileMetrics.retains.unsafeUpdate(this.unpublishedRetains, NO_TAGS)
    this.unpublishedRetains = 0
  }

  /** A read through the service: publish first. */
  read<A>(f: () => A): Effect.Effect<A> {
    return Effect.sync(() => {
      this.publishCounts()
      return f()
    })
  }

  logFor(bankId: unknown, effect: Effect.Effect<void>): void {
    this.runSync(Effect.annotateLogs(effect, "bankId", String(bankId)))
  }

  reject(bankId: unknown, reason: string): void {
    CompileMetrics.retainsRejected.unsafeUpdate(1, NO_TAGS)
    this.logFor(bankId, Effect.logWarning(`ignored request for bank ${JSON.stringify(bankId)}: ${reason}`))
  }

  /**
   * A pending bank (after its retry delay, restored, or no longer deferred) back into the queue, waiting for room
   * rather than dropped: the core keeps it in line and a worker that frees a slot lets it in (`roomFreed`).
   */
  readonly requeue = (i: number): Effect.Effect<void> => Effect.sync(() => this.unsafeRequeue(i))

  unsafeRequeue(i: number): void {
    if (this.core.requeue(i)) this.queued(1)
  }

  private queued(count: number): void {
    CompileMetrics.queueSize.unsafeModify(count, NO_TAGS)
    CompileMetrics.enqueued.unsafeUpdate(count, NO_TAGS)
    if (this.budgetSignal !== undefined) this.publishBudgetWaiting()
  }

  /** A worker took a bank: banks waiting for room go in. */
  roomFreed(): void {
    const moved = this.core.fillRoom()
    if (moved > 0) this.queued(moved)
  }

  // ---- freshness ----

  /** Sets the freshness gauges from a freshness read (this queue's figures: one queue per process sets them). */
  publishFreshness<A extends FreshnessFigures>(figures: A): A {
    CompileMetrics.oldestMemoryAge.unsafeUpdate(figures.oldestSeconds, NO_TAGS)
    CompileMetrics.memoryAgeP50.unsafeUpdate(figures.p50Seconds, NO_TAGS)
    CompileMetrics.memoryAgeP95.unsafeUpdate(figures.p95Seconds, NO_TAGS)
    CompileMetrics.banksOverdue.unsafeUpdate(figures.overdue, NO_TAGS)
    return figures
  }

  // ---- the budget ----

  /**
   * The compiles-waiting-for-budget gauge follows the core (one queue's share of the shared series): published when
   * a worker finds the budget spent and when it opens again, at every bank queued while workers wait for it, at each
   * deferral and start, and before every read through the service (a scrape that reads the queue first is exact).
   */
  publishBudgetWaiting(): void {
    const waiting = this.core.waitingForBudget(this.now())
    if (waiting === this.publishedWaiting) return
    CompileMetrics.budgetWaiting.unsafeModify(waiting - this.publishedWaiting, NO_TAGS)
    this.publishedWaiting = waiting
  }

  /**
   * Undefined while the global budget lets a compile start; otherwise the wait for its next crossing, on one timer
   * for all workers (a charge meanwhile only moves the crossing later: they wake, look again, wait again).
   */
  budgetWait(): Effect.Effect<void> | undefined {
    const now = this.now()
    const opensAt = this.core.budget.opensAt(now)
    if (opensAt <= now) return undefined
    if (this.budgetSignal === undefined) {
      const wake = Deferred.unsafeMake<void>(FiberId.none)
      this.budgetSignal = wake
      const fiber = this.runFork(Effect.zipRight(
        sleepMillis(opensAt - now),
        Effect.sync(() => {
          if (this.budgetSignal === wake) this.budgetSignal = undefined
          Deferred.unsafeDone(wake, Exit.void)
          this.publishBudgetWaiting()
        })
      ))
      FiberSet.unsafeAdd(this.workers, fiber)
      this.publishBudgetWaiting() // the queue is held from now on
      this.wakeIfClosing()
    }
    return waitOn(this.budgetSignal)
  }

  /** (Re-)arms the one timer of the deferred banks for the earliest due one. */
  private armDeferTimer(): void {
    const due = this.core.nextDeferredDue
    if (due !== due || this.deferTimerDue <= due) return
    if (this.deferTimer !== undefined) this.deferTimer.unsafeInterruptAsFork(FiberId.none)
    const now = this.now()
    this.deferTimerDue = due
    // Not started in place: a timer already due (a raised `bankTokens` re-keys a bank to now) would fire before
    // `fiber` is assigned.
    const fiber: Fiber.RuntimeFiber<void> = this.runFork(
      Effect.zipRight(sleepMillis(due - now), Effect.sync((): void => this.deferredDue(fiber))),
      { immediate: false }
    )
    this.deferTimer = fiber
    FiberSet.unsafeAdd(this.retries, fiber)
  }

  /** The deferred banks' timer fired: those due go back into the queue, in due order; then it is armed again. */
  private deferredDue(fiber: Fiber.RuntimeFiber<void>): void {
    if (this.deferTimer !== fiber) return
    this.deferTimer = undefined
    this.deferTimerDue = NaN
    for (const i of this.core.deferredDue(this.now())) this.unsafeRequeue(i)
    this.publishBudgetWaiting()
    this.armDeferTimer()
  }

  /**
   * Starts bank `i`'s forget delay: one timer fiber (among the retry timers, so close cancels it); when it ends the
   * bank is queued unless something queued it meanwhile. The bank stays idle until then.
   */
  private armForget(i: number): void {
    const now = this.now()
    const delay = this.core.armForget(i, now)
    const due = now + delay
    const fiber = this.runFork(Effect.zipRight(
      sleepMillis(delay),
      Effect.sync(() => {
        const answer = this.core.forgetDelayOver(i, due, this.now())
        this.fireSignals()
        if (answer !== NOTHING) this.answered(i, answer)
      })
    ))
    FiberSet.unsafeAdd(this.retries, fiber)
  }

  // ---- staleness and the sweep ----

  /**
   * Marks the staleness entries due by now, then sleeps until the next one (on the clock the queue was built with);
   * waits for a signal while the timeline is empty. One round per wake-up: every compile gives its bank an entry.
   */
  readonly watchStaleness: Effect.Effect<never> = loopForever(Effect.suspend(() => {
    const now = this.now()
    if (this.core.nextStaleDue <= now) this.core.staleDue(now)
    const due = this.core.nextStaleDue
    if (due !== due) {
      const wake = Deferred.unsafeMake<void>(FiberId.none)
      this.timelineSignal = wake
      return waitOn(wake)
    }
    return sleepMillis(due - now, this.clock)
  }))

  /** Queues every idle bank that triggers now (or was asked for by compileNow); exact, from one clock read. */
  readonly sweep: Effect.Effect<number> = Effect.suspend(() => {
    this.publishCounts()
    const { newlyWarned, notQueued, queued } = this.core.sweep(this.now())
    this.fireSignals()
    if (queued > 0) {
      CompileMetrics.enqueued.unsafeUpdate(queued, NO_TAGS)
      CompileMetrics.queueSize.unsafeModify(queued, NO_TAGS)
      if (this.budgetSignal !== undefined) this.publishBudgetWaiting()
    }
    if (notQueued > 0) CompileMetrics.dropped.unsafeUpdate(notQueued, NO_TAGS)
    const report = newlyWarned > 0
      ? Effect.logWarning(
        `compile queue full (${this.opts.maxQueueSize} banks): sweep left ${notQueued} due banks unqueued; the next sweep offers them again`
      )
      : queued > 0
      ? Effect.logDebug(`sweep queued ${queued} banks`)
      : Effect.void
    return Effect.as(report, queued)
  })

  readonly sweepLoop: Effect.Effect<never> = Effect.suspend(() => {
    const interval = Duration.toMillis(this.opts.sweepInterval)
    return Effect.forever(Effect.zipRight(sleepMillis(interval), this.sweep))
  })

  // ---- waiting ----

  /** Nothing pending or running; wakes on the core's `DRAINED` signal. */
  readonly drained: Effect.Effect<void> = Effect.suspend(() => {
    this.publishCounts()
    if (this.core.pending.size === 0 && this.core.running.size === 0) return Effect.void
    this.drainSignal ??= Deferred.unsafeMake<void>(FiberId.none)
    return waitOn(this.drainSignal)
  })

  /**
   * The closing queue has nothing more to wait for: nothing runs, and nothing queued can start before `deadline` —
   * the queue is empty, or the global budget opens no earlier than the deadline (see `budgetClosedUntil`). Banks
   * waiting for a cancelled retry or deferred by their own budget do not count. Woken by the core's `QUIET` and by
   * `wakeIfClosing`; looks again at each wake-up.
   */
  settled(deadline: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      const core = this.core
      if (core.running.size === 0 && (core.inQueue <= 0 || core.budgetClosedUntil(deadline, this.now()))) {
        return Effect.void
      }
      this.quietSignal ??= Deferred.unsafeMake<void>(FiberId.none)
      return Effect.zipRight(waitOn(this.quietSignal), this.settled(deadline))
    })
  }

  /** While closing: a compile ended, or a worker found the budget spent or deferred a bank: `settled` looks again. */
  wakeIfClosing(): void {
    if (!this.core.accepting) this.quietSignal = signal(this.quietSignal)
  }
}
