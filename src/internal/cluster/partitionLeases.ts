/**
 * Partition ownership as expiring leases in Postgres: one row per partition (holder, epoch, expiry) that the holder
 * renews every second and another runner takes only once it expired; every take increases the partition's epoch.
 *
 * Two clocks, never compared: Postgres's decides when a lease expired (`clock_timestamp()` at the take), the holder's
 * own monotonic clock decides how long it may act. A holder counts its lease valid until the moment it *sent* its last
 * successful take or renewal plus the lease's length less a safety margin, so it stops acting before Postgres can
 * have let another runner take the partition, however long the answer took, and whatever froze it in between (a
 * SIGSTOP, a GC pause, a cut network). The epoch fences the rest: a partition's writes are conditional on it
 * (`fence`), and each compile's token starts with it.
 *
 * @internal
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { Deferred, Duration, Effect, Exit, ExecutionStrategy, FiberId, Schedule, Scope } from "effect"
import type { LeaveReason, PreviousOwner } from "./partitionMoves.js"
import { oncePerTask } from "../runtime/taskClock.js"

/** The partitions' leases, and how each was last left (for the move log). */
export const LEASES_TABLE = "compile_trigger_partition_leases"
/**
 * Per partition and epoch, the number of the last flush its holder stored under it: what a holder that lost the
 * partition reads to learn whether a flush whose answer it never got was stored. The last few epochs are kept.
 */
export const FLUSHES_TABLE = "compile_trigger_partition_flushes"
/** How many of a partition's epochs before the current one keep their flush record. */
const FLUSH_EPOCHS_KEPT = 8

/** How long a take or a renewal holds the lease, by Postgres's clock. */
export const LEASE_MILLIS = 5_000
/** How often the holder renews its leases. */
export const RENEW_EVERY_MILLIS = 1_000
/**
 * How much sooner than Postgres the holder gives its lease up: room for the two clocks' rates to differ and for the
 * moment between a check and the action it allows.
 */
export const SAFETY_MARGIN_MILLIS = 1_000
/**
 * A release that failed is tried again every 250 ms, on a fresh connection (its own died, as after a Postgres restart),
 * for as long as the lease may not have expired: else the partition waits for its lease to expire, and the next holder
 * logs it as not handed over. Idempotent: it only ends the lease of this holder under this epoch.
 */
const RELEASE_RETRIES = Schedule.spaced(Duration.millis(250)).pipe(Schedule.upTo(Duration.millis(LEASE_MILLIS)))
/** A lease operation slower than this fails (its connection is given up, and the next one reserves another). */
const OPERATION_TIMEOUT = Duration.millis(1_500)

/** A lease just taken: its epoch, and who held the partition before (undefined: nobody ever did). */
export interface LeaseTaken {
  readonly epoch: number
  readonly previous: PreviousOwner | undefined
}

export interface PartitionLeases {
  /** This runner's address, as the move log names it. */
  readonly runner: string
  /** Takes the partition's lease if it expired or was released: the new epoch, or undefined when another holds it. */
  readonly tryAcquire: (partition: number) => Effect.Effect<LeaseTaken | undefined, SqlError>
  /** Renews every lease held here: the leases another runner took meanwhile (lost for good), with their epochs. */
  readonly renew: Effect.Effect<ReadonlyArray<LostLease>, SqlError>
  /** Gives the lease up (this runner stops counting it at once), recording why for the next holder's log. */
  readonly release: (partition: number, why: LeaveReason) => Effect.Effect<void, SqlError>
  /** Whether this runner can prove, by its own monotonic clock, that it still holds the partition. Synchronous. */
  readonly isValid: (partition: number) => boolean
  /**
   * Inside a flush's transaction: true if the partition is still this runner's under `epoch`, and then no other runner
   * can take it before the transaction ends (a shared row lock); the flush's number is recorded with it.
   */
  readonly fence: (partition: number, epoch: number, flush: number) => Effect.Effect<boolean, SqlError>
  /** The number of the last flush stored under the partition's `epoch` (0: none, or its record is gone). */
  readonly flushedUnder: (partition: number, epoch: number) => Effect.Effect<number, SqlError>
  /** Completes at the next renewal that proved a lease again (a paused partition waits for it). */
  readonly renewed: Effect.Effect<void>
}

/** A lease this runner held under `epoch` and another runner took. */
export interface LostLease {
  readonly partition: number
  readonly epoch: number
}

