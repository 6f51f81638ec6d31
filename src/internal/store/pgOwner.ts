/**
 * One single-node service per Postgres database: the store's owner holds a session advisory lock on a connection of
 * its own, kept for the owner's life, and the next one to try is refused at once, told who holds it (from `pg_locks`
 * and `pg_stat_activity`, which name the holder's connection: `effect-compile-trigger pid … on …`). Cluster mode,
 * where several runners share a database by design, does not take it.
 *
 * A session lock lives as long as its connection: Postgres frees it as soon as the owner's process dies (however it
 * dies). A connection lost while the owner lives (a Postgres restart) loses the lock with it; the owner looks every few
 * seconds, and before every save, and takes it again, and says so in the log. If another service took it meanwhile,
 * saves fail (the write-behind keeps the changes and retries, the store reads unhealthy) until the lock is back: two
 * owners never both write.
 *
 * @internal
 */
import { PgClient } from "@effect/sql-pg"
import type { Connection } from "@effect/sql/SqlConnection"
import { Context, Duration, Effect, Exit, Layer, Redacted, Schedule, Scope } from "effect"
import { hostname } from "node:os"
import { bankStoreError, BankStoreError, type BankStateStoreService, describeDatabase } from "../../BankStateStore.js"

/** The lock's first key ("ECT0"): a key space of its own (cluster mode's partition locks are "ECT1", its shards single keys). */
const OWNER_CLASS = 0x45435430
const LOCK = `${OWNER_CLASS}, 0`
const LOCK_ROW = `locktype = 'advisory' AND granted AND classid = ${OWNER_CLASS} AND objid = 0 AND objsubid = 2`

/** How often the owner makes sure it still holds the lock. */
const KEEP_INTERVAL = Duration.seconds(5)
/** A start retries this long: a killed owner's session may take a moment to end (Postgres sees its socket close). */
const TAKE_RETRIES = Schedule.intersect(Schedule.spaced(Duration.millis(250)), Schedule.recurs(4))

/** The owner's connection name, which is how the next start learns who holds the database. */
export const ownerName = (): string => `effect-compile-trigger pid ${process.pid} on ${hostname()}`

interface Held {
  readonly conn: Connection
  /** Unlocks (when the connection still works) and gives the connection back. */
  readonly release: Effect.Effect<void>
}

/** A reserved connection holding the lock, or undefined when another session holds it. */
const take = (sql: PgClient.PgClient): Effect.Effect<Held | undefined, unknown> =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const exit = yield* Effect.exit(Scope.extend(sql.reserve, scope))
    if (Exit.isFailure(exit)) return yield* Effect.zipRight(Scope.close(scope, Exit.void), Effect.failCause(exit.cause))
    const conn = exit.value
    const locked = yield* Effect.tapErrorCause(
      conn.executeValues(`SELECT pg_try_advisory_lock(${LOCK})`, []),
      () => Scope.close(scope, Exit.void)
    )
    if (locked[0]?.[0] !== true) return yield* Effect.as(Scope.close(scope, Exit.void), undefined)
    const unlock = conn.executeRaw(`SELECT pg_advisory_unlock(${LOCK})`, []).pipe(
      Effect.interruptible,
      Effect.timeout(Duration.seconds(2)),
      Effect.ignore
    )
    return { conn, release: Effect.zipRight(unlock, Scope.close(scope, Exit.void)) }
  })

/** Who holds the lock, as far as this session may see (`pg_stat_activity` hides other users' sessions' details). */
const holder = (sql: PgClient.PgClient): Effect.Effect<string> =>
  sql.unsafe<{ application_name: string | null; client: string | null; pid: number | null }>(
    `SELECT a.application_name, host(a.client_addr) AS client, l.pid FROM pg_locks l ` +
      `LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.${LOCK_ROW.replaceAll(" AND ", " AND l.")} ` +
      "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
  ).pipe(
    Effect.map((rows) => {
      const row = rows[0]
      if (row === undefined) return "another service (it just let go)"
      const name = row.application_name === null || row.application_name === "" ? "" : `"${row.application_name}", `
      return `${name}Postgres session ${row.pid ?? "?"}${row.client === null ? "" : ` from ${row.client}`}`
    }),
    Effect.orElseSucceed(() => "another service (its session could not be read)")
  )

const refusal = (url: string, who: string) =>
  new BankStoreError({
    operation: "open",
    message: `the Postgres database ${describeDatabase(url)} is in use by another single-node service (${who}): ` +
      "one single-node service per database; to run several on one database, use cluster mode " +
      "(CLUSTER_RUNNER_ADDRESS, docs/cluster.md)"
  })

