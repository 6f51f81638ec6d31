/**
 * The bank state store in embedded SQLite (`@effect/sql-sqlite-node` on better-sqlite3, optional peers): import it
 * from `effect-compile-trigger/SqliteBankStateStore`. `BankStateStore.sqlite` is the same layer, loaded on first use.
 *
 * @since 0.1.0
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer } from "effect"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { BankStateStore, type BankStoreError } from "./BankStateStore.js"

/**
 * SQLite in one file; its directory is created.
 *
 * @since 0.1.0
 */
export const layer = (options: { readonly filename: string }): Layer.Layer<BankStateStore, BankStoreError> =>
  BankStateStore.fromClient(
    Layer.unwrapEffect(Effect.sync(() => {
      mkdirSync(dirname(options.filename), { recursive: true })
      return SqliteClient.layer({ filename: options.filename })
    }))
  )
