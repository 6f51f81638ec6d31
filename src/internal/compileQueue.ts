/**
 * The compile queue's machinery. Bank state lives in a `BankTable` owned by one service instance and mutated only in
 * synchronous sections, so each read-decide-write is atomic; every decision goes through the pure `triggers` rule.
 *
 * @internal
 */
import {
  Cause,
  DateTime,
  Deferred,
  Duration,
  Effect,
  Exit,
  FiberId,
  FiberRef,
  FiberSet,
  HashMap,
  type MetricLabel,
  Option,
  Queue,
  Random,
  Runtime,
  type Scope
} from "effect"
import { BankCompileState, type BankStatus, isStaleAt, triggers } from "../BankCompileState.js"
import {
  BankStateStore,
  type BankStateStoreService,
  type BankStoreError,
  type PersistedBank
} from "../BankStateStore.js"
import { CompileEngine, CompileError, type CompileResult } from "../CompileEngine.js"
import * as CompileMetrics from "../CompileMetrics.js"
import type { CompileQueueService, CompileQueueStats } from "../CompileQueue.js"
import { type CompileQueueOptions, resolve } from "../CompileQueueOptions.js"
import {
  BankTable,
  COUNTED,
  DIRTY,
  DROP_WARNED,
  IDLE,
  PARKED,
  PENDING,
  REQUESTED,
  RUNNING,
  STALE,
  STATUS
} from "./bankTable.js"
import { sleepMillis } from "./sleep.js"
import { StalenessTimeline } from "./stalenessTimeline.js"

/** One shared empty tag list: metric hooks are cached per tag-array identity. */
const NO_TAGS: ReadonlyArray<MetricLabel.MetricLabel> = []

const STATUS_NAMES: ReadonlyArray<BankStatus> = ["idle", "pending", "running"]

const MAX_FAILURES = 0xffff_ffff

/** See `publishRetains`. */
const PUBLISH_EVERY = 4096

/** The last flush at close gets this long, on top of `shutdownTimeout`. */
const FINAL_FLUSH_TIMEOUT = Duration.seconds(10)

const optionalTime = (millis: number): Option.Option<DateTime.Utc> =>
  millis === millis ? Option.some(DateTime.unsafeMake(millis)) : Option.none()

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

const invalidBankId = (bankId: unknown): string | undefined =>
  typeof bankId !== "string" ?
    `bank id must be a string, got ${typeof bankId}` :
    bankId.length === 0 ?
    "bank id must not be empty" :
    undefined

