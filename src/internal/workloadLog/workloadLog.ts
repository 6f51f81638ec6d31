/**
 * The workload log (`WORKLOAD_LOG_DIR`): every queue built with it counts its retains and forgets per bank in a tally
 * (`tally.ts`); once a minute a fiber drains the tallies and appends the minute, per bank, to the day's file in the
 * tuner's format (`logFiles.ts`), then deletes the days past the retention. Nothing on the retain path touches a file
 * or the clock, and no failure here reaches it: a write that fails is logged (throttled) and its minute is lost.
 *
 * @internal
 */
import { Context, Duration, Effect, Layer, Option, type Scope } from "effect"
import { WarningThrottle } from "../core/warningThrottle.js"
import { supervised } from "../runtime/loop.js"
import { sleepMillis } from "../runtime/sleep.js"
import { appendMinute, appendWhole, dayOf, fileOf, MINUTE, prune } from "./logFiles.js"
import { type BankIds, RetainTally } from "./tally.js"

/** @internal */
export interface WorkloadLogOptions {
  readonly dir: string
  /** Whole UTC days of files kept, today's included (at least 1). */
  readonly retentionDays: number
  /** How long the flush at close may take (default 5 seconds). */
  readonly closeTimeout?: Duration.DurationInput | undefined
}

/** What the log wrote and lost so far; an event is one line (a bank's retains or forgets in a minute). */
export interface WorkloadLogStatus {
  readonly writtenEvents: number
  readonly lostEvents: number
  readonly failedWrites: number
  readonly lastError: string | undefined
}

export interface WorkloadLogService {
  /** A tally for a new queue over its bank table; the queue marks it `closed` when it closes. */
  readonly register: (table: BankIds) => RetainTally
  readonly status: Effect.Effect<WorkloadLogStatus>
  /** Completes once the appends under way have ended (a test reads the files then). */
  readonly idle: Effect.Effect<void>
}

/** Present only when the log is on: queues built without it count nothing. */
export class WorkloadLog extends Context.Tag("effect-compile-trigger/WorkloadLog")<WorkloadLog, WorkloadLogService>() {}

/** Failed writes are logged at once, then at most once per this long (each says how many events were lost since). */
const WARN_EVERY_MILLIS = 15 * 60_000
const DEFAULT_CLOSE_TIMEOUT = Duration.seconds(5)

const minuteOf = (time: number): number => Math.floor(time / MINUTE) * MINUTE
const messageOf = (error: unknown): string => error instanceof Error ? error.message : String(error)

/** The log's mutable state, touched only on the JS thread. */
class LogState {
  readonly tallies = new Set<RetainTally>()
  /** The start of the minute the tallies are counting. */
  bucket: number
  /** The day whose retention was last applied. */
  prunedDay = ""
  /** The last append queued, never rejected: appends run one after another, in the order their minutes were drained. */
  writing: Promise<void> = Promise.resolve()
  writtenEvents = 0
  lostEvents = 0
  lostSinceWarning = 0
  failedWrites = 0
  lastError: string | undefined = undefined
  readonly throttle = new WarningThrottle(WARN_EVERY_MILLIS)
  readonly pruneThrottle = new WarningThrottle(WARN_EVERY_MILLIS)

  constructor(now: number) {
    this.bucket = minuteOf(now)
  }

  /** Drains every tally into the lines of minute `label`; closed tallies are dropped once drained. */
  collect(label: number): Array<string> {
    const lines: Array<string> = []
    const iso = new Date(label).toISOString()
    for (const tally of this.tallies) {
      if (!tally.empty) tally.drain((bankId, retains, forgets) => appendMinute(lines, iso, bankId, retains, forgets))
      if (tally.closed) this.tallies.delete(tally)
    }
    return lines
  }
}

/**
 * Counts an append's outcome (in the append's own promise, so the counts are exact even when the fiber that waits for
 * it is interrupted at close) and says what to log: undefined for nothing.
 */
const counted = (state: LogState, events: number, file: string, error: unknown, ok: boolean, now: number) => {
  if (ok) {
    state.writtenEvents += events
    if (state.lostSinceWarning === 0) return undefined
    const lost = state.lostSinceWarning
    state.lostSinceWarning = 0
    return Effect.logInfo(`workload log: writing to ${file} again (${lost} events lost while writes failed)`)
  }
  state.failedWrites++
  state.lostEvents += events
  state.lostSinceWarning += events
  state.lastError = messageOf(error)
  const due = state.throttle.note(now)
  if (due === undefined) return undefined
  const since = due.count === 1 ? "" : ` (${due.count} failed writes since the last such warning)`
  return Effect.logWarning(
    `workload log: cannot write ${file}: ${state.lastError}; ${state.lostSinceWarning} events lost so far` +
      `${since} — the service goes on, the tuner will see no retains in those minutes`
  )
}

/** Runs `task` after the file operations queued before it; `state.writing` follows it (and handles its rejection). */
const enqueue = <A>(state: LogState, task: () => Promise<A>): Promise<A> => {
  const done = state.writing.then(task)
  state.writing = done.then(() => undefined, () => undefined)
  return done
}

