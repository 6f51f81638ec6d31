/**
 * The bank state store in Postgres (`@effect/sql-pg`, an optional peer): import it from
 * `effect-compile-trigger/PgBankStateStore`. `BankStateStore.pg` is the same layer, loaded on first use.
 *
 * @since 0.1.0
 */
import { PgClient } from "@effect/sql-pg"
import type { Layer, Redacted } from "effect"
import { BankStateStore, type BankStoreError } from "./BankStateStore.js"

/**
 * Postgres at `url`, for deployments that share state or want it off the host.
 *
 * @since 0.1.0
 */
export const layer = (options: { readonly url: Redacted.Redacted }): Layer.Layer<BankStateStore, BankStoreError> =>
  BankStateStore.fromClient(PgClient.layer({ url: options.url }))