/** What the lease table does, row by row: Postgres's (`pgLeaseRows`), or a test's. */
export interface LeaseRows {
  /** Takes the row if its lease expired or was released (epoch + 1): the new epoch and who held it before. */
  readonly take: (partition: number, holder: string, runner: string) => Effect.Effect<LeaseTaken | undefined, SqlError>
  /** Extends the leases `holder` still holds among `partitions`: partition → epoch, for those. */
  readonly renew: (holder: string, partitions: ReadonlyArray<number>) => Effect.Effect<Map<number, number>, SqlError>
  /** Ends the lease now if it is still `holder`'s under `epoch`, noting why. */
  readonly release: (partition: number, holder: string, epoch: number, why: LeaveReason) => Effect.Effect<void, SqlError>
  /**
   * Inside a transaction: whether the lease is still `holder`'s under `epoch`, locking the row until it ends; if so,
   * records `flush` as stored under the epoch when the transaction commits.
   */
  readonly fence: (partition: number, holder: string, epoch: number, flush: number) => Effect.Effect<boolean, SqlError>
  /** The number of the last flush stored under the partition's `epoch` (0: none). */
  readonly flushedUnder: (partition: number, epoch: number) => Effect.Effect<number, SqlError>
}

interface Held {
  readonly epoch: number
  /** Monotonic milliseconds until which this runner may act for the partition. */
  validUntil: number
}

const isReason = (value: unknown): value is LeaveReason =>
  value === "stopping" || value === "reassigned" || value === "lease lost"

/** The previous holder from a take's row (runner null: the partition was never held). */
const previousOf = (runner: unknown, left: unknown): PreviousOwner | undefined =>
  typeof runner === "string" ? { runner, left: isReason(left) ? left : null } : undefined

/**
 * One reserved connection, named `name`, taken again after any failure or timeout (a silent socket must not hold the
 * renewals up), one statement at a time.
 */
