/**
 * Cluster mode's partition leases on a real Postgres: every take increases the epoch; a lease is taken by another
 * runner only once it expired or was released; a holder whose lease was taken learns it at its next renewal; and a
 * partition's store writes only under its holder's epoch — a stale holder's flush stores nothing, fails, and keeps
 * its counts as unstored (to be sent on), while the current holder's lands. A flush whose COMMIT landed but whose
 * answer was lost is known as stored by the record its transaction wrote, and its counts are not sent on; a take keeps
 * the records of the last 8 epochs.
 */
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SqlClient from "@effect/sql/SqlClient"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, inject, it } from "@effect/vitest"
import { Context, Effect, Layer, Redacted, type Scope } from "effect"
import { fenced, settleDoubts } from "../../src/internal/cluster/owner.js"
import { makePartitionLeases, type PartitionLeases, pgLeaseRows } from "../../src/internal/cluster/partitionLeases.js"
import { partitionStore, setupSchema } from "../../src/internal/cluster/store.js"
import { UnstoredCounts } from "../../src/internal/cluster/unstoredCounts.js"
import { freshDatabase, psql } from "../support/clusterKit.js"
import { eventually } from "../support/harness.js"
import { startRelay } from "../support/tcpRelay.js"
import { storedRow } from "../support/utils.js"

const pgUrl = inject("pgUrl")

const row = storedRow

/** Two runners' leases and the bank table on a fresh database: `test` runs with them, its scope closed after it. */
const withTwoRunners = (
  database: string,
  test: (world: {
    readonly sql: SqlClient.SqlClient
    readonly table: Effect.Effect.Success<ReturnType<typeof setupSchema>>
    readonly a: PartitionLeases
    readonly b: PartitionLeases
  }) => Effect.Effect<void, unknown, Scope.Scope>
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const table = yield* setupSchema({ ...ShardingConfig.defaults, shardsPerGroup: 64 })
    const runner = (name: string) =>
      Effect.flatMap(pgLeaseRows(sql, `test ${name}`), (rows) => makePartitionLeases({ rows, runner: name, holder: name }))
    yield* test({ sql, table, a: yield* runner("a"), b: yield* runner("b") })
  }).pipe(
    Effect.scoped,
    Effect.provide(Layer.orDie(PgClient.layer({ url: Redacted.make(database) })))
  )

/** A bank id of partition 5 (the stored column says which). */
const bankOf5 = (database: string) =>
  Array.from({ length: 500 }, (_, n) => `lease-bank-${n}`).find((id) =>
    psql(database, `SELECT get_byte(decode(md5('${id}'), 'hex'), 0) & 63`) === "5"
  )!