export const make = (
  options?: CompileQueueOptions
): Effect.Effect<CompileQueueService, never, CompileEngine | Scope.Scope> =>
  Effect.gen(function*() {
    const opts = yield* Effect.orDie(resolve(options))
    const { config } = opts
    const stalenessMillis = config.stalenessMillis
    const baseDelayMillis = Duration.toMillis(opts.baseDelay)
    const engine = yield* CompileEngine
    const store = yield* Effect.serviceOption(BankStateStore)
    /** Only a queue with a store pays for change tracking. */
    const persistent = Option.isSome(store)
    // The synchronous entry points log and read time through what the layer was built with (logger, TestClock).
    const runtime = yield* Effect.runtime<never>()
    const runSync = Runtime.runSync(runtime)
    const clock = yield* Effect.clock
    // A span costs ~8 µs a compile; with Effect's built-in tracer nothing collects it, so only trace when an
    // application installed a tracer of its own (OpenTelemetry etc.).
    const tracing = (yield* Effect.tracer) !== Effect.runSync(Effect.tracer)

    const table = new BankTable()
    const timeline = new StalenessTimeline((i, due) =>
      (table.state[i]! & STALE) === 0 && table.referenceTime(i) + stalenessMillis === due
    )
    const queue = yield* (Number.isFinite(opts.maxQueueSize)
      ? Queue.bounded<number>(opts.maxQueueSize)
      : Queue.unbounded<number>())
    const pending = new Set<number>()
    const running = new Set<number>()
    /** Banks in the queue, or offering themselves to it after a retry delay. */
    let inQueue = 0
    /** False from the moment closing begins: retains, compileNow, the sweep and retries stop queuing. */
    let accepting = true
    /** True once the shutdown deadline passed and compiles are being interrupted. */
    let interruptingCompiles = false
    let drainSignal: Deferred.Deferred<void> | undefined
    let quietSignal: Deferred.Deferred<void> | undefined
    let timelineSignal: Deferred.Deferred<void> | undefined

    // Made before the shutdown finalizer, so they are closed after it (finalizers run in reverse order).
    const workers = yield* FiberSet.make()
    const retries = yield* FiberSet.make()
    const background = yield* FiberSet.make()

    const logFor = (bankId: unknown, effect: Effect.Effect<void>): void =>
      runSync(Effect.annotateLogs(effect, "bankId", String(bankId)))

    const signal = (deferred: Deferred.Deferred<void> | undefined): undefined => {
      if (deferred !== undefined) Deferred.unsafeDone(deferred, Exit.void)
      return undefined
    }

    const checkSignals = (): void => {
      if (running.size !== 0) return
      if (inQueue <= 0) quietSignal = signal(quietSignal)
      if (pending.size === 0) drainSignal = signal(drainSignal)
    }

    const setStatus = (i: number, status: number): void => {
      const byte = table.state[i]!
      const previous = byte & STATUS
      if (previous === status) return
      if (previous === PENDING) pending.delete(i)
      else if (previous === RUNNING) {
        running.delete(i)
        CompileMetrics.running.unsafeModify(-1, NO_TAGS)
      }
      if (status === PENDING) pending.add(i)
      else if (status === RUNNING) {
        running.add(i)
        CompileMetrics.running.unsafeModify(1, NO_TAGS)
      }
      table.state[i] = (byte & ~STATUS) | status
      if (persistent) table.markDirty(i)
      checkSignals()
    }

    /** Starts the staleness clock of bank `i` from `reference` (epoch millis). */
    const scheduleStaleness = (i: number, reference: number): void => {
      if (stalenessMillis === 0) {
        table.state[i]! |= STALE
        return
      }
      timeline.push(i, reference + stalenessMillis)
      timelineSignal = signal(timelineSignal)
    }

    /**
     * Retains counted but not yet added to the retains metric. A metric update costs a third of a retain, so the
     * metric is published in batches: at every enqueue and compile end, every PUBLISH_EVERY retains, at each sweep,
     * and before every read through the service — whatever reads the queue sees exact figures.
     */
    let unpublishedRetains = 0
    const publishRetains = (): void => {
      if (unpublishedRetains === 0) return
      CompileMetrics.retains.unsafeUpdate(unpublishedRetains, NO_TAGS)
      unpublishedRetains = 0
    }
    /** A read through the service: publish first. */
    const read = <A>(f: () => A): Effect.Effect<A> =>
      Effect.sync(() => {
        publishRetains()
        return f()
      })

    /** Puts an idle bank in the queue. False when the queue is full (the bank stays idle). */
    const enqueue = (i: number): boolean => {
      publishRetains()
      setStatus(i, PENDING)
      if (!queue.unsafeOffer(i)) {
        setStatus(i, IDLE)
        return false
      }
      inQueue++
      table.state[i]! &= ~(DROP_WARNED | PARKED)
      CompileMetrics.enqueued.unsafeUpdate(1, NO_TAGS)
      CompileMetrics.queueSize.unsafeModify(1, NO_TAGS)
      return true
    }

    /** A bank that should be queued but the queue is full: one warning until it is queued again. */
    const dropped = (i: number): void => {
      CompileMetrics.dropped.unsafeUpdate(1, NO_TAGS)
      if ((table.state[i]! & DROP_WARNED) !== 0) return
      table.state[i]! |= DROP_WARNED
      logFor(
        table.ids[i],
        Effect.logWarning(
          `compile queue full (${opts.maxQueueSize} banks): bank ${table.ids[i]} not queued; the next sweep offers it again`
        )
      )
    }

    const reject = (bankId: unknown, reason: string): void => {
      CompileMetrics.retainsRejected.unsafeUpdate(1, NO_TAGS)
      logFor(bankId, Effect.logWarning(`ignored request for bank ${JSON.stringify(bankId)}: ${reason}`))
    }

    // ---- the retain hot path: one map lookup, a few array reads and writes, the pure rule ----

    const firstRetain = (i: number): number => {
      const now = clock.unsafeCurrentTimeMillis()
      table.firstRetainAt[i] = now
      table.state[i]! |= COUNTED
      if (table.lastCompileAt[i] !== table.lastCompileAt[i]) scheduleStaleness(i, now) // NaN: never compiled
      return table.state[i]!
    }

    const unsafeNotifyRetain = (bankId: string, count: number = 1): void => {
      if (!accepting) return
      if (count !== 1 && !(Number.isSafeInteger(count) && count > 0)) {
        return reject(bankId, `count must be a positive integer, got ${String(count)}`)
      }
      let i = table.index.get(bankId)
      if (i === undefined) {
        const invalid = invalidBankId(bankId)
        if (invalid !== undefined) return reject(bankId, invalid)
        i = table.add(bankId)
      }
      let state = table.state[i]!
      if ((state & COUNTED) === 0) state = firstRetain(i)
      const memories = (table.memories[i]! += count)
      if ((unpublishedRetains += count) >= PUBLISH_EVERY) publishRetains()
      if (persistent && (state & DIRTY) === 0) table.markDirty(i)
      // A pending bank is queued once; a running one is re-checked when its compile ends; a parked one waits for the sweep.
      if ((state & (STATUS | PARKED)) === 0 && triggers(memories, (state & STALE) !== 0, config) && !enqueue(i)) {
        dropped(i)
      }
    }

    const unsafeCompileNow = (bankId: string): void => {
      if (!accepting) return
      let i = table.index.get(bankId)
      if (i === undefined) {
        const invalid = invalidBankId(bankId)
        if (invalid !== undefined) return reject(bankId, invalid)
        i = table.add(bankId)
      }
      const status = table.state[i]! & STATUS
      if (status === PENDING) return
      table.state[i]! |= REQUESTED
      if (status === IDLE && !enqueue(i)) dropped(i)
    }

    // ---- compiles ----

    const timeoutMessage = Option.map(opts.compileTimeout, (d) => `compile timed out after ${Duration.format(d)}`)

    const runEngine = (bankId: string): Effect.Effect<CompileResult, CompileError> => {
      const run = Effect.suspend(() => engine.run(bankId))
      const limited = Option.isSome(opts.compileTimeout) && Option.isSome(timeoutMessage)
        ? Effect.timeoutFail(run, {
          duration: opts.compileTimeout.value,
          onTimeout: () => new CompileError({ bankId, message: timeoutMessage.value })
        })
        : run
      return tracing
        ? Effect.withSpan(limited, "CompileQueue.compile", { attributes: { bankId }, captureStackTrace: false })
        : limited
    }

    const succeeded = (i: number, taken: number, now: number, result: CompileResult): Effect.Effect<void> => {
      table.memories[i]! -= taken // retains that arrived during the compile stay counted
      table.lastCompileAt[i] = now
      table.consecutiveFailures[i] = 0
      table.attempts.delete(i)
      if (result.error !== undefined) table.lastError.set(i, result.error)
      else table.lastError.delete(i)
      table.state[i]! &= ~(STALE | PARKED)
      scheduleStaleness(i, now)
      setStatus(i, IDLE)
      // Re-check only when memories arrived during the compile: with sizeThreshold 0 an empty bank would loop.
      const state = table.state[i]!
      const rest = table.memories[i]!
      if (
        accepting &&
        ((state & REQUESTED) !== 0 || (rest > 0 && triggers(rest, (state & STALE) !== 0, config))) &&
        !enqueue(i)
      ) dropped(i)
      if (result.error !== undefined) {
        CompileMetrics.compilesReportedError.unsafeUpdate(1, NO_TAGS)
        return Effect.logError(`compile reported an error: ${result.error}`)
      }
      CompileMetrics.compilesSucceeded.unsafeUpdate(1, NO_TAGS)
      return Effect.logDebug(`compile finished; ${taken} memories consumed`)
    }

    const failed = (i: number, cause: Cause.Cause<CompileError>): Effect.Effect<void> => {
      const message = describeFailure(cause)
      table.consecutiveFailures[i] = Math.min(table.consecutiveFailures[i]! + 1, MAX_FAILURES)
      table.lastError.set(i, message)
      CompileMetrics.compilesFailed.unsafeUpdate(1, NO_TAGS)
      const attempt = (table.attempts.get(i) ?? 0) + 1
      if (accepting && attempt < opts.maxAttempts) {
        // Stay pending while the delay runs, without holding a worker.
        table.attempts.set(i, attempt)
        setStatus(i, PENDING)
        CompileMetrics.retries.unsafeUpdate(1, NO_TAGS)
        return Effect.flatMap(Random.nextRange(0.5, 1.5), (jitter) => {
          const delay = baseDelayMillis * 2 ** (attempt - 1) * jitter
          return Effect.zipRight(
            Effect.logWarning(
              `compile failed (attempt ${attempt} of ${opts.maxAttempts}): ${message}; retrying in ${Math.round(delay)} ms`
            ),
            // Forked from the worker's uninterruptible bookkeeping: make it interruptible so close cancels it.
            FiberSet.run(retries, Effect.interruptible(Effect.zipRight(sleepMillis(delay), requeue(i))))
          )
        })
      }
      table.attempts.delete(i)
      if (accepting) table.state[i]! |= PARKED
      setStatus(i, IDLE)
      return Effect.logError(
        `compile failed (attempt ${attempt} of ${opts.maxAttempts}): ${message}; next try at the next sweep`
      )
    }

    /**
     * After a retry delay: back into the queue, waiting for room rather than dropping the retry. It counts as queued
     * only once the queue took it (a worker may take it first: `inQueue` can dip below zero for that moment).
     */
    const requeue = (i: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (!accepting) return Effect.void
        return Queue.offer(queue, i).pipe(
          Effect.tap(() => {
            inQueue++
            CompileMetrics.queueSize.unsafeModify(1, NO_TAGS)
            CompileMetrics.enqueued.unsafeUpdate(1, NO_TAGS)
          })
        )
      })

    const finish = (
      i: number,
      taken: number,
      startedAt: number,
      exit: Exit.Exit<CompileResult, CompileError>
    ): Effect.Effect<void> => {
      publishRetains()
      const now = clock.unsafeCurrentTimeMillis()
      CompileMetrics.compileDuration.unsafeUpdate((now - startedAt) / 1000, NO_TAGS)
      if (Exit.isSuccess(exit)) return succeeded(i, taken, now, exit.value)
      if (interruptingCompiles && Cause.isInterruptedOnly(exit.cause)) {
        // Cut off by shutdown: the compile did not happen, so the bank still needs one.
        setStatus(i, PENDING)
        return Effect.logWarning("compile interrupted by shutdown; the bank stays pending")
      }
      return failed(i, exit.cause)
    }

    const compile = (
      i: number,
      restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
    ): Effect.Effect<void> =>
      Effect.suspend(() => {
        inQueue--
        CompileMetrics.queueSize.unsafeModify(-1, NO_TAGS)
        table.state[i]! &= ~REQUESTED
        setStatus(i, RUNNING)
        const bankId = table.ids[i]!
        const taken = table.memories[i]!
        const startedAt = clock.unsafeCurrentTimeMillis()
        // Set on the worker fiber without restoring (the next compile overwrites it): half the cost of annotateLogs.
        return FiberRef.update(FiberRef.currentLogAnnotations, HashMap.set<string, unknown>("bankId", bankId)).pipe(
          Effect.zipRight(restore(runEngine(bankId))),
          Effect.exit,
          Effect.flatMap((exit) => finish(i, taken, startedAt, exit))
        )
      })

    /** Takes banks in FIFO order; bookkeeping runs uninterruptibly so no bank is lost between take and finish. */
    const worker = Effect.forever(
      Effect.uninterruptibleMask((restore) => Effect.flatMap(restore(Queue.take(queue)), (i) => compile(i, restore)))
    )

    // ---- staleness without a clock read per retain, and the sweep ----

    const markStale = (i: number, due: number): void => {
      if (table.referenceTime(i) + stalenessMillis === due) table.state[i]! |= STALE
    }

    const watchStaleness = Effect.forever(Effect.suspend(() => {
      const due = timeline.nextDue
      if (due !== due) {
        const wake = Deferred.unsafeMake<void>(FiberId.none)
        timelineSignal = wake
        return Deferred.await(wake)
      }
      const now = clock.unsafeCurrentTimeMillis()
      if (due > now) return sleepMillis(due - now)
      timeline.popDue(now, markStale)
      return Effect.void
    }))

    let sweepFrom = 0
    /** Queues every idle bank that triggers now (or was asked for by compileNow); exact, from one clock read. */
    const sweep: Effect.Effect<number> = Effect.suspend(() => {
      publishRetains()
      if (!accepting) return Effect.succeed(0)
      const now = clock.unsafeCurrentTimeMillis()
      const { sizeThreshold, stalenessMinMemories } = config
      const lowest = Math.min(sizeThreshold, stalenessMinMemories)
      const { memories, size, state } = table
      let queued = 0
      let notQueued = 0
      let newlyWarned = 0
      let full = false
      let firstLeftOut = -1
      // Start where the last sweep ran out of room, so a full queue cannot starve the banks at the end of the table.
      const start = sweepFrom < size ? sweepFrom : 0
      for (let n = 0; n < size; n++) {
        const i = start + n < size ? start + n : start + n - size
        let s = state[i]!
        if ((s & STATUS) !== IDLE) continue
        if ((s & PARKED) !== 0) state[i] = s &= ~PARKED
        const m = memories[i]!
        if (m < lowest && (s & REQUESTED) === 0) continue
        let stale = (s & STALE) !== 0
        if (!stale && isStaleAt(table.referenceTime(i), now, stalenessMillis)) {
          stale = true
          state[i] = s |= STALE
        }
        if ((s & REQUESTED) === 0 && !triggers(m, stale, config)) continue
        if (!full && enqueue(i)) {
          queued++
          continue
        }
        full = true // nothing leaves the queue during this synchronous loop
        if (firstLeftOut === -1) firstLeftOut = i
        notQueued++
        if ((s & DROP_WARNED) === 0) {
          state[i] = s | DROP_WARNED
          newlyWarned++
        }
      }
      sweepFrom = firstLeftOut === -1 ? 0 : firstLeftOut
      if (notQueued > 0) CompileMetrics.dropped.unsafeUpdate(notQueued, NO_TAGS)
      const report = newlyWarned > 0
        ? Effect.logWarning(
          `compile queue full (${opts.maxQueueSize} banks): sweep left ${notQueued} due banks unqueued; the next sweep offers them again`
        )
        : queued > 0
        ? Effect.logDebug(`sweep queued ${queued} banks`)
        : Effect.void
      return Effect.as(report, queued)
    })

    const sweepInterval = Duration.toMillis(opts.sweepInterval)
    const sweepLoop = Effect.forever(Effect.zipRight(sleepMillis(sweepInterval), sweep))

    // ---- waiting ----

    const drain = (options?: { readonly timeout?: Duration.DurationInput }) =>
      Effect.timeout(
        Effect.suspend(() => {
          publishRetains()
          if (pending.size === 0 && running.size === 0) return Effect.void
          drainSignal ??= Deferred.unsafeMake<void>(FiberId.none)
          return Deferred.await(drainSignal)
        }),
        options?.timeout ?? Duration.seconds(5)
      )

    /** Nothing in the queue and nothing running (banks waiting for a cancelled retry do not count). */
    const quiet = Effect.suspend(() => {
      if (inQueue <= 0 && running.size === 0) return Effect.void
      quietSignal ??= Deferred.unsafeMake<void>(FiberId.none)
      return Deferred.await(quietSignal)
    })

    // ---- persistence: restore before accepting work, write changed banks behind, flush once more at close ----

    const toPersisted = (i: number): PersistedBank => {
      const state = table.state[i]!
      const status = state & STATUS
      const last = table.lastCompileAt[i]!
      const first = table.firstRetainAt[i]!
      return {
        bankId: table.ids[i]!,
        memories: table.memories[i]!,
        lastCompileAt: last === last ? last : null,
        firstRetainAt: first === first ? first : null,
        consecutiveFailures: table.consecutiveFailures[i]!,
        lastError: table.lastError.get(i) ?? null,
        // A compileNow the queue could not take yet still needs a compile.
        status: status === IDLE && (state & REQUESTED) !== 0 ? "pending" : STATUS_NAMES[status]!
      }
    }

    /** Loads the stored banks into the table; banks stored as pending or running are queued again, in order. */
    const restore = (banks: ReadonlyArray<PersistedBank>): Effect.Effect<void> =>
      Effect.suspend(() => {
        const now = clock.unsafeCurrentTimeMillis()
        const due: Array<number> = []
        const requeued: Array<number> = []
        for (const bank of banks) {
          const i = table.index.get(bank.bankId) ?? table.add(bank.bankId)
          table.memories[i] = bank.memories
          table.lastCompileAt[i] = bank.lastCompileAt ?? NaN
          table.firstRetainAt[i] = bank.firstRetainAt ?? NaN
          table.consecutiveFailures[i] = Math.min(bank.consecutiveFailures, MAX_FAILURES)
          if (bank.lastError !== null) table.lastError.set(i, bank.lastError)
          table.state[i] = bank.firstRetainAt !== null ? COUNTED : 0
          const reference = table.referenceTime(i)
          if (reference === reference) {
            if (isStaleAt(reference, now, stalenessMillis)) table.state[i]! |= STALE
            else due.push(i)
          }
          if (bank.status !== "idle") requeued.push(i)
        }
        // The staleness timeline takes entries in due order.
        due.sort((a, b) => table.referenceTime(a) - table.referenceTime(b))
        for (const i of due) timeline.push(i, table.referenceTime(i) + stalenessMillis)
        timelineSignal = signal(timelineSignal)
        for (const i of requeued) {
          table.state[i]! |= REQUESTED
          setStatus(i, PENDING)
        }
        table.takeDirty() // what was just loaded is what is stored
        if (requeued.length === 0) return Effect.void
        // Wait for room rather than drop: these compiles were promised before the restart.
        return Effect.zipRight(
          Effect.logInfo(`restored ${banks.length} banks; ${requeued.length} queued again`),
          FiberSet.run(retries, Effect.interruptible(Effect.forEach(requeued, requeue, { discard: true })))
        )
      })

    const flush = (target: BankStateStoreService): Effect.Effect<number, BankStoreError> =>
      Effect.suspend(() => {
        const changed = table.takeDirty()
        if (changed.length === 0) return Effect.succeed(0)
        const rows = Array.from(changed, toPersisted)
        return target.save(rows).pipe(
          Effect.as(rows.length),
          // Failed or cut off: keep them for the next try (banks changed since are listed already).
          Effect.onError(() => Effect.sync(() => changed.forEach((i) => table.markDirty(i))))
        )
      })

    const flushInterval = Duration.toMillis(opts.flushInterval)
    /** Never blocks a retain: a failed flush keeps its banks, logs, counts, and backs off up to a minute. */
    const flushLoop = (target: BankStateStoreService): Effect.Effect<never> => {
      const loop = (delay: number): Effect.Effect<never> =>
        Effect.zipRight(
          sleepMillis(delay),
          Effect.matchEffect(flush(target), {
            onSuccess: () => loop(flushInterval),
            onFailure: (error) => {
              const next = Math.min(delay * 2, Math.max(flushInterval, 60_000))
              CompileMetrics.storeFlushFailures.unsafeUpdate(1, NO_TAGS)
              return Effect.zipRight(
                Effect.logWarning(`flushing bank state failed: ${error.message}; retrying in ${next} ms`),
                loop(next)
              )
            }
          })
        )
      return loop(flushInterval)
    }

    if (Option.isSome(store)) {
      const loaded = yield* store.value.load.pipe(Effect.orDie)
      yield* restore(loaded)
    }

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        accepting = false
        publishRetains()
        yield* FiberSet.clear(background)
        yield* FiberSet.clear(retries)
        // Finalizers are uninterruptible: the deadline only fires on an interruptible wait.
        const finished = yield* quiet.pipe(Effect.interruptible, Effect.timeout(opts.shutdownTimeout), Effect.option)
        interruptingCompiles = true
        yield* FiberSet.clear(workers)
        yield* Queue.shutdown(queue) // what it discards stays "pending" in the table (and in a store)
        CompileMetrics.queueSize.unsafeModify(-inQueue, NO_TAGS)
        inQueue = 0
        if (Option.isSome(store)) {
          yield* flush(store.value).pipe(
            Effect.interruptible,
            Effect.timeout(FINAL_FLUSH_TIMEOUT),
            Effect.catchAll((error) => Effect.logError(`final flush of bank state failed: ${error.message}`))
          )
        }
        yield* Effect.logDebug(
          Option.isSome(finished)
            ? "compile queue closed; every started compile finished"
            : `compile queue closed; compiles still running after ${Duration.format(opts.shutdownTimeout)} were interrupted`
        )
      })
    )

    for (let n = 0; n < opts.concurrency; n++) yield* FiberSet.run(workers, worker)
    yield* FiberSet.run(background, sweepLoop)
    yield* FiberSet.run(background, watchStaleness)
    if (Option.isSome(store)) yield* FiberSet.run(background, flushLoop(store.value))

    // ---- reads ----

    const snapshot = (i: number): BankCompileState =>
      new BankCompileState({
        bankId: table.ids[i]!,
        memoriesSinceLastCompile: table.memories[i]!,
        lastCompileAt: optionalTime(table.lastCompileAt[i]!),
        firstRetainAt: optionalTime(table.firstRetainAt[i]!),
        status: STATUS_NAMES[table.state[i]! & STATUS]!,
        consecutiveFailures: table.consecutiveFailures[i]!,
        lastError: Option.fromNullable(table.lastError.get(i))
      }, true) // built from checked state: skip validation

    const idsOf = (banks: ReadonlySet<number>): ReadonlySet<string> => new Set(Array.from(banks, (i) => table.ids[i]!))

    const stats: Effect.Effect<CompileQueueStats> = read(() => ({
      banks: table.size,
      pending: pending.size,
      running: running.size,
      queued: Math.max(0, inQueue),
      capacity: opts.maxQueueSize
    }))

    return {
      notifyRetain: (bankId, count) => Effect.sync(() => unsafeNotifyRetain(bankId, count)),
      unsafeNotifyRetain,
      compileNow: (bankId) => Effect.sync(() => unsafeCompileNow(bankId)),
      drain,
      pendingBanks: read(() => idsOf(pending)),
      runningBanks: read(() => idsOf(running)),
      state: read(() => {
        const all = new Map<string, BankCompileState>()
        for (let i = 0; i < table.size; i++) all.set(table.ids[i]!, snapshot(i))
        return all
      }),
      bankState: (bankId) =>
        read(() => {
          const i = table.index.get(bankId)
          return i === undefined ? Option.none() : Option.some(snapshot(i))
        }),
      listBanks: (options) =>
        read(() => {
          const limit = Math.min(1000, Math.max(1, Math.trunc(options?.limit ?? 100)))
          const wanted = options?.status === undefined ? -1 : STATUS_NAMES.indexOf(options.status)
          const from = Number(options?.cursor ?? 0)
          const banks: Array<BankCompileState> = []
          let i = Number.isSafeInteger(from) && from > 0 ? from : 0
          for (; i < table.size && banks.length < limit; i++) {
            if (wanted === -1 || (table.state[i]! & STATUS) === wanted) banks.push(snapshot(i))
          }
          return { banks, nextCursor: i < table.size ? Option.some(String(i)) : Option.none() }
        }),
      sweepNow: sweep,
      stats,
      config
    } satisfies CompileQueueService
  })
