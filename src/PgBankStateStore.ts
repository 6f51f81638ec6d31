/**
 * The bank state store in Postgres (`@effect/sql-pg`, an optional peer): import it from
 * `effect-compile-trigger/PgBankStateStore`. `BankStateStore.pg` is the same layer, loaded on first use.
 *
 * @since 0.1.0
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"
import { BankStateStore, type BankStoreError } from "./BankStateStore.js"
import { fencedBySingleNodeLock, ownPgStore } from "./internal/store/pgOwner.js"

/**
 * Postgres at `url`, for deployments that share state or want it off the host. One single-node owner per database:
 * while another process holds it (a session advisory lock, on a connection named `effect-compile-trigger pid … on
 * …`), building this fails at once with a `BankStoreError` naming the holder, before the tables are touched. Several
 * processes share one database in cluster mode (`ClusterCompileQueue`), which does not take this lock. Every save
 * first makes sure the lock is still this store's (a lost connection loses it): while another service holds it, saves
 * fail and the write-behind keeps the changes.
 *
 * @since 0.1.0
 */
export const layer = (options: { readonly url: Redacted.Redacted }): Layer.Layer<BankStateStore, BankStoreError> =>
  Layer.unwrapScoped(
    Effect.map(ownPgStore(options.url), (holds) =>
      Layer.map(BankStateStore.fromClient(PgClient.layer({ url: options.url })), (context) =>
        Context.add(
          context,
          BankStateStore,
          fencedBySingleNodeLock(Context.get(context, BankStateStore), holds, Redacted.value(options.url))
        )))
  )