describe("partition leases (Postgres)", () => {
  if (pgUrl === "") it.skip("pg (PostgreSQL is not installed here; CI installs it)", () => {})
  else {
    it.live("a lease moves only once expired, its epoch grows, and the stale holder's writes are refused", () => {
      const database = freshDatabase(pgUrl)
      return withTwoRunners(database, ({ a, b, sql, table }) =>
        Effect.gen(function*() {
          expect(yield* a.tryAcquire(5)).toEqual({ epoch: 1, previous: undefined })
          expect(yield* b.tryAcquire(5)).toBeUndefined()
          expect(a.isValid(5)).toBe(true)
          // The lease connections are named so that an operator (or a test) can find them: renewals have their own.
          expect(yield* a.renew).toEqual([])
          expect(psql(database, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'test a leases'")).toBe("1")
          expect(psql(database, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'test a lease takes'")).toBe("1")

          const bankId = bankOf5(database)
          const unstored = new UnstoredCounts()
          const tally = unstored.register({ ids: [bankId] })
          let lost = 0
          const storeA = fenced(partitionStore(sql, table, 5), { sql, leases: a, partition: 5, epoch: 1, unstored }, Effect.sync(() => lost++))
          tally.retain(0, 2)
          yield* storeA.save([row(bankId, 2)])
          expect(unstored.all().size).toBe(0)

          // a freezes past its lease (Postgres's clock says it expired): b takes it, under the next epoch.
          psql(database, "UPDATE compile_trigger_partition_leases SET expires_at = clock_timestamp() WHERE partition = 5")
          expect(yield* b.tryAcquire(5)).toEqual({ epoch: 2, previous: { runner: "a", left: null } })
          const storeB = fenced(partitionStore(sql, table, 5), { sql, leases: b, partition: 5, epoch: 2, unstored: new UnstoredCounts() }, Effect.void)
          yield* storeB.save([row(bankId, 7)])

          // a resumes: its flush is refused, stores nothing, says so, and keeps its counts as unstored.
          tally.retain(0, 3)
          const refused = yield* Effect.flip(storeA.save([row(bankId, 5)]))
          expect(refused.message).toContain("another runner holds its lease now (this runner's epoch 1)")
          expect(lost).toBe(1)
          expect(psql(database, `SELECT memories FROM compile_trigger_banks WHERE bank_id = '${bankId}'`)).toBe("7")
          expect(unstored.all().get(bankId)).toEqual({ retains: 3, forgets: 0 })
          // Its renewal learns it lost the partition; b's renewal keeps it.
          expect(yield* a.renew).toEqual([{ partition: 5, epoch: 1 }])
          expect(a.isValid(5)).toBe(false)
          expect(yield* b.renew).toEqual([])
          // b hands it over: the next holder takes it at once and learns b stopped.
          yield* b.release(5, "stopping")
          expect(yield* a.tryAcquire(5)).toEqual({ epoch: 3, previous: { runner: "b", left: "stopping" } })
        }))
    }, 30_000)

    it.live("a flush whose COMMIT landed but whose answer was lost is not sent on; a refused one is", () => {
      const database = freshDatabase(pgUrl)
      return withTwoRunners(database, ({ b }) =>
        Effect.gen(function*() {
          // Runner r reaches Postgres through a relay that can lose the answer to a COMMIT it passed on.
          const target = new URL(database)
          const relay = yield* Effect.acquireRelease(
            Effect.promise(() => startRelay("127.0.0.1", { host: target.hostname, port: Number(target.port) })),
            (relay) => Effect.promise(relay.close)
          )
          const relayed = new URL(database)
          relayed.port = String(relay.port)
          const sql = Context.get(
            yield* Layer.build(Layer.orDie(PgClient.layer({ url: Redacted.make(relayed.toString()) }))),
            SqlClient.SqlClient
          )
          const table = yield* Effect.provideService(setupSchema({ ...ShardingConfig.defaults, shardsPerGroup: 64 }), SqlClient.SqlClient, sql)
          const r = yield* makePartitionLeases({ rows: yield* pgLeaseRows(sql, "test r"), runner: "r", holder: "r" })
          expect(yield* r.tryAcquire(5)).toMatchObject({ epoch: 1 })
          const bankId = bankOf5(database)
          const unstored = new UnstoredCounts()
          const tally = unstored.register({ ids: [bankId] })
          const fence = { sql, leases: r, partition: 5, epoch: 1, unstored }
          const store = fenced(partitionStore(sql, table, 5), fence, Effect.void)

          // r's flush of 2 retains: Postgres commits it, the answer never comes back.
          tally.retain(0, 2)
          const cut = relay.cutReplyAfter("COMMIT")
          const exit = yield* Effect.exit(store.save([row(bankId, 2)]))
          yield* Effect.promise(() => cut)
          expect(exit._tag).toBe("Failure")
          expect(unstored.doubtful).toBe(true)
          const memories = () => psql(database, `SELECT memories FROM compile_trigger_banks WHERE bank_id = '${bankId}'`)
          yield* Effect.promise(() => eventually(async () => memories(), (stored) => stored === "2"))

          // b takes the partition (restoring those 2); r's next flush, of 3 more, is refused.
          psql(database, "UPDATE compile_trigger_partition_leases SET expires_at = clock_timestamp() WHERE partition = 5")
          expect(yield* b.tryAcquire(5)).toMatchObject({ epoch: 2 })
          tally.retain(0, 3)
          expect((yield* Effect.flip(store.save([row(bankId, 5)]))).message).toContain("another runner holds its lease now")

          // The record says flush 1 landed: only the refused flush's 3 are left to send on.
          expect(yield* r.flushedUnder(5, 1)).toBe(1)
          yield* settleDoubts(fence)
          expect(unstored.all()).toEqual(new Map([[bankId, { retains: 3, forgets: 0 }]]))
        }))
    }, 30_000)

    it.live("each flush records its number under its epoch; a take keeps the records of the 8 epochs before its own", () => {
      const database = freshDatabase(pgUrl)
      return withTwoRunners(database, ({ a, sql }) =>
        Effect.gen(function*() {
          for (let round = 1; round <= 12; round++) {
            psql(database, "UPDATE compile_trigger_partition_leases SET expires_at = clock_timestamp() WHERE partition = 7")
            const taken = yield* a.tryAcquire(7)
            expect(taken?.epoch).toBe(round)
            expect(yield* sql.withTransaction(a.fence(7, round, 3))).toBe(true)
            expect(yield* sql.withTransaction(a.fence(7, round, 2))).toBe(true) // the greatest stays
          }
          expect(yield* a.flushedUnder(7, 12)).toBe(3)
          expect(yield* a.flushedUnder(7, 99)).toBe(0)
          expect(psql(database, "SELECT string_agg(epoch::text, ',' ORDER BY epoch) FROM compile_trigger_partition_flushes"))
            .toBe("4,5,6,7,8,9,10,11,12")
        }))
    }, 30_000)

    it.live("a holder gone silent inside a flush's transaction holds its lease row's lock for 3 s, not for good", () => {
      const database = freshDatabase(pgUrl)
      return withTwoRunners(database, ({ a, b, sql, table }) =>
        Effect.gen(function*() {
          expect(yield* a.tryAcquire(9)).toMatchObject({ epoch: 1 })
          // a's flush passes the fence (the lease row's lock taken) and then a goes silent: no statement, no COMMIT.
          const store = fenced(
            { ...partitionStore(sql, table, 9), save: () => Effect.never },
            { sql, leases: a, partition: 9, epoch: 1, unstored: new UnstoredCounts() },
            Effect.void
          )
          yield* Effect.fork(store.save([row("silent", 1)]))
          yield* Effect.sleep("300 millis")
          psql(database, "UPDATE compile_trigger_partition_leases SET expires_at = clock_timestamp() WHERE partition = 9")
          // Postgres ends the silent session after 3 s; until then b's takes give up after 1 s each (never stuck).
          const takenAfter = Date.now()
          const taken = yield* b.tryAcquire(9).pipe(
            Effect.flatMap((taken) => taken === undefined ? Effect.fail("not yet") : Effect.succeed(taken)),
            Effect.retry({ times: 20 })
          )
          expect(taken.epoch).toBe(2)
          expect(Date.now() - takenAfter).toBeLessThan(10_000)
        }))
    }, 30_000)
  }
})
