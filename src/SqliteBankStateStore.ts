/**
 * The bank state store in embedded SQLite (`@effect/sql-sqlite-node` on better-sqlite3, optional peers): import it
 * from `effect-compile-trigger/SqliteBankStateStore`. `BankStateStore.sqlite` is the same layer, loaded on first use.
 *
 * @since 0.1.0
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { Context, Effect, Layer } from "effect"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { BankStateStore, type BankStoreError } from "./BankStateStore.js"
import { ownSqliteStore } from "./internal/store/sqliteOwner.js"

/**
 * @since 0.1.0
 */
export interface SqliteStoreOptions {
  readonly filename: string
  /**
   * SQLite's `synchronous` setting (the database runs in WAL mode). `normal` (default): a commit survives the
   * process being killed, not an OS crash or a power loss. `full`: every commit is synced to disk first (each flush
   * costs an fsync) — what `ACK_MODE=durable` uses.
   */
  readonly synchronous?: "normal" | "full" | undefined
}

/**
 * SQLite in one file; its directory is created. One owner at a time: while a process (or another layer in this one)
 * holds the file, building this fails at once with a `BankStoreError` naming the holder's pid, before the database is
 * opened (the lock is `<filename>.lock`, held by the kernel for the owner, so one killed with -9 leaves none behind).
 *
 * @since 0.1.0
 */
export const layer = (options: SqliteStoreOptions): Layer.Layer<BankStateStore, BankStoreError> =>
  BankStateStore.fromClient(
    Layer.unwrapScoped(Effect.gen(function*() {
      mkdirSync(dirname(options.filename), { recursive: true })
      // Released after the database is closed (finalizers run in reverse): its final flush is this owner's.
      yield* ownSqliteStore(options.filename)
      const synchronous = options.synchronous === "full" ? "FULL" : "NORMAL"
      // One connection: the setting holds for every later statement.
      return SqliteClient.layer({ filename: options.filename }).pipe(
        Layer.tap((context) => Context.get(context, SqlClient.SqlClient).unsafe(`PRAGMA synchronous = ${synchronous}`))
      )
    }))
  )
