/**
 * Where the queue keeps bank state across restarts. The queue's hot path stays in memory; changed banks are written
 * behind in batches (`flushInterval`) and read back once at start.
 *
 * @since 0.1.0
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { Cause, Clock, Config, type ConfigError, Context, Effect, Layer, Option, Redacted, Schema } from "effect"
import { join } from "node:path"
import { BankStatus } from "./BankCompileState.js"
import { BankPolicy } from "./BankPolicy.js"
import type { DirtyScopesRow } from "./DirtyScopes.js"
import { scopesColumn, scopesFromColumn } from "./internal/core/dirtyScopes.js"
import { importLayer } from "./internal/service/optionalPeers.js"

/**
 * One bank as stored. Times are epoch milliseconds; `status` "pending" or "running" means the bank still needs a
 * compile and is queued again on restore (a compile cut off by a crash runs again: at-least-once).
 *
 * @since 0.1.0
 */
export interface PersistedBank {
  readonly bankId: string
  readonly memories: number
  readonly lastCompileAt: number | null
  readonly firstRetainAt: number | null
  readonly consecutiveFailures: number
  readonly lastError: string | null
  readonly status: BankStatus
  /** Memories forgotten since the last compile (absent: 0). */
  readonly forgets?: number | undefined
  /** The bank's own settings (absent: none). */
  readonly policy?: BankPolicy | null | undefined
  /** The bank's own token bucket, when it is not full: its level and the time of that level (absent: full). */
  readonly budget?: StoredLevel | null | undefined
  /**
   * When the oldest memory no compile consumed arrived (absent or null: none, or a row stored before it was kept —
   * then the reference time stands in for it).
   */
  readonly oldestMemoryAt?: number | null | undefined
  /** The sum over those memories of (retain time − `oldestMemoryAt`), in milliseconds (absent: 0). */
  readonly memoryWaitSum?: number | undefined
  /** The scopes its writes named since a compile consumed them (absent or null: none). */
  readonly scopes?: DirtyScopesRow | null | undefined
}

/**
 * A bucket level (tokens or compiles, may be negative or fractional) and the time it was measured (epoch millis):
 * refilled from then on at load, so a restart does not refill a spent budget.
 *
 * @since 0.1.0
 */
export interface StoredLevel {
  readonly level: number
  readonly at: number
  /**
   * The limit the level was measured against (absent in rows stored before limits were): with it, a restart under
   * another limit keeps what was spent (`capacity - level`), so a raised limit gives its new headroom at once.
   */
  readonly capacity?: number | undefined
}

/**
 * The global budget's levels as stored (`null`: that limit was off).
 *
 * @since 0.1.0
 */
export interface PersistedBudget {
  readonly tokens: StoredLevel | null
  readonly compiles: StoredLevel | null
}

/**
 * The store could not be opened, read or written.
 *
 * @since 0.1.0
 */
export class BankStoreError extends Schema.TaggedError<BankStoreError>()("BankStoreError", {
  operation: Schema.Literal("open", "load", "save"),
  message: Schema.String
}) {}

/**
 * @since 0.1.0
 */
export interface BankStateStoreService {
  /** Every stored bank. */
  readonly load: Effect.Effect<ReadonlyArray<PersistedBank>, BankStoreError>
  /** Inserts or replaces these banks, all or nothing. */
  readonly save: (banks: ReadonlyArray<PersistedBank>) => Effect.Effect<void, BankStoreError>
  /** The global budget's levels (absent method or `null`: none stored; the budget starts full). */
  readonly loadBudget?: Effect.Effect<PersistedBudget | null, BankStoreError> | undefined
  /** Replaces the global budget's levels. A store without it keeps only per-bank levels. */
  readonly saveBudget?: ((budget: PersistedBudget) => Effect.Effect<void, BankStoreError>) | undefined
  /**
   * The owner generation this store was opened under (a non-negative integer): higher at every open of the same
   * data, it is the `epoch` of the fencing tokens of the queue built on the store. The SQL stores count their opens
   * in the database; the in-memory store uses the time it was opened, in epoch milliseconds. Absent, the queue uses
   * the time it was built: its tokens then increase across restarts only as far as the clock does.
   */
  readonly epoch?: number | undefined
}

