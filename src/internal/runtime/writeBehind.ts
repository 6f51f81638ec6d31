/**
 * The write-behind of one queue's bank state: a loop that flushes the core's changed banks to the store every
 * `flushInterval`, that no store failure can stop, and that flushes at once (group commit) while callers of `flush`
 * wait for their changes to be stored. It keeps the store's health for stats, metrics and readiness.
 *
 * Why it cannot stop: a failed flush of any kind — a typed error, a defect (@effect/sql turns a failed COMMIT or
 * ROLLBACK into one), a thrown exception, an interruption from a dead connection — is caught, logged, counted, and
 * retried with a backoff capped at `MAX_BACKOFF_MILLIS`; its banks stay listed as changed until a flush commits them. Only
 * the queue's close ends the loop, and the final flush then retries within its own deadline.
 *
 * @internal
 */
import { Cause, DateTime, Deferred, Duration, Effect, Exit, FiberId } from "effect"
import { type BankStateStoreService, BankStoreError, describeError } from "../../BankStateStore.js"
import * as CompileMetrics from "../../CompileMetrics.js"
import { StoreHealth } from "../../StoreHealth.js"
import { loopForever, supervised } from "./loop.js"
import { type FlushBatch, putBack, takeChanges, write } from "./queuePersistence.js"
import { NO_TAGS, type QueueRuntime } from "./queueRuntime.js"
import { sleepMillis } from "./sleep.js"

/** Retries after failed flushes wait twice as long each time, up to this (or the flush interval, if longer). */
const MAX_BACKOFF_MILLIS = 5_000
/** A flush that has not ended after this long counts as failed; the next one starts (it may still end later). */
const FLUSH_TIMEOUT = Duration.seconds(30)
/** Failures are logged at WARN; once the store has failed for this long, at ERROR. */
const ERROR_AFTER_MILLIS = 30_000

type Waiters = Deferred.Deferred<void, BankStoreError>

/**
 * One flush: what it took, whether it outlived FLUSH_TIMEOUT (its banks then no longer count as in flight), and whether
 * it ended.
 */
interface Flight {
  readonly batch: FlushBatch
  readonly banks: number
  timedOut: boolean
  ended: boolean
}

/** Every write-behind running in this process: the process-wide gauges are computed over them. */
const running = new Set<WriteBehind>()

/**
 * The failure's own message, without a stack (the log line says which flush failed, and when): the store's way of
 * describing a driver error, which a defect (a failed COMMIT in @effect/sql) has not been through yet.
 */
const messageOf = (cause: Cause.Cause<unknown>): string => {
  if (Cause.isInterruptedOnly(cause)) return "the flush was interrupted (its connection went away)"
  return `${describeError(Cause.squash(cause))}${Cause.isDie(cause) ? " (a defect)" : ""}`
}

export class WriteBehind {
  /** When the last committed flush started (it took its changes just after): every change before it is stored. */
  private storedUpTo: number
  private lastSuccessAt: number
  private failingSince: number | undefined = undefined
  private consecutiveFailures = 0
  private failures = 0
  private lastError: string | undefined = undefined
  /** Banks in the flushes under way (one, or more when one outlived its timeout). */
  private inFlight = 0
  private flights = 0
  /** Completed when no flush is under way any more (the final flush waits for one that outlived its timeout). */
  private flightsEnded: Deferred.Deferred<void> | undefined = undefined
  /** Callers of `flush` waiting for the next flush to take the change list. */
  private waiters: Waiters | undefined = undefined
  /** Wakes the loop from its interval sleep when a caller waits (not while it backs off after a failure). */
  private wake: Deferred.Deferred<void> | undefined = undefined
  private wakeScheduled = false
  /** Set by the close: the final flush's outcome answers every later `flush`. */
  private closedWith: Exit.Exit<void, BankStoreError> | undefined = undefined
  /** Last published to the process-wide unflushed gauge. */
  private publishedUnflushed = 0

