/**
 * The SQL stores' owner generation, the epoch of the fencing tokens: counted in the database at every open (under the
 * single-node lock), so a restarted service's tokens are higher than the last run's; the in-memory store's is the time
 * it was opened.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, inject, it } from "@effect/vitest"
import { Effect, Layer, Redacted, TestClock } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import { BankStateStore, type BankStoreError, FencingToken, makeSqlBankStateStore } from "../../src/index.js"
import { freshDatabase } from "../support/clusterKit.js"
import { openQueue } from "../support/utils.js"

const dirs: Array<string> = []
const tempFile = () => {
  const dir = mkdtempSync(join(tmpdir(), "ect-generation-"))
  dirs.push(dir)
  return join(dir, "compile-trigger.db")
}
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

const pgUrl = inject("pgUrl")

/** The epoch of one open of `store` (opened and closed again). */
const epochOf = (store: Layer.Layer<BankStateStore, BankStoreError>) =>
  Effect.map(BankStateStore, (opened) => opened.epoch).pipe(Effect.provide(store))

/** Three "restarts" of a service on `store`: each compiles bank "x" once; the tokens it was given, in order. */
const tokensAcrossRestarts = (store: () => Layer.Layer<BankStateStore, BankStoreError>) =>
  Effect.gen(function*() {
    const tokens: Array<FencingToken.FencingToken> = []
    for (let restart = 0; restart < 3; restart++) {
      const { close, engine, queue } = yield* openQueue(store())
      yield* queue.compileNow("x")
      yield* queue.compileNow("y")
      yield* queue.drain()
      tokens.push(...engine.jobs.filter((job) => job.bankId === "x").map((job) => job.fencingToken))
      yield* close
    }
    return tokens
  })

const stores: ReadonlyArray<[string, () => () => Layer.Layer<BankStateStore, BankStoreError>]> = [
  ["sqlite", () => {
    const filename = tempFile()
    return () => BankStateStore.sqlite({ filename })
  }],
  ...(pgUrl === "" ? [] : [[
    "pg",
    () => {
      const url = Redacted.make(freshDatabase(pgUrl))
      return () => BankStateStore.pg({ url })
    }
  ] as [string, () => () => Layer.Layer<BankStateStore, BankStoreError>]])
]

describe("owner generation — the SQL stores", () => {
  if (pgUrl === "") it.skip("pg (PostgreSQL is not installed here; CI installs it)", () => {})
  for (const [name, database] of stores) {
    it.live(`${name}: counted up at every open, from 1`, () =>
      Effect.gen(function*() {
        const open = database()
        expect([yield* epochOf(open()), yield* epochOf(open()), yield* epochOf(open())]).toEqual([1, 2, 3])
      }))

    it.live(`${name}: a restarted service's tokens are higher than the last run's`, () =>
      Effect.gen(function*() {
        const tokens = yield* tokensAcrossRestarts(database())
        expect(tokens.map((token) => token.epoch)).toEqual([1, 2, 3])
        expect(tokens.every((token, n) => n === 0 || FencingToken.isNewer(token, tokens[n - 1]!))).toBe(true)
      }))
  }

  it.live("sqlite: a database that has the table already keeps its count when its migrations run again", () =>
    Effect.gen(function*() {
      const filename = tempFile()
      expect(yield* epochOf(BankStateStore.sqlite({ filename }))).toBe(1)
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DELETE FROM compile_trigger_migrations WHERE migration_id = 5`)
        .pipe(Effect.provide(SqliteClient.layer({ filename })), Effect.orDie)
      expect(yield* epochOf(BankStateStore.sqlite({ filename }))).toBe(2)
    }))

  if (pgUrl !== "") {
    it.live("pg: opens racing on a plain client (no single-node lock) still get different generations", () =>
      Effect.gen(function*() {
        const client = PgClient.layer({ url: Redacted.make(freshDatabase(pgUrl)) })
        yield* epochOf(BankStateStore.sql.pipe(Layer.provide(client), Layer.orDie)) // migrated once
        const epochs = yield* Effect.all(
          Array.from({ length: 6 }, () => makeSqlBankStateStore.pipe(Effect.map((store) => store.epoch), Effect.provide(client))),
          { concurrency: "unbounded" }
        )
        expect([...epochs].sort()).toEqual([2, 3, 4, 5, 6, 7])
      }))
  }
})

describe("owner generation — the in-memory store", () => {
  it.effect("is the time it was opened, in epoch milliseconds", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_770_000_000_123)
      expect(yield* epochOf(BankStateStore.memory)).toBe(1_770_000_000_123)
    }))
})