/**
 * Whether this owner holds the lock now: looked at on its connection, or taken again on a new one (logged); fails
 * when Postgres cannot be asked (a save would fail the same way). One look at a time (the keeper's and the saves'
 * share the connection).
 */
const keeper = (sql: PgClient.PgClient, url: string, first: Held, own: (held: Held | undefined) => void) => {
  let held: Held | undefined = first
  let lostLogged = false
  const serially = Effect.unsafeMakeSemaphore(1).withPermits(1)
  // Held, lost (the connection failed, or the lock is not in `pg_locks`), or unknown (no answer in time: next round).
  const look = (current: Held): Effect.Effect<"held" | "lost" | "unknown"> =>
    current.conn.executeValues(`SELECT EXISTS (SELECT 1 FROM pg_locks WHERE ${LOCK_ROW} AND pid = pg_backend_pid())`, [])
      .pipe(
        Effect.map((rows) => rows[0]?.[0] === true ? "held" as const : "lost" as const),
        Effect.timeoutTo({ duration: KEEP_INTERVAL, onTimeout: () => "unknown" as const, onSuccess: (found) => found }),
        Effect.orElseSucceed(() => "lost" as const)
      )
  const retake = Effect.gen(function*() {
    own(held = undefined)
    const again = yield* take(sql)
    own(held = again)
    if (again !== undefined) {
      lostLogged = false
      return yield* Effect.logWarning("bank state: the Postgres single-node lock went with its connection; taken again")
    }
    const who = yield* holder(sql)
    if (lostLogged || who.includes(ownerName())) return
    lostLogged = true
    yield* Effect.logError(`bank state: lost the single-node lock: ${refusal(url, who).message}`)
  })
  const ensure = Effect.gen(function*() {
    if (held !== undefined) {
      const found = yield* look(held)
      if (found !== "lost") return true
      yield* held.release
    }
    yield* retake
    return held !== undefined
  }).pipe(Effect.mapError(bankStoreError("save")), serially)
  const loop = ensure.pipe(Effect.catchAllCause(() => Effect.void), Effect.delay(KEEP_INTERVAL), Effect.forever)
  return { ensure, loop }
}

/**
 * Holds the database at `url` for single-node use for the scope, on a connection pool of its own (named
 * `ownerName()`). Fails with a `BankStoreError` naming the holder when another service holds it. Gives back the check
 * a save runs first: whether the lock is still held (or taken again).
 */
export const ownPgStore = (
  url: Redacted.Redacted
): Effect.Effect<Effect.Effect<boolean, BankStoreError>, BankStoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const text = Redacted.value(url)
    // Two connections: the lock's, and one for an interrupted query's cancel request.
    const context = yield* Layer.build(PgClient.layer({ url, maxConnections: 2, applicationName: ownerName() })).pipe(
      Effect.mapError(bankStoreError("open"))
    )
    const sql = Context.get(context, PgClient.PgClient)
    const first = yield* take(sql).pipe(
      Effect.flatMap((held) => held === undefined ? Effect.fail("held" as const) : Effect.succeed(held)),
      Effect.retry({ while: (error) => error === "held", schedule: TAKE_RETRIES }),
      Effect.catchAll((error) =>
        error === "held"
          ? Effect.flatMap(holder(sql), (who) => Effect.fail(refusal(text, who)))
          : Effect.fail(bankStoreError("open")(error))
      )
    )
    let current: Held | undefined = first
    yield* Effect.addFinalizer(() => Effect.suspend(() => current?.release ?? Effect.void))
    const { ensure, loop } = keeper(sql, text, first, (held) => (current = held))
    yield* Effect.forkScoped(loop)
    return ensure
  })

/**
 * `store` with every save run only while `holds` says the lock is this owner's: otherwise it fails, and the
 * write-behind keeps the changes until the lock is back.
 */
export const fencedBySingleNodeLock = (
  store: BankStateStoreService,
  holds: Effect.Effect<boolean, BankStoreError>,
  url: string
): BankStateStoreService => {
  const heldElsewhere = new BankStoreError({
    operation: "save",
    message: `another single-node service holds the Postgres database ${describeDatabase(url)} now: ` +
      "this one's changes are not written until its lock is back"
  })
  const whileHeld = <A>(write: Effect.Effect<A, BankStoreError>) =>
    Effect.flatMap(holds, (held) => held ? write : Effect.fail(heldElsewhere))
  const { saveBudget } = store
  return {
    ...store,
    save: (banks) => whileHeld(store.save(banks)),
    ...(saveBudget === undefined ? {} : { saveBudget: (budget) => whileHeld(saveBudget(budget)) })
  }
}
