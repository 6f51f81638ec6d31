/**
 * The Effect shell around the compile core, shared by the entry points, the workers, the timers and persistence:
 * it carries out the core's answers (the bounded `Queue`, metrics, logs, the `drain`/shutdown/timeline wake-ups),
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
  Queue,
  Runtime
} from "effect"
import * as CompileMetrics from "../CompileMetrics.js"
import type { ResolvedCompileQueueOptions } from "../CompileQueueOptions.js"
import {
  type Answer,
  type CompileCore,
  DELAY,
  DRAINED,
  DROPPED_FIRST,
  NOTHING,
  QUEUED,
  QUIET,
  RECHECK,
  TIMELINE
} from "./compileCore.js"
import type { CompileHistory } from "./compileHistory.js"
import { sleepMillis } from "./sleep.js"

/** One shared empty tag list: metric hooks are cached per tag-array identity. */
export const NO_TAGS: ReadonlyArray<MetricLabel.MetricLabel> = []

/** See `publishRetains`. */
const PUBLISH_EVERY = 4096

const signal = (deferred: Deferred.Deferred<void> | undefined): undefined => {
  if (deferred !== undefined) Deferred.unsafeDone(deferred, Exit.void)
  return undefined
}

const waitOn = (deferred: Deferred.Deferred<void>): Effect.Effect<void> => Deferred.await(deferred)

export interface QueueRuntimeParts {
  readonly core: CompileCore
  readonly queue: Queue.Queue<number>
  readonly opts: ResolvedCompileQueueOptions
  /** The runtime the layer was built with: the synchronous entry points log through it. */
  readonly runtime: Runtime.Runtime<never>
  readonly clock: Clock.Clock
  /** Retry timers and restored banks waiting for room; cleared first at close. */
  readonly retries: FiberSet.FiberSet
  /** The last finished engine runs and those in flight (written by the workers only). */
  readonly history: CompileHistory
}

export class QueueRuntime {
  readonly core: CompileCore
  readonly queue: Queue.Queue<number>
  readonly opts: ResolvedCompileQueueOptions
  readonly clock: Clock.Clock
  readonly retries: FiberSet.FiberSet
  readonly history: CompileHistory
  /** True once the shutdown deadline passed and compiles are being interrupted. */
  interruptingCompiles = false
  /**
   * Retains counted but not yet added to the retains metric. A metric update costs a third of a retain, so the
   * metric is published in batches: at every enqueue and compile end, every PUBLISH_EVERY retains, at each sweep,
   * and before every read through the service — whatever reads the queue sees exact figures.
   */
  unpublishedRetains = 0
  private readonly runSync: <A>(effect: Effect.Effect<A>) => A
  private readonly runFork: <A>(effect: Effect.Effect<A>) => Fiber.RuntimeFiber<A>
  private drainSignal: Deferred.Deferred<void> | undefined
  private quietSignal: Deferred.Deferred<void> | undefined
  private timelineSignal: Deferred.Deferred<void> | undefined

  constructor(parts: QueueRuntimeParts) {
    this.core = parts.core
    this.queue = parts.queue
    this.opts = parts.opts
    this.clock = parts.clock
    this.retries = parts.retries
    this.history = parts.history
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
  }

  /**
   * The core answered (not `NOTHING`): a policy bank's exact re-check (one clock read), a forget delay to arm, or an
   * enqueue's metrics, the one "queue full" warning and wake-ups.
   */
  answered(i: number, answer: Answer): void {
    if (answer === RECHECK) answer = this.core.recheck(i, this.now())
    if (answer === DELAY) return this.armForget(i)
    if (answer === NOTHING) return
    this.publishRetains()
    if (answer === QUEUED) {
      CompileMetrics.enqueued.unsafeUpdate(1, NO_TAGS)
      CompileMetrics.queueSize.unsafeModify(1, NO_TAGS)
      this.fireSignals()
      return
    }
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

  /** Retains are counted in the core; the metric follows in batches. */
  countRetains(count: number): void {
    if ((this.unpublishedRetains += count) >= PUBLISH_EVERY) this.publishRetains()
  }

  publishRetains(): void {
    if (this.unpublishedRetains === 0) return
    CompileMetrics.retains.unsafeUpdate(this.unpublishedRetains, NO_TAGS)
    this.unpublishedRetains = 0
  }

  /** A read through the service: publish first. */
  read<A>(f: () => A): Effect.Effect<A> {
    return Effect.sync(() => {
      this.publishRetains()
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
   * A pending bank (after its retry delay, or restored) back into the queue, waiting for room rather than dropped.
   * It counts as queued only once the queue took it (a worker may take it first: `inQueue` can dip below zero).
   */
  readonly requeue = (i: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (!this.core.mayRequeue(i)) return Effect.void
      return Queue.offer(this.queue, i).pipe(
        Effect.tap(() => {
          this.core.requeued(i)
          CompileMetrics.queueSize.unsafeModify(1, NO_TAGS)
          CompileMetrics.enqueued.unsafeUpdate(1, NO_TAGS)
        })
      )
    })

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

  /** Sleeps until the next staleness entry is due and marks it; waits for a signal while the timeline is empty. */
  readonly watchStaleness: Effect.Effect<never> = Effect.forever(Effect.suspend(() => {
    const due = this.core.nextStaleDue
    if (due !== due) {
      const wake = Deferred.unsafeMake<void>(FiberId.none)
      this.timelineSignal = wake
      return waitOn(wake)
    }
    const now = this.now()
    if (due > now) return sleepMillis(due - now)
    this.core.staleDue(now)
    return Effect.void
  }))

  /** Queues every idle bank that triggers now (or was asked for by compileNow); exact, from one clock read. */
  readonly sweep: Effect.Effect<number> = Effect.suspend(() => {
    this.publishRetains()
    const { newlyWarned, notQueued, queued } = this.core.sweep(this.now())
    this.fireSignals()
    if (queued > 0) {
      CompileMetrics.enqueued.unsafeUpdate(queued, NO_TAGS)
      CompileMetrics.queueSize.unsafeModify(queued, NO_TAGS)
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
    this.publishRetains()
    if (this.core.pending.size === 0 && this.core.running.size === 0) return Effect.void
    this.drainSignal ??= Deferred.unsafeMake<void>(FiberId.none)
    return waitOn(this.drainSignal)
  })

  /** Nothing in the queue and nothing running (banks waiting for a cancelled retry do not count). */
  readonly quiet: Effect.Effect<void> = Effect.suspend(() => {
    if (this.core.inQueue <= 0 && this.core.running.size === 0) return Effect.void
    this.quietSignal ??= Deferred.unsafeMake<void>(FiberId.none)
    return waitOn(this.quietSignal)
  })
}