const TABLE = "compile_trigger_banks"
/** The global budget's levels: one row per limited bucket ("tokens", "compiles"). */
const BUDGET_TABLE = "compile_trigger_budget"
/** The owner generation: one row, counting the store's opens (see `BankStateStoreService.epoch`). */
const GENERATION_TABLE = "compile_trigger_owner_generation"
/** Rows per INSERT: 14 parameters a row stays under SQLite's 32,766 and Postgres' 65,535 parameter limits. */
const BATCH = 1000

const ownMessage = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "object" && error !== null && "message" in error
    ? String(error.message)
    : String(error)

/**
 * The error's message, and its cause's (the driver's own words: "database or disk is full", "ECONNREFUSED") when
 * @effect/sql wrapped one in a message of its own ("Failed to acquire connection").
 */
const errorMessage = (error: unknown): string => {
  const own = ownMessage(error)
  const cause = typeof error === "object" && error !== null && "cause" in error ? error.cause : undefined
  if (typeof cause !== "object" || cause === null) return own
  const detail = ownMessage(cause) || String((cause as { readonly code?: unknown }).code ?? "")
  return detail === "" || own.includes(detail) ? own : `${own}: ${detail}`
}

const storeError = (operation: BankStoreError["operation"]) => (error: unknown) =>
  new BankStoreError({ operation, message: errorMessage(error) })

// Postgres returns BIGINT as a string; SQLite returns numbers.
const toNumber = (value: unknown): number | null =>
  value === null || value === undefined ? null : typeof value === "number" ? value : Number(value)

const isStatus = Schema.is(BankStatus)

const PolicyJson = Schema.parseJson(BankPolicy)
const decodePolicyJson = Schema.decodeUnknownOption(PolicyJson)
const encodePolicyJson = Schema.encodeSync(PolicyJson)

/** A policy column: JSON text, or NULL for none. */
const policyColumn = (bank: PersistedBank): string | null =>
  bank.policy === undefined || bank.policy === null ? null : encodePolicyJson(bank.policy)

/** An unreadable policy column (edited by hand?) loads as `undefined`: the caller warns and drops it. */
const policyFromColumn = (value: unknown): BankPolicy | null | undefined =>
  typeof value === "string" ? Option.getOrUndefined(decodePolicyJson(value)) : null

/** Decodes one row by hand: a million rows must load in seconds, not minutes. */
const fromRow = (row: Record<string, unknown>): PersistedBank | undefined => {
  const bank = bankFromRow(row)
  if (bank === undefined) return undefined
  const budget = levelFrom(row.budget_level, row.budget_at, row.budget_capacity)
  const scopes = scopesFromColumn(row.scopes)
  if (scopes !== null) return budget === null ? { ...bank, scopes } : { ...bank, budget, scopes }
  return budget === null ? bank : { ...bank, budget }
}

const bankFromRow = (row: Record<string, unknown>): PersistedBank | undefined => {
  const bankId = row.bank_id
  const memories = toNumber(row.memories)
  const failures = toNumber(row.consecutive_failures)
  const status = row.status
  const forgets = toNumber(row.forgets)
  if (typeof bankId !== "string" || bankId.length === 0 || memories === null || !(memories >= 0)) return undefined
  return {
    bankId,
    memories,
    lastCompileAt: toNumber(row.last_compile_at),
    firstRetainAt: toNumber(row.first_retain_at),
    consecutiveFailures: failures !== null && failures >= 0 ? failures : 0,
    lastError: typeof row.last_error === "string" ? row.last_error : null,
    status: isStatus(status) ? status : "idle",
    forgets: forgets !== null && forgets >= 0 ? forgets : 0,
    policy: policyFromColumn(row.policy),
    oldestMemoryAt: finiteOrNull(row.oldest_memory_at),
    memoryWaitSum: finiteOrNull(row.memory_wait_sum) ?? 0
  }
}

const finiteOrNull = (value: unknown): number | null => {
  const number = toNumber(value)
  return number !== null && Number.isFinite(number) ? number : null
}

/** A stored level and its time (null unless both are readable numbers), and its limit when one was stored. */
const levelFrom = (level: unknown, at: unknown, capacity: unknown): StoredLevel | null => {
  const value = toNumber(level)
  const time = toNumber(at)
  if (value === null || !Number.isFinite(value) || time === null || !Number.isFinite(time)) return null
  const limit = toNumber(capacity)
  return limit !== null && limit > 0 && Number.isFinite(limit) ? { level: value, at: time, capacity: limit } : { level: value, at: time }
}