  constructor(private readonly rt: QueueRuntime, private readonly store: BankStateStoreService) {
    this.storedUpTo = this.lastSuccessAt = rt.now()
    running.add(this)
  }

  // ---- reading ----

  get unflushed(): number {
    return this.rt.core.unflushed + this.inFlight
  }

  health(): StoreHealth {
    const now = this.rt.now()
    const unflushed = this.unflushed
    return new StoreHealth({
      healthy: this.failingSince === undefined,
      unhealthySince: this.failingSince === undefined ? null : DateTime.unsafeMake(this.failingSince),
      unflushed,
      oldestUnflushedSeconds: unflushed === 0 ? 0 : Math.max(0, now - this.storedUpTo) / 1000,
      lastFlushAt: DateTime.unsafeMake(this.lastSuccessAt),
      consecutiveFailures: this.consecutiveFailures,
      failures: this.failures,
      lastError: this.failingSince === undefined ? null : this.lastError ?? null
    }, true)
  }

  /** The store gauges: this queue's share of the unflushed sum, and the extremes over every queue of the process. */
  publish(): void {
    const unflushed = this.unflushed
    CompileMetrics.storeUnflushed.unsafeModify(unflushed - this.publishedUnflushed, NO_TAGS)
    this.publishedUnflushed = unflushed
    const now = this.rt.now()
    let oldest = 0
    let lastSuccess = Infinity
    let healthy = 1
    for (const writer of running) {
      if (writer.unflushed > 0) oldest = Math.max(oldest, now - writer.storedUpTo)
      lastSuccess = Math.min(lastSuccess, writer.lastSuccessAt)
      if (writer.failingSince !== undefined) healthy = 0
    }
    CompileMetrics.storeOldestUnflushed.unsafeUpdate(oldest / 1000, NO_TAGS)
    CompileMetrics.storeLastFlushSuccess.unsafeUpdate(lastSuccess / 1000, NO_TAGS)
    CompileMetrics.storeHealthy.unsafeUpdate(healthy, NO_TAGS)
  }

  // ---- waiting for a flush ----

  /** Waits for a flush that takes every change made before this call; fails when that flush fails. */
  readonly flush: Effect.Effect<void, BankStoreError> = Effect.suspend(() => {
    if (this.closedWith !== undefined) return this.closedWith
    const waiters = this.waiters ??= Deferred.unsafeMake<void, BankStoreError>(FiberId.none)
    this.scheduleWake()
    return Deferred.await(waiters)
  })

  /**
   * Wakes the loop once the requests Node has already read are handled: `setImmediate` runs after the event loop's
   * I/O phase. Woken at once (a microtask), the loop would flush before Node reads the next request — with SQLite,
   * whose driver never waits on I/O, every durable write got a flush of its own (26 % of memory mode's batch
   * throughput, against 61 % when the writers of one turn share a flush).
   */
  private scheduleWake(): void {
    if (this.wake === undefined || this.wakeScheduled) return
    this.wakeScheduled = true
    setImmediate(() => {
      this.wakeScheduled = false
      if (this.wake !== undefined) Deferred.unsafeDone(this.wake, Exit.void)
    })
  }

  // ---- the loop ----

  /** Flushes every interval (at once while callers wait) until the queue closes. */
  readonly loop: Effect.Effect<never> = Effect.suspend(() => {
    const interval = Duration.toMillis(this.rt.opts.flushInterval)
    const maxBackoff = Math.max(interval, MAX_BACKOFF_MILLIS)
    let delay = interval
    const round = Effect.zipRight(
      Effect.suspend(() => this.waitFor(delay, delay === interval)),
      Effect.map(this.attempt, (ok) => {
        delay = ok ? interval : Math.min(delay * 2, maxBackoff)
      })
    )
    return supervised("the write-behind of bank state", loopForever(round))
  })

