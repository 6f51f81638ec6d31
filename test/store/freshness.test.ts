/**
 * A restart keeps the freshness deadline: the oldest uncompiled memory and the wait sum are stored (migration
 * 6_max_wait) on SQLite and Postgres, and the restored queue compiles the bank at its deadline, measuring the wait
 * from the retains before the restart.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, inject, it } from "@effect/vitest"
import { DateTime, Effect, Layer, Option, Queue, Redacted, TestClock } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"
import { BankStateStore, type BankStoreError, type CompileQueueOptions } from "../../src/index.js"
import { openQueue } from "../support/utils.js"

const dirs: Array<string> = []
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

const pgUrl = inject("pgUrl")

/** A store over one database that both queues open in turn. */
const databases: ReadonlyArray<[string, () => () => Layer.Layer<BankStateStore, BankStoreError>]> = [
  ["sqlite", () => {
    const dir = mkdtempSync(join(tmpdir(), "ect-fresh-"))
    dirs.push(dir)
    const filename = join(dir, "compile-trigger.db")
    return () => BankStateStore.sqlite({ filename })
  }],
  ...(pgUrl === "" ? [] : [[
    "pg",
    () => {
      // A database of its own: other store test files drop and create the tables of the default one meanwhile.
      const url = new URL(pgUrl)
      url.pathname = "/ect_freshness"
      const store = BankStateStore.pg({ url: Redacted.make(url.toString()) })
      let first = true
      return () => {
        if (!first) return store
        first = false
        return Layer.effectDiscard(Effect.flatMap(SqlClient.SqlClient, (sql) =>
          Effect.zipRight(sql`DROP DATABASE IF EXISTS ect_freshness`, sql`CREATE DATABASE ect_freshness`)
        )).pipe(Layer.provide(PgClient.layer({ url: Redacted.make(pgUrl) })), Layer.orDie, Layer.flatMap(() => store))
      }
    }
  ] as [string, () => () => Layer.Layer<BankStateStore, BankStoreError>]])
]

const options: CompileQueueOptions = {
  config: { sizeThreshold: 50, maxWaitSeconds: 3600 },
  sweepInterval: "100 days",
  flushInterval: "1 day" // the close's flush stores the bank; a short interval is a wake-up per step of TestClock
}

describe("maxWaitSeconds across a restart", () => {
  if (pgUrl === "") it.skip("pg (PostgreSQL is not installed here; CI installs it)", () => {})
  for (const [name, database] of databases) {
    it.effect(`${name}: the restored bank compiles at its deadline, its wait measured from before the restart`, () =>
      Effect.gen(function*() {
        const store = database()
        const first = yield* openQueue(store(), options)
        first.queue.unsafeNotifyRetain("a", 1)
        yield* TestClock.adjust("10 minutes")
        first.queue.unsafeNotifyRetain("a", 2)
        yield* first.close // the final flush stores the bank

        yield* TestClock.adjust("20 minutes") // down for a while
        const second = yield* openQueue(store(), options)
        const state = Option.getOrThrow(yield* second.queue.bankState("a"))
        expect(Option.map(state.deadlineAt, DateTime.toEpochMillis)).toEqual(Option.some(3_600_000))
        expect(Option.map(state.oldestMemoryAt, DateTime.toEpochMillis)).toEqual(Option.some(0))
        yield* TestClock.adjust(30 * 60_000 - 1)
        expect(second.engine.calls).toEqual([])
        yield* TestClock.adjust(1)
        expect(yield* Queue.take(second.engine.started)).toBe("a")
        yield* second.queue.drain()
        expect(second.engine.jobs[0]).toMatchObject({
          reason: "deadline",
          memories: 3,
          memoryWait: { oldestSeconds: 3600, meanSeconds: (3600 + 3000 * 2) / 3 }
        })
        yield* second.close
      }))
  }
})