const leaseConnection = (sql: SqlClient.SqlClient, name: string) =>
  Effect.gen(function*() {
    const outer = yield* Effect.scope
    const mutex = yield* Effect.makeSemaphore(1)
    let current: { readonly conn: Connection; readonly scope: Scope.CloseableScope } | undefined
    const reserve = Effect.gen(function*() {
      const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
      const conn = yield* Effect.tapError(Scope.extend(sql.reserve, scope), () => Scope.close(scope, Exit.void))
      current = { conn, scope }
      yield* conn.executeRaw(`SET application_name = '${name.replaceAll("'", "''")}'`, [])
      // A take or renewal waiting on a row lock (a flush under way, or one whose runner went silent mid-transaction)
      // fails after 1 s rather than holding up every other lease operation of this runner.
      yield* conn.executeRaw("SET lock_timeout = '1s'", [])
      return conn
    })
    const giveUp = Effect.suspend(() => {
      const given = current
      current = undefined
      return given === undefined ? Effect.void : Scope.close(given.scope, Exit.void)
    })
    return (text: string, params: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<ReadonlyArray<unknown>>, SqlError> =>
      mutex.withPermits(1)(
        Effect.suspend(() => current === undefined ? reserve : Effect.succeed(current.conn)).pipe(
          Effect.flatMap((conn) => conn.executeValues(text, params)),
          Effect.timeoutFail({
            duration: OPERATION_TIMEOUT,
            onTimeout: () => new SqlError({ message: `a lease operation took longer than ${Duration.format(OPERATION_TIMEOUT)}` })
          }),
          Effect.tapErrorCause(() => giveUp)
        )
      )
  })

const INTERVAL = `interval '${LEASE_MILLIS} milliseconds'`

/**
 * The lease table in Postgres: renewals on a connection of their own (`<name> leases`), so that they never wait behind
 * takes (a runner asked for many partitions it cannot take yet tries them often); takes and releases on another
 * (`<name> lease takes`); the fence on the connection of the transaction it runs in.
 */
export const pgLeaseRows = (sql: SqlClient.SqlClient, name: string): Effect.Effect<LeaseRows, never, Scope.Scope> =>
  Effect.zipWith(leaseConnection(sql, `${name} leases`), leaseConnection(sql, `${name} lease takes`), (renewOn, run): LeaseRows => ({
    // `previous` reads the row as it was before the update (the move log's "from whom and why"); a take that lands
    // forgets the flush records of all but the last FLUSH_EPOCHS_KEPT epochs before its own.
    take: (partition, holder, runner) =>
      Effect.map(
        run(
          `WITH previous AS (SELECT runner, left_because FROM ${LEASES_TABLE} WHERE partition = $1),
             taken AS (UPDATE ${LEASES_TABLE} SET runner = $2, holder = $3, epoch = epoch + 1, since = $4,
                 left_because = NULL, expires_at = clock_timestamp() + ${INTERVAL}
               WHERE partition = $1 AND expires_at <= clock_timestamp()
               RETURNING epoch),
             forgotten AS (DELETE FROM ${FLUSHES_TABLE}
               WHERE partition = $1 AND epoch < (SELECT epoch FROM taken) - ${FLUSH_EPOCHS_KEPT})
           SELECT epoch, (SELECT runner FROM previous), (SELECT left_because FROM previous) FROM taken`,
          [partition, runner, holder, Date.now()]
        ),
        (rows) => rows[0] === undefined ? undefined : { epoch: Number(rows[0][0]), previous: previousOf(rows[0][1], rows[0][2]) }
      ),
    renew: (holder, partitions) =>
      Effect.map(
        renewOn(
          `UPDATE ${LEASES_TABLE} SET expires_at = clock_timestamp() + ${INTERVAL}
           WHERE holder = $1 AND partition = ANY($2::smallint[]) RETURNING partition, epoch`,
          [holder, partitions]
        ),
        (rows) => new Map(rows.map((row) => [Number(row[0]), Number(row[1])]))
      ),
    release: (partition, holder, epoch, why) =>
      Effect.asVoid(run(
        `UPDATE ${LEASES_TABLE} SET expires_at = '-infinity', left_because = $4
         WHERE partition = $1 AND holder = $2 AND epoch = $3`,
        [partition, holder, epoch, why]
      )),
    fence: (partition, holder, epoch, flush) =>
      Effect.map(
        sql.unsafe(
          `WITH ours AS (SELECT 1 FROM ${LEASES_TABLE} WHERE partition = $1 AND holder = $2 AND epoch = $3 FOR SHARE)
           INSERT INTO ${FLUSHES_TABLE} (partition, epoch, flushed) SELECT $1, $3, $4 FROM ours
           ON CONFLICT (partition, epoch) DO UPDATE SET flushed = GREATEST(${FLUSHES_TABLE}.flushed, excluded.flushed)
           RETURNING 1`,
          [partition, holder, epoch, flush]
        ).values,
        (rows) => rows.length === 1
      ),
    flushedUnder: (partition, epoch) =>
      Effect.map(
        sql.unsafe(`SELECT flushed FROM ${FLUSHES_TABLE} WHERE partition = $1 AND epoch = $2`, [partition, epoch]).values,
        (rows) => rows[0] === undefined ? 0 : Number(rows[0][0])
      )
  }))

/**
 * This process's leases over `rows`: `holder` is unique to the process, `runner` its address. Validity is judged by
 * the `Clock` in context (monotonic when live).
 */
export const makePartitionLeases = (
  options: { readonly rows: LeaseRows; readonly runner: string; readonly holder: string }
): Effect.Effect<PartitionLeases> =>
  Effect.map(Effect.clock, (clock) => {
    const { holder, rows, runner } = options
    const now = () => Number(clock.unsafeCurrentTimeNanos() / 1_000_000n)
    // `isValid` is asked for every retain a runner counts itself: the clock is read once per task (a read costs about
    // as much as counting the retain), and a task that starts after a freeze reads it anew.
    const taskNow = oncePerTask(now)
    const held = new Map<number, Held>()
    let renewedSignal = Deferred.unsafeMake<void>(FiberId.none)
    const validFrom = (sentAt: number) => sentAt + LEASE_MILLIS - SAFETY_MARGIN_MILLIS

    const tryAcquire = (partition: number) =>
      Effect.suspend(() => {
        const sentAt = now()
        return Effect.tap(rows.take(partition, holder, runner), (taken) => {
          if (taken !== undefined) held.set(partition, { epoch: taken.epoch, validUntil: validFrom(sentAt) })
        })
      })

    /** Judges a renewal's answer: proven leases last longer, the ones another runner took are lost. */
    const judge = (asked: ReadonlyArray<{ partition: number; lease: Held }>, sentAt: number, epochs: Map<number, number>) => {
      const lost: Array<LostLease> = []
      for (const { lease, partition } of asked) {
        // Released or taken again while the renewal was on its way: the answer is not about this lease.
        if (held.get(partition) !== lease) continue
        if (epochs.get(partition) === lease.epoch) lease.validUntil = Math.max(lease.validUntil, validFrom(sentAt))
        else {
          held.delete(partition)
          lost.push({ partition, epoch: lease.epoch })
        }
      }
      const signal = renewedSignal
      renewedSignal = Deferred.unsafeMake<void>(FiberId.none)
      Deferred.unsafeDone(signal, Exit.void)
      return lost
    }

    const renew = Effect.suspend(() => {
      const asked = Array.from(held, ([partition, lease]) => ({ partition, lease }))
      if (asked.length === 0) return Effect.succeed([])
      const sentAt = now()
      return Effect.map(rows.renew(holder, asked.map(({ partition }) => partition)), (epochs) => judge(asked, sentAt, epochs))
    })

    const release = (partition: number, why: LeaveReason) =>
      Effect.suspend(() => {
        const lease = held.get(partition)
        if (lease === undefined) return Effect.void
        held.delete(partition)
        return Effect.retry(rows.release(partition, holder, lease.epoch, why), RELEASE_RETRIES)
      })

    return {
      runner,
      tryAcquire,
      renew,
      release,
      isValid: (partition) => (held.get(partition)?.validUntil ?? 0) > taskNow(),
      fence: (partition, epoch, flush) => rows.fence(partition, holder, epoch, flush),
      flushedUnder: rows.flushedUnder,
      renewed: Effect.suspend(() => Deferred.await(renewedSignal))
    }
  })