  /** Sleeps `millis`; with `wakeable`, a caller of `flush` ends the sleep (and one already waiting skips it). */
  private waitFor(millis: number, wakeable: boolean): Effect.Effect<void> {
    if (!wakeable) return sleepMillis(millis, this.rt.clock)
    if (this.waiters !== undefined) return Effect.void
    const wake = this.wake = Deferred.unsafeMake<void>(FiberId.none)
    return Effect.raceFirst(sleepMillis(millis, this.rt.clock), Deferred.await(wake)).pipe(
      Effect.ensuring(Effect.sync(() => {
        if (this.wake === wake) this.wake = undefined
      }))
    )
  }

  /**
   * One flush, whatever happens to it: true when it committed. The callers waiting when it took the change list
   * learn its outcome; if the loop itself is interrupted (the close), they wait on for the final flush.
   */
  private readonly attempt: Effect.Effect<boolean> = Effect.suspend(() => {
    let batch = this.waiters
    this.waiters = undefined
    const takenAt = this.rt.now()
    const answer = (exit: Exit.Exit<void, unknown>) => {
      const answered = batch
      batch = undefined
      return Exit.isSuccess(exit) ? this.succeeded(takenAt, answered) : this.failed(exit.cause, answered)
    }
    return this.timedFlush.pipe(
      Effect.exit,
      Effect.flatMap(answer),
      Effect.onInterrupt(() => Effect.sync(() => this.keepWaiting(batch)))
    )
  })

  /**
   * One flush, bounded by FLUSH_TIMEOUT. A transaction's BEGIN and COMMIT are uninterruptible, so a flush stuck on a
   * silent connection is left to end on its own (`disconnect`) rather than waited for, and its changes are listed
   * again at once: the next flush writes their state then. (Writing them twice is safe: a flush stuck in BEGIN is
   * interrupted before it writes a row, and one stuck in COMMIT holds the rows' locks until it ends.)
   */
  private readonly timedFlush: Effect.Effect<void, unknown> = Effect.suspend(() => {
    let flight: Flight | undefined
    return this.flight((started) => (flight = started)).pipe(
      Effect.disconnect,
      Effect.timeoutFail({
        duration: FLUSH_TIMEOUT,
        onTimeout: () => {
          // A flight interrupted by the timeout may have ended (and settled its banks) before this runs.
          if (flight !== undefined && !flight.ended) {
            flight.timedOut = true
            this.inFlight -= flight.banks
            putBack(this.rt, flight.batch)
          }
          return new BankStoreError({
            operation: "save",
            message: `a flush did not end within ${Duration.format(FLUSH_TIMEOUT)}`
          })
        }
      })
    )
  })

  /**
   * Takes the changes and writes them, and whatever ends the write other than success lists them again. Taking them
   * and watching the write are one uninterruptible step: a close that interrupts the flush before it runs takes
   * nothing, and one that interrupts it later finds it watched (taken first and interrupted before the watch, the
   * changes were lost, and the close waited for a flush that never ran).
   */
  private flight(started: (flight: Flight) => void): Effect.Effect<void, unknown> {
    return Effect.uninterruptibleMask((restore) => {
      const batch = takeChanges(this.rt, this.store)
      const flight: Flight = { batch, banks: batch.banks.length, timedOut: false, ended: false }
      started(flight)
      this.inFlight += flight.banks
      this.flights++
      return restore(write(this.rt, this.store, batch)).pipe(
        Effect.onExit((exit) =>
          Effect.sync(() => {
            flight.ended = true
            if (Exit.isFailure(exit)) putBack(this.rt, batch)
            if (!flight.timedOut) this.inFlight -= flight.banks
            this.landed()
          })
        )
      )
    })
  }

  /** A flush ended, whatever its outcome (a failed one listed its changes again). */
  private landed(): void {
    if (--this.flights > 0 || this.flightsEnded === undefined) return
    Deferred.unsafeDone(this.flightsEnded, Exit.void)
    this.flightsEnded = undefined
  }

  /** Waits until no flush is under way. */
  private readonly noFlightLeft: Effect.Effect<void> = Effect.suspend(() => {
    if (this.flights === 0) return Effect.void
    this.flightsEnded ??= Deferred.unsafeMake<void>(FiberId.none)
    return Deferred.await(this.flightsEnded)
  })

