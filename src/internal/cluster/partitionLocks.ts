/**
 * The fence under cluster mode's partitions: a partition's queue runs on a runner only while that runner holds the
 * partition's own Postgres advisory lock, on one connection the runner keeps for it. The cluster's shard lock says
 * which runner *should* run a partition; this lock makes sure the previous one has stopped (and flushed) first — the
 * shard lock alone does not, see `partitionSlots.ts`.
 *
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Connection } from "@effect/sql/SqlConnection"
import { Clock, Duration, Effect, ExecutionStrategy, Exit, Scope } from "effect"

/** The partition locks of one runner. Each call is one round trip on the runner's lock connection. */
export interface PartitionLocks {
  /** Takes the partition's lock if no other runner holds it; true when this runner holds it now. */
  readonly tryAcquire: (partition: number) => Effect.Effect<boolean, SqlError>
  readonly release: (partition: number) => Effect.Effect<void, SqlError>
  /**
   * True when this runner holds the partition's lock, taking it again if it was lost with a connection (a Postgres
   * restart ends every session) and no other runner took it meanwhile. Never takes a lock it holds already: a session
   * lock taken twice would need two unlocks.
   */
  readonly ensure: (partition: number) => Effect.Effect<boolean, SqlError>
  /** The partitions whose locks this runner's connection holds, as Postgres sees them. */
  readonly held: Effect.Effect<ReadonlySet<number>, SqlError>
}

/**
 * The first key of the two-key advisory locks (`pg_try_advisory_lock(int, int)`, a key space apart from the single-key
 * locks the cluster takes for its shards); the second key is the partition.
 */
const LOCK_CLASS = 0x45435431 // "ECT1"

/**
 * After its lock connection failed, a runner takes no partition it does not run for this long once it is connected
 * again. A Postgres restart frees every lock at once: the runners that ran the partitions (their queues may hold
 * changes not yet stored) take theirs again first, within a reconcile pass or a flush retry.
 */
const RECONNECT_GRACE_MILLIS = 3_000

/** The partition locks this session holds. */
const heldQuery = "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 " +
  `AND classid = ${LOCK_CLASS} AND pid = pg_backend_pid()`

/**
 * The locks on a connection reserved for them. Session locks: they go with the connection, so a killed runner's
 * partitions are free as soon as Postgres sees its socket close. After a failed call the connection is given up (its
 * locks released first, in case it still works) and the next call reserves another: the runner's `held` is then
 * empty, and the partitions it ran are cut off at the next reconcile.
 */
export const pgPartitionLocks: Effect.Effect<PartitionLocks, never, SqlClient.SqlClient | Scope.Scope> = Effect.gen(
  function*() {
    const sql = yield* SqlClient.SqlClient
    const outer = yield* Effect.scope
    const mutex = yield* Effect.makeSemaphore(1)
    let current: { readonly conn: Connection; readonly scope: Scope.CloseableScope } | undefined
    /** A connection was given up after a failure: the next one starts the grace. */
    let lost = false
    let graceUntil = 0
    const reserve = Effect.gen(function*() {
      const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
      const conn = yield* Effect.tapError(Scope.extend(sql.reserve, scope), () => Scope.close(scope, Exit.void))
      yield* Scope.addFinalizer(
        scope,
        conn.executeRaw("SELECT pg_advisory_unlock_all()", []).pipe(
          Effect.interruptible,
          Effect.timeout(Duration.seconds(2)),
          Effect.ignore
        )
      )
      current = { conn, scope }
      if (lost) graceUntil = (yield* Clock.currentTimeMillis) + RECONNECT_GRACE_MILLIS
      lost = false
      return conn
    })
    const giveUp = Effect.suspend(() => {
      const given = current
      current = undefined
      lost = true
      return given === undefined ? Effect.void : Scope.close(given.scope, Exit.void)
    })
    const onConnection = <A>(f: (conn: Connection) => Effect.Effect<A, SqlError>) =>
      mutex.withPermits(1)(
        Effect.suspend(() => current === undefined ? reserve : Effect.succeed(current.conn)).pipe(
          Effect.flatMap(f),
          Effect.tapError(() => giveUp)
        )
      )
    return {
      tryAcquire: (partition) =>
        onConnection((conn) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            now < graceUntil ? Effect.succeed(false) : Effect.map(
              conn.executeValues(`SELECT pg_try_advisory_lock(${LOCK_CLASS}, ${partition})`, []),
              (rows) => rows[0]?.[0] === true
            ))
        ),
      ensure: (partition) =>
        onConnection((conn) =>
          Effect.map(
            conn.executeValues(
              `SELECT CASE WHEN EXISTS (${heldQuery} AND objid = ${partition}) THEN true ` +
                `ELSE pg_try_advisory_lock(${LOCK_CLASS}, ${partition}) END`,
              []
            ),
            (rows) => rows[0]?.[0] === true
          )
        ),
      release: (partition) =>
        onConnection((conn) => Effect.asVoid(conn.executeRaw(`SELECT pg_advisory_unlock(${LOCK_CLASS}, ${partition})`, []))),
      held: onConnection((conn) =>
        Effect.map(
          conn.executeValues(heldQuery, []),
          (rows) => new Set(rows.map((row) => Number(row[0])))
        )
      )
    }
  }
)