/**
 * Rows of the banks table as banks; an unreadable policy loads as none, with one warning.
 *
 * @internal
 */
export const decodeRows = (rows: ReadonlyArray<Record<string, unknown>>): Effect.Effect<Array<PersistedBank>> => {
  const banks: Array<PersistedBank> = []
  let unreadablePolicies = 0
  for (const row of rows) {
    const bank = fromRow(row)
    if (bank === undefined) continue
    if (bank.policy === undefined) {
      unreadablePolicies++
      banks.push({ ...bank, policy: null })
    } else banks.push(bank)
  }
  return unreadablePolicies === 0 ? Effect.succeed(banks) : Effect.as(
    Effect.logWarning(`the stored policy of ${unreadablePolicies} bank(s) is unreadable: those banks load with no policy`),
    banks
  )
}

/** @internal */
export const BANKS_TABLE = TABLE

/** @internal */
export const bankStoreError = storeError

/** @internal */
export const describeError = errorMessage

/**
 * `host:port/database` of a Postgres URL, for logs and errors: never its user or password.
 *
 * @internal
 */
export const describeDatabase = (url: string): string => {
  try {
    const parsed = new URL(url)
    return `${parsed.host || "localhost"}${parsed.pathname === "/" ? "" : parsed.pathname}`
  } catch {
    return "(an unparsable URL)"
  }
}

const migrations = Migrator.fromRecord({
  "1_create_banks": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`CREATE TABLE ${sql(TABLE)} (
      bank_id TEXT PRIMARY KEY,
      memories BIGINT NOT NULL,
      last_compile_at BIGINT,
      first_retain_at BIGINT,
      consecutive_failures INTEGER NOT NULL,
      last_error TEXT,
      status TEXT NOT NULL
    )`),
  // Old databases keep their rows: every bank starts with no forgets and no policy.
  "2_policy_and_forgets": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.zipRight(
      sql`ALTER TABLE ${sql(TABLE)} ADD COLUMN forgets BIGINT NOT NULL DEFAULT 0`,
      sql`ALTER TABLE ${sql(TABLE)} ADD COLUMN policy TEXT`
    )),
  // Spent budget survives restarts: each bank's own bucket level (NULL: full) and the global levels.
  "3_budget": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.all([
      sql`ALTER TABLE ${sql(TABLE)} ADD COLUMN budget_level DOUBLE PRECISION`,
      sql`ALTER TABLE ${sql(TABLE)} ADD COLUMN budget_at BIGINT`,
      sql`CREATE TABLE ${sql(BUDGET_TABLE)} (
        bucket TEXT PRIMARY KEY,
        level DOUBLE PRECISION NOT NULL,
        at BIGINT NOT NULL
      )`
    ], { discard: true })),
  // Each level with the limit it was measured against: a restart under a raised limit keeps what was spent, not the
  // level. Rows stored before keep NULL (their level is kept, cut to the limit).
  "4_budget_limits": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.all([
      sql`ALTER TABLE ${sql(TABLE)} ADD COLUMN budget_capacity DOUBLE PRECISION`,
      sql`ALTER TABLE ${sql(BUDGET_TABLE)} ADD COLUMN capacity DOUBLE PRECISION`
    ], { discard: true })),
  // The fencing tokens' epoch: counted up at every open. A database that had the table already keeps its count.
  "5_owner_generation": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.zipRight(
      sql`CREATE TABLE IF NOT EXISTS ${sql(GENERATION_TABLE)} (
        id INTEGER PRIMARY KEY,
        generation BIGINT NOT NULL
      )`,
      sql`INSERT INTO ${sql(GENERATION_TABLE)} (id, generation) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`
    )),
  // Freshness deadlines survive restarts: each bank's oldest uncompiled memory and the wait sum of its memories.
  // Rows stored before keep NULL / 0 (the reference time stands in for the oldest memory).
  "6_max_wait": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.zipRight(
      sql`ALTER TABLE ${sql(TABLE)} ADD COLUMN oldest_memory_at BIGINT`,
      sql`ALTER TABLE ${sql(TABLE)} ADD COLUMN memory_wait_sum DOUBLE PRECISION NOT NULL DEFAULT 0`
    )),
  // Each bank's dirty scopes, JSON text (NULL: none). Idempotent: SQLite has no ADD COLUMN IF NOT EXISTS.
  "7_dirty_scopes": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.onDialectOrElse({
      pg: () => Effect.asVoid(sql.unsafe(`ALTER TABLE ${TABLE} ADD COLUMN IF NOT EXISTS scopes TEXT`)),
      orElse: () =>
        Effect.flatMap(
          sql<{ name: string }>`SELECT name FROM pragma_table_info(${TABLE}) WHERE name = 'scopes'`,
          (found) =>
            found.length > 0 ? Effect.void : Effect.asVoid(sql.unsafe(`ALTER TABLE ${TABLE} ADD COLUMN scopes TEXT`))
        )
    }))
})

