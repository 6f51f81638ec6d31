/**
 * Cluster mode's view of the Postgres bank table: one partition's banks at a time (a stored, indexed `partition`
 * column computed by Postgres itself), and the one-time schema setup every runner does under an advisory lock so that
 * runners started together on an empty database do not race creating tables (the partitions' leases and flush records
 * of `partitionLeases.ts` among them).
 *
 * @internal
 */
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SqlMessageStorage from "@effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "@effect/cluster/SqlRunnerStorage"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer } from "effect"
import {
  BANKS_TABLE,
  type BankStateStoreService,
  bankStoreError,
  type BankStoreError,
  decodeRows,
  makeSql
} from "../../BankStateStore.js"
import { FLUSHES_TABLE, LEASES_TABLE } from "./partitionLeases.js"
import { PARTITION_SQL, PARTITIONS } from "./protocol.js"

/** The advisory lock held while a runner sets up the schema (the cluster's shard locks start at 1,000,001). */
const SCHEMA_LOCK = 4242

/** Its own migrations table, so the bank table's migration numbers stay the single-node store's alone. */
const migrations = Migrator.fromRecord({
  "1_bank_partition": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.zipRight(
      sql.unsafe(
        `ALTER TABLE ${BANKS_TABLE} ADD COLUMN IF NOT EXISTS partition SMALLINT GENERATED ALWAYS AS ${PARTITION_SQL} STORED`
      ),
      sql.unsafe(`CREATE INDEX IF NOT EXISTS ${BANKS_TABLE}_partition ON ${BANKS_TABLE} (partition)`)
    )),
  // Who owned each partition and how the last owner left it (replaced by the leases' rows in 3).
  "2_partition_owners": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe(
      `CREATE TABLE IF NOT EXISTS compile_trigger_partition_owners (
        partition SMALLINT PRIMARY KEY,
        runner TEXT NOT NULL,
        since BIGINT NOT NULL,
        left_because TEXT
      )`
    )),
  // Each partition's lease (one row each from the start: a take is an UPDATE) and how its last holder left it.
  "3_partition_leases": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.all([
      sql.unsafe(
        `CREATE TABLE IF NOT EXISTS ${LEASES_TABLE} (
          partition SMALLINT PRIMARY KEY,
          runner TEXT,
          holder TEXT,
          epoch BIGINT NOT NULL DEFAULT 0,
          expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
          since BIGINT,
          left_because TEXT
        )`
      ),
      sql.unsafe(
        `INSERT INTO ${LEASES_TABLE} (partition) SELECT generate_series(0, ${PARTITIONS - 1}) ON CONFLICT DO NOTHING`
      ),
      sql.unsafe("DROP TABLE IF EXISTS compile_trigger_partition_owners")
    ], { discard: true })),
  // Which flushes each holder stored under each epoch (what a holder that lost its partition reads).
  "4_partition_flushes": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.unsafe(
      `CREATE TABLE IF NOT EXISTS ${FLUSHES_TABLE} (
        partition SMALLINT NOT NULL,
        epoch BIGINT NOT NULL,
        flushed BIGINT NOT NULL,
        PRIMARY KEY (partition, epoch)
      )`
    ))
})

/**
 * Migrates the bank table (the store's own migrations, then the partition column) and creates the cluster's tables,
 * all under one advisory lock; returns the whole-table store (its `save` is the partitions' `save`).
 */
export const setupSchema = (shardingConfig: ShardingConfig.ShardingConfig["Type"]): Effect.Effect<
  BankStateStoreService,
  BankStoreError,
  SqlClient.SqlClient
> =>
  Effect.scoped(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const conn = yield* sql.reserve
    yield* Effect.acquireRelease(
      conn.executeRaw(`SELECT pg_advisory_lock(${SCHEMA_LOCK})`, []),
      () => Effect.ignore(conn.executeRaw(`SELECT pg_advisory_unlock(${SCHEMA_LOCK})`, []))
    )
    const store = yield* makeSql
    yield* Migrator.make({})({ loader: migrations, table: "compile_trigger_cluster_migrations" })
    // Building the cluster's storage layers once creates their tables; the runner builds its own afterwards.
    yield* Layer.build(Layer.mergeAll(SqlMessageStorage.layer, SqlRunnerStorage.layer)).pipe(
      Effect.provideService(ShardingConfig.ShardingConfig, shardingConfig)
    )
    return store
  })).pipe(
    Effect.catchAll((error): Effect.Effect<never, BankStoreError> =>
      Effect.fail(error._tag === "BankStoreError" ? error : bankStoreError("open")(error))
    )
  )

/** One partition's banks: `load` reads only its rows (by the index), `save` is the table's. */
export const partitionStore = (
  sql: SqlClient.SqlClient,
  table: BankStateStoreService,
  partition: number
): BankStateStoreService => ({
  load: sql<Record<string, unknown>>`SELECT * FROM ${sql(BANKS_TABLE)} WHERE partition = ${partition}`.pipe(
    Effect.flatMap(decodeRows),
    Effect.mapError(bankStoreError("load"))
  ),
  save: table.save
})