/**
 * Drains minute `label` now, and queues its append to the day's file behind the appends before it; the effect waits
 * for that append (counting it written or lost) and applies the retention when the day changed.
 */
const drainMinute = (state: LogState, options: WorkloadLogOptions, label: number, now: number): Effect.Effect<void> => {
  const lines = state.collect(label)
  const file = fileOf(options.dir, label)
  let write: Effect.Effect<void> = Effect.void
  if (lines.length > 0) {
    const append = () =>
      appendWhole(options.dir, file, lines.join("")).then(
        () => counted(state, lines.length, file, undefined, true, now),
        (error: unknown) => counted(state, lines.length, file, error, false, now)
      )
    const report = enqueue(state, append)
    write = Effect.flatMap(Effect.promise(() => report), (log) => log ?? Effect.void)
  }
  const day = dayOf(label)
  if (day === state.prunedDay) return write
  state.prunedDay = day
  return Effect.asVoid(Effect.zip(write, pruneOld(state, options, label, now), { concurrent: true }))
}

/** Queues the retention as of `today` (behind the appends before it); the effect logs what it deleted or why it failed. */
const pruneOld = (state: LogState, options: WorkloadLogOptions, today: number, now: number) => {
  const pruned = enqueue(state, () => prune(options.dir, today, options.retentionDays))
  return Effect.tryPromise(() => pruned).pipe(
    Effect.flatMap((deleted) =>
      deleted.length === 0 ? Effect.void : Effect.logInfo(`workload log: deleted ${deleted.join(", ")} (past retention)`)
    ),
    Effect.catchAll(({ error }) =>
      Effect.suspend(() => {
        state.lastError = messageOf(error)
        return state.pruneThrottle.note(now) === undefined
          ? Effect.void
          : Effect.logWarning(`workload log: cannot apply the retention in ${options.dir}: ${state.lastError}`)
      })
    )
  )
}

/**
 * Sleeps to the end of the current minute, then drains it; the minute comes from one clock read per flush. The write
 * runs in a fiber of its own (the appends stay in order, see `LogState.writing`): a slow disk never delays the next
 * drain, so a minute's events are never counted in the one before.
 */
const flushEveryMinute = (state: LogState, options: WorkloadLogOptions, scope: Scope.Scope): Effect.Effect<never> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const round = Effect.suspend(() => {
      const wait = state.bucket + MINUTE - clock.unsafeCurrentTimeMillis()
      return Effect.zipRight(
        sleepMillis(wait),
        Effect.suspend(() => {
          const now = clock.unsafeCurrentTimeMillis()
          const label = state.bucket
          state.bucket = minuteOf(now)
          return Effect.forkIn(drainMinute(state, options, label, now), scope)
        })
      )
    })
    return yield* Effect.forever(round)
  })

const idle = (state: LogState): Effect.Effect<void> => Effect.promise(() => state.writing)

/** At close: the minute counted so far, within its deadline; what it cannot write in time is lost and said so. */
const finalFlush = (state: LogState, options: WorkloadLogOptions) =>
  Effect.gen(function*() {
    const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    const timeout = options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT
    const flushed = Effect.suspend(() => Effect.zipRight(drainMinute(state, options, state.bucket, now), idle(state)))
    yield* flushed.pipe(
      Effect.interruptible,
      Effect.timeout(timeout),
      Effect.catchAll(() =>
        Effect.logWarning(`workload log: the last minute was not written to ${options.dir} within ${Duration.format(timeout)}`)
      )
    )
  })

export const make = (options: WorkloadLogOptions): Effect.Effect<WorkloadLogService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const state = new LogState(yield* Effect.clockWith((clock) => clock.currentTimeMillis))
    // Added before the loop is forked: the loop is interrupted first, then the last minute is written.
    yield* Effect.addFinalizer(() => finalFlush(state, options))
    yield* Effect.forkScoped(supervised("the workload log", flushEveryMinute(state, options, yield* Effect.scope)))
    return {
      register: (table) => {
        const tally = new RetainTally(table)
        state.tallies.add(tally)
        return tally
      },
      status: Effect.sync(() => ({
        writtenEvents: state.writtenEvents,
        lostEvents: state.lostEvents,
        failedWrites: state.failedWrites,
        lastError: state.lastError
      })),
      idle: Effect.suspend(() => idle(state))
    }
  })

export const layer = (options: WorkloadLogOptions): Layer.Layer<WorkloadLog> =>
  Layer.scoped(
    WorkloadLog,
    Effect.tap(
      make(options),
      () =>
        Effect.logInfo(
          `workload log: ${options.dir}, one file per UTC day, kept ${options.retentionDays} day${
            options.retentionDays === 1 ? "" : "s"
          }`
        )
    )
  )

/** Builds `effect` (a queue) with the workload log `log`, when there is one (a runner hands its own to a partition). */
export const withWorkloadLog = (log: Option.Option<WorkloadLogService>) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Option.isSome(log) ? Effect.provideService(effect, WorkloadLog, log.value) : effect