/**
 * Counts this open in the database and returns the new owner generation. One statement: two opens racing (no
 * single-owner lock on a plain `SqlClient`) still get two different generations.
 */
const nextGeneration = (sql: SqlClient.SqlClient): Effect.Effect<number, BankStoreError> =>
  sql<{ generation: unknown }>`UPDATE ${sql(GENERATION_TABLE)} SET generation = generation + 1 WHERE id = 1
    RETURNING generation`.pipe(
    Effect.mapError(storeError("open")),
    Effect.flatMap((rows) => {
      const generation = toNumber(rows[0]?.generation)
      return generation !== null && Number.isSafeInteger(generation) && generation > 0
        ? Effect.succeed(generation)
        : Effect.fail(new BankStoreError({ operation: "open", message: `${GENERATION_TABLE} has no readable generation row` }))
    })
  )

/**
 * A store that keeps what it was given in memory: for tests, and to see what would be persisted.
 *
 * @since 0.1.0
 */
export const makeMemory: Effect.Effect<BankStateStoreService> = Effect.map(Clock.currentTimeMillis, (openedAt) => {
  const rows = new Map<string, PersistedBank>()
  let budget: PersistedBudget | null = null
  return {
    epoch: Math.floor(openedAt),
    load: Effect.sync(() => Array.from(rows.values())),
    save: (banks) =>
      Effect.sync(() => {
        for (const bank of banks) rows.set(bank.bankId, bank)
      }),
    loadBudget: Effect.sync(() => budget),
    saveBudget: (levels) =>
      Effect.sync(() => {
        budget = levels
      })
  }
})

/** An upsert replaces every column of a bank already stored. */
const ON_CONFLICT = `ON CONFLICT (bank_id) DO UPDATE SET
        memories = excluded.memories,
        last_compile_at = excluded.last_compile_at,
        first_retain_at = excluded.first_retain_at,
        consecutive_failures = excluded.consecutive_failures,
        last_error = excluded.last_error,
        status = excluded.status,
        forgets = excluded.forgets,
        policy = excluded.policy,
        budget_level = excluded.budget_level,
        budget_at = excluded.budget_at,
        budget_capacity = excluded.budget_capacity,
        oldest_memory_at = excluded.oldest_memory_at,
        memory_wait_sum = excluded.memory_wait_sum,
        scopes = excluded.scopes`

/** One multi-row INSERT of these banks (at most `BATCH`: each row is fifteen parameters). */
const upsertRows = (sql: SqlClient.SqlClient, banks: ReadonlyArray<PersistedBank>) =>
  sql`INSERT INTO ${sql(TABLE)} ${
    sql.insert(banks.map((bank) => ({
      bank_id: bank.bankId,
      memories: bank.memories,
      last_compile_at: bank.lastCompileAt,
      first_retain_at: bank.firstRetainAt,
      consecutive_failures: bank.consecutiveFailures,
      last_error: bank.lastError,
      status: bank.status,
      forgets: bank.forgets ?? 0,
      policy: policyColumn(bank),
      budget_level: bank.budget?.level ?? null,
      budget_at: bank.budget?.at ?? null,
      budget_capacity: bank.budget?.capacity ?? null,
      oldest_memory_at: bank.oldestMemoryAt ?? null,
      memory_wait_sum: bank.memoryWaitSum ?? 0,
      scopes: scopesColumn(bank.scopes)
    })))
  } ${sql.literal(ON_CONFLICT)}`