  private succeeded(takenAt: number, batch: Waiters | undefined): Effect.Effect<boolean> {
    const wasFailing = this.failingSince
    const failed = this.consecutiveFailures
    this.storedUpTo = takenAt
    this.lastSuccessAt = this.rt.now()
    this.failingSince = undefined
    this.consecutiveFailures = 0
    this.lastError = undefined
    if (batch !== undefined) Deferred.unsafeDone(batch, Exit.void)
    this.publish()
    if (wasFailing === undefined) return Effect.succeed(true)
    const seconds = Math.round((this.lastSuccessAt - wasFailing) / 100) / 10
    return Effect.as(
      Effect.logInfo(`flushing bank state works again, after ${seconds} s and ${failed} failed flushes`),
      true
    )
  }

  private failed(cause: Cause.Cause<unknown>, batch: Waiters | undefined): Effect.Effect<boolean> {
    const now = this.rt.now()
    this.failingSince ??= now
    this.consecutiveFailures++
    this.failures++
    this.lastError = messageOf(cause)
    CompileMetrics.storeFlushFailures.unsafeUpdate(1, NO_TAGS)
    const error = new BankStoreError({ operation: "save", message: this.lastError })
    if (batch !== undefined) Deferred.unsafeDone(batch, Exit.fail(error))
    this.publish()
    const failingFor = now - this.failingSince
    const line = `flushing bank state failed (${this.consecutiveFailures} in a row, for ${
      Math.round(failingFor / 1000)
    } s; ${this.unflushed} changes unflushed, kept for the next flush): ${this.lastError}`
    // The whole cause once per outage; one line per failure after that.
    const log = failingFor >= ERROR_AFTER_MILLIS
      ? Effect.logError(line)
      : this.consecutiveFailures === 1
      ? Effect.logWarning(line, cause)
      : Effect.logWarning(line)
    return Effect.as(log, false)
  }

  /** Callers whose flush was cut off wait for the next one. */
  private keepWaiting(batch: Waiters | undefined): void {
    if (batch === undefined) return
    const later = this.waiters
    this.waiters = batch
    if (later !== undefined) Deferred.unsafeDone(later, Deferred.await(batch))
  }

  // ---- the close ----

  /**
   * The flush at close, after the loop stopped and the compiles finished or were cut off: retried until it commits or
   * `until` completes. Answers every caller still waiting, and every later one; returns the changes left unstored.
   */
  final(until: Effect.Effect<void>): Effect.Effect<number> {
    const interval = Math.min(Duration.toMillis(this.rt.opts.flushInterval), 1_000)
    const retry: Effect.Effect<void> = Effect.flatMap(this.attempt, (ok) =>
      ok ? Effect.void : Effect.zipRight(sleepMillis(interval, this.rt.clock), retry))
    // A flush the loop left running (past its timeout, or when the loop was stopped) ends first. This runs in a
    // finalizer, often of an interrupted fiber: only the raced children are interruptible (made interruptible here,
    // the waiting fiber itself would take its pending interruption at once and skip the flush).
    const flushed = Effect.interruptible(Effect.zipRight(this.noFlightLeft, retry))
    return Effect.raceFirst(flushed, Effect.interruptible(until)).pipe(
      Effect.zipRight(Effect.sync(() => this.close()))
    )
  }

  private close(): number {
    const left = this.unflushed
    this.closedWith = left === 0 ? Exit.void : Exit.fail(
      new BankStoreError({ operation: "save", message: `the queue closed with ${left} changes unflushed: ${this.lastError ?? "the final flush did not end"}` })
    )
    if (this.waiters !== undefined) Deferred.unsafeDone(this.waiters, this.closedWith)
    this.waiters = undefined
    this.publish()
    running.delete(this)
    CompileMetrics.storeUnflushed.unsafeModify(-this.publishedUnflushed, NO_TAGS)
    this.publishedUnflushed = 0
    return left
  }
}