// Postgres: one statement of fifteen array parameters, however many banks (multi-row VALUES cost 1.4 s per 100k).
const upsertUnnest = (sql: SqlClient.SqlClient, banks: ReadonlyArray<PersistedBank>) =>
  sql.unsafe(
    `INSERT INTO ${TABLE}
          (bank_id, memories, last_compile_at, first_retain_at, consecutive_failures, last_error, status, forgets, policy,
            budget_level, budget_at, budget_capacity, oldest_memory_at, memory_wait_sum, scopes)
        SELECT * FROM UNNEST(
          $1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::integer[], $6::text[], $7::text[], $8::bigint[], $9::text[],
          $10::float8[], $11::bigint[], $12::float8[], $13::bigint[], $14::float8[], $15::text[]
        )
        ${ON_CONFLICT}`,
    [
      banks.map((bank) => bank.bankId),
      banks.map((bank) => bank.memories),
      banks.map((bank) => bank.lastCompileAt),
      banks.map((bank) => bank.firstRetainAt),
      banks.map((bank) => bank.consecutiveFailures),
      banks.map((bank) => bank.lastError),
      banks.map((bank) => bank.status),
      banks.map((bank) => bank.forgets ?? 0),
      banks.map(policyColumn),
      banks.map((bank) => bank.budget?.level ?? null),
      banks.map((bank) => bank.budget?.at ?? null),
      banks.map((bank) => bank.budget?.capacity ?? null),
      banks.map((bank) => bank.oldestMemoryAt ?? null),
      banks.map((bank) => bank.memoryWaitSum ?? 0),
      banks.map((bank) => scopesColumn(bank.scopes))
    ]
  )

/** `save`: every bank in one transaction, all or nothing; Postgres in one statement, other databases in batches. */
const saveBanks = (sql: SqlClient.SqlClient) => (banks: ReadonlyArray<PersistedBank>) => {
  if (banks.length === 0) return Effect.void
  const saveAll = sql.onDialectOrElse({
    pg: () => Effect.asVoid(upsertUnnest(sql, banks)),
    orElse: () => {
      const batches: Array<ReadonlyArray<PersistedBank>> = []
      for (let from = 0; from < banks.length; from += BATCH) batches.push(banks.slice(from, from + BATCH))
      return Effect.forEach(batches, (batch) => upsertRows(sql, batch), { discard: true })
    }
  })
  return sql.withTransaction(saveAll).pipe(
    Effect.mapError(storeError("save"))
  )
}

/** `loadBudget`: the stored levels, or null when none were stored. */
const loadBudgetLevels = (sql: SqlClient.SqlClient) =>
  sql<Record<string, unknown>>`SELECT * FROM ${sql(BUDGET_TABLE)}`.pipe(
    Effect.map((rows): PersistedBudget | null => {
      if (rows.length === 0) return null
      const level = (bucket: string) => {
        const row = rows.find((row) => row.bucket === bucket)
        return row === undefined ? null : levelFrom(row.level, row.at, row.capacity)
      }
      return { tokens: level("tokens"), compiles: level("compiles") }
    }),
    Effect.mapError(storeError("load"))
  )

/** `saveBudget`: the table holds exactly the limited buckets' levels afterwards (a limit turned off loses its row). */
const saveBudgetLevels = (sql: SqlClient.SqlClient) => (budget: PersistedBudget) => {
  const rows = (["tokens", "compiles"] as const).flatMap((bucket) => {
    const level = budget[bucket]
    return level === null ? [] : [{ bucket, level: level.level, at: level.at, capacity: level.capacity ?? null }]
  })
  const clear = sql`DELETE FROM ${sql(BUDGET_TABLE)}`
  const write = rows.length === 0
    ? clear
    : Effect.zipRight(clear, sql`INSERT INTO ${sql(BUDGET_TABLE)} ${sql.insert(rows)}`)
  return sql.withTransaction(write).pipe(Effect.asVoid, Effect.mapError(storeError("save")))
}

/**
 * The one SQL implementation, on any `SqlClient` (SQLite and Postgres are tested). Migrates its schema first, then
 * counts this open in the database: the next owner generation, its `epoch`.
 *
 * @since 0.1.0
 */
export const makeSql: Effect.Effect<BankStateStoreService, BankStoreError, SqlClient.SqlClient> = Effect.gen(
  function*() {
    const sql = yield* SqlClient.SqlClient
    yield* Migrator.make({})({ loader: migrations, table: "compile_trigger_migrations" }).pipe(
      Effect.mapError(storeError("open"))
    )
    const epoch = yield* nextGeneration(sql)
    return {
      epoch,
      load: sql<Record<string, unknown>>`SELECT * FROM ${sql(TABLE)}`.pipe(
        Effect.flatMap(decodeRows),
        Effect.mapError(storeError("load"))
      ),
      save: saveBanks(sql),
      loadBudget: loadBudgetLevels(sql),
      saveBudget: saveBudgetLevels(sql)
    }
  }
)

/** Opening a database fails in many ways (a driver may even throw): one `BankStoreError` naming the cause. */
const openFailure = <A, E, R>(layer: Layer.Layer<A, E, R>): Layer.Layer<A, BankStoreError, R> =>
  Layer.catchAllCause(layer, (cause) => {
    const error = Cause.squash(cause)
    return Layer.fail(error instanceof BankStoreError ? error : storeError("open")(error))
  })

/**
 * The queue finds it in its context; without one the queue keeps state in memory only (the library default).
 *
 * @since 0.1.0
 */
export class BankStateStore extends Context.Tag("effect-compile-trigger/BankStateStore")<
  BankStateStore,
  BankStateStoreService
>() {
  /** Keeps saved banks in this process's memory: survives rebuilding the queue layer, not a restart. */
  static memory: Layer.Layer<BankStateStore> = Layer.effect(BankStateStore, makeMemory)

  /** On the `SqlClient` in context. */
  static sql: Layer.Layer<BankStateStore, BankStoreError, SqlClient.SqlClient> = Layer.effect(BankStateStore, makeSql)

  /** On the `SqlClient` this layer builds; any failure to open it is a `BankStoreError` naming the cause. */
  static fromClient = <E>(client: Layer.Layer<SqlClient.SqlClient, E>): Layer.Layer<BankStateStore, BankStoreError> =>
    openFailure(BankStateStore.sql.pipe(Layer.provide(client)))

  /**
   * Embedded SQLite in one file (its directory is created). Needs the optional peer `@effect/sql-sqlite-node`; the same
   * as `layer` from `effect-compile-trigger/SqliteBankStateStore`, which it imports when built.
   */
  static sqlite = (
    options: { readonly filename: string; readonly synchronous?: "normal" | "full" | undefined }
  ): Layer.Layer<BankStateStore, BankStoreError> =>
    importLayer(
      "the SQLite bank state store",
      ["@effect/sql-sqlite-node"],
      () => import("./SqliteBankStateStore.js"),
      (sqlite) => sqlite.layer(options),
      storeError("open")
    )

  /**
   * Postgres, for deployments that share state or want it off the host. Needs the optional peer `@effect/sql-pg`; the
   * same as `layer` from `effect-compile-trigger/PgBankStateStore`, which it imports when built.
   */
  static pg = (options: { readonly url: Redacted.Redacted }): Layer.Layer<BankStateStore, BankStoreError> =>
    importLayer(
      "the Postgres bank state store",
      ["@effect/sql-pg"],
      () => import("./PgBankStateStore.js"),
      (pg) => pg.layer(options),
      storeError("open")
    )

  /**
   * The service's choice: `DATABASE_URL=postgres://…` selects Postgres; otherwise SQLite at
   * `$DATA_DIR/compile-trigger.db` (`DATA_DIR` defaults to `./data`), synced to disk at every commit when
   * `ACK_MODE=durable`. Logs which one it opened. Only the chosen driver is loaded.
   */
  static layerConfig: Layer.Layer<BankStateStore, BankStoreError | ConfigError.ConfigError> = Layer.unwrapEffect(
    Effect.gen(function*() {
      const url = yield* Config.option(Config.redacted("DATABASE_URL"))
      if (Option.isSome(url)) {
        if (!/^postgres(ql)?:\/\//.test(Redacted.value(url.value))) {
          return Layer.fail(new BankStoreError({ operation: "open", message: "DATABASE_URL must be a postgres:// URL" }))
        }
        return BankStateStore.pg({ url: url.value }).pipe(
          Layer.tap(() => Effect.logInfo(`bank state: Postgres at ${describeDatabase(Redacted.value(url.value))}`))
        )
      }
      const dataDir = yield* Config.string("DATA_DIR").pipe(Config.withDefault("./data"))
      const filename = join(dataDir, "compile-trigger.db")
      // A durable acknowledgement is worth one only if the commit behind it is on disk.
      const ackMode = yield* Config.literal("memory", "durable")("ACK_MODE").pipe(Config.withDefault("memory"))
      const synchronous = ackMode === "durable" ? "full" : "normal"
      return BankStateStore.sqlite({ filename, synchronous }).pipe(
        Layer.tap(() => Effect.logInfo(`bank state: SQLite at ${filename} (synchronous=${synchronous})`))
      )
    })
  )
}
