import * as SqlClient from "@effect/sql/SqlClient"
import * as Migrator from "@effect/sql/Migrator"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { describe, expect, inject, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Exit, Layer, Metric, Option, Queue, Redacted, TestClock } from "effect"
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { afterAll } from "vitest"
import {
  BankPolicy,
  BankStateStore,
  type BankStateStoreService,
  BankStoreError,
  CompileMetrics,
  type CompileQueueOptions,
  CompileResult,
  type PersistedBank
} from "../../src/index.js"
import { openQueue } from "../support/utils.js"

const dirs: Array<string> = []
const tempFile = () => {
  const dir = mkdtempSync(join(tmpdir(), "ect-store-"))
  dirs.push(dir)
  return join(dir, "nested", "compile-trigger.db")
}
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

const pgUrl = inject("pgUrl")

/** A fresh, empty store for each test. */
const stores: ReadonlyArray<[string, () => Layer.Layer<BankStateStore, BankStoreError>]> = [
  ["memory", () => BankStateStore.memory],
  ["sqlite", () => BankStateStore.sqlite({ filename: tempFile() })],
  ...(pgUrl === "" ? [] : [[
    "pg",
    () =>
      Layer.effectDiscard(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP TABLE IF EXISTS compile_trigger_banks, compile_trigger_migrations, compile_trigger_budget`)).pipe(
        Layer.provide(PgClient.layer({ url: Redacted.make(pgUrl) })),
        Layer.orDie,
        Layer.flatMap(() => BankStateStore.pg({ url: Redacted.make(pgUrl) }))
      )
  ] as [string, () => Layer.Layer<BankStateStore, BankStoreError>]])
]

const bank = (n: number, patch: Partial<PersistedBank> = {}): PersistedBank => ({
  bankId: `bank-${n}`,
  memories: n,
  lastCompileAt: n % 2 === 0 ? 1_700_000_000_000 + n : null,
  firstRetainAt: 1_600_000_000_000 + n,
  consecutiveFailures: n % 5,
  lastError: n % 3 === 0 ? `error ${n}: "quoted", ünïcode` : null,
  status: (["idle", "pending", "running"] as const)[n % 3]!,
  forgets: n % 4,
  policy: n % 4 === 1 ? new BankPolicy({ enabled: n % 8 === 1, sizeThreshold: n, forgetDelaySeconds: 0.5, bankTokens: 100 + n }) : null,
  // Levels with the limit they were measured against, and (as rows stored before limits were) without one.
  ...(n % 3 === 1
    ? { budget: { level: -123.25 - n, at: 1_700_000_000_000 + n, ...(n % 2 === 0 ? { capacity: 500 + n } : {}) } }
    : {}),
  // The freshness columns (6_max_wait): the oldest uncompiled memory and the wait sum of the memories after it.
  oldestMemoryAt: n % 2 === 0 ? null : 1_650_000_000_000 + n,
  memoryWaitSum: n % 2 === 0 ? 0 : n * 1000.5,
  // Dirty scopes (a JSON column): names with non-ASCII and a key an object literal would mistake for its prototype.
  ...(n % 3 === 2
    ? { scopes: { all: n % 2 === 0, namedMemories: n, namedForgets: 1, scopes: [["page-ü", n, 1], ["__proto__", 0, 0]] as const } }
    : {}),
  ...patch
})

const byId = (banks: ReadonlyArray<PersistedBank>) =>
  [...banks].sort((a, b) => a.bankId.localeCompare(b.bankId))

describe("BankStateStore — contract", () => {
  if (pgUrl === "") it.skip("pg (PostgreSQL is not installed here; CI installs it)", () => {})

  for (const [name, makeStore] of stores) {
    describe(name, () => {
      it.live("round-trips every field", () =>
        Effect.gen(function*() {
          const store = yield* BankStateStore
          expect(yield* store.load).toEqual([])
          const banks = [0, 1, 2, 3, 4, 5].map((n) => bank(n))
          yield* store.save(banks)
          expect(byId(yield* store.load)).toEqual(byId(banks))
          // The global budget's levels: none stored yet, then replaced whole (a limit turned off drops its row).
          expect(yield* store.loadBudget!).toBeNull()
          const budget = {
            tokens: { level: -200.5, at: 1_700_000_000_123, capacity: 1_000_000 },
            compiles: { level: 3.25, at: 1_700_000_000_456 }
          }
          yield* store.saveBudget!(budget)
          expect(yield* store.loadBudget!).toEqual(budget)
          yield* store.saveBudget!({ tokens: { level: 10, at: 1 }, compiles: null })
          expect(yield* store.loadBudget!).toEqual({ tokens: { level: 10, at: 1 }, compiles: null })
        }).pipe(Effect.provide(makeStore())))

      it.live("batched upsert: 2,500 banks in one save, then 1,000 replaced", () =>
        Effect.gen(function*() {
          const store = yield* BankStateStore
          const banks = Array.from({ length: 2500 }, (_, n) => bank(n))
          yield* store.save(banks)
          const changed = banks.slice(0, 1000).map((b) => ({ ...b, memories: b.memories + 1_000_000, status: "idle" as const }))
          yield* store.save(changed)
          const loaded = byId(yield* store.load)
          expect(loaded).toHaveLength(2500)
          expect(loaded).toEqual(byId([...changed, ...banks.slice(1000)]))
        }).pipe(Effect.provide(makeStore())))

      it.live("a restart keeps each bank's dirty scopes, a running compile's too", () =>
        Effect.gen(function*() {
          const store = yield* BankStateStore
          const first = yield* openQueue(Layer.succeed(BankStateStore, store), { config: { sizeThreshold: 100, forgetThreshold: 100 } })
          first.queue.unsafeNotifyRetain("idle", { count: 2, scopes: ["page-a", "tag:b"] })
          first.queue.unsafeNotifyForget("idle", { scopes: ["tag:b"] })
          yield* first.engine.hold
          first.queue.unsafeNotifyRetain("running", { scopes: ["x"] })
          yield* first.queue.compileNow("running")
          yield* Queue.take(first.engine.started)
          first.queue.unsafeNotifyRetain("running", { scopes: ["y"] })
          yield* first.queue.flush
          const before = [Option.getOrThrow(yield* first.queue.bankState("idle")).dirtyScopes]
          const second = yield* openQueue(Layer.succeed(BankStateStore, store), { config: { sizeThreshold: 100, forgetThreshold: 100 } })
          expect(Option.getOrThrow(yield* second.queue.bankState("idle")).dirtyScopes).toEqual(before[0])
          expect(before[0]).toEqual({
            all: false,
            scopes: [{ scope: "page-a", memories: 2, forgets: 0 }, { scope: "tag:b", memories: 2, forgets: 1 }]
          })
          // Stored as running: queued again after the restart, with every scope it had not consumed.
          yield* second.queue.drain()
          expect(second.engine.jobs.map((job) => [job.bankId, job.scopes])).toEqual([["running", ["x", "y"]]])
          yield* second.close
          yield* first.engine.open
          yield* first.close
        }).pipe(Effect.provide(makeStore())))

      it.live("restore: a queue resumes counters, times and failures, and compiles banks stored as pending", () =>
        Effect.gen(function*() {
          const store = yield* BankStateStore
          const now = Date.now()
          const plain = { forgets: 0, policy: null }
          yield* store.save([
            { ...bank(1), ...plain, memories: 3, status: "idle", lastCompileAt: now, consecutiveFailures: 2, lastError: "x" },
            { ...bank(2), ...plain, memories: 4, status: "pending", lastCompileAt: now },
            { ...bank(3), ...plain, memories: 5, status: "running", lastCompileAt: null }
          ])
          const { close, engine, queue } = yield* openQueue(Layer.succeed(BankStateStore, store))
          yield* queue.drain()
          expect([...engine.calls].sort()).toEqual(["bank-2", "bank-3"])
          const restored = Option.getOrThrow(yield* queue.bankState("bank-1"))
          expect(restored.memoriesSinceLastCompile).toBe(3)
          expect(restored.consecutiveFailures).toBe(2)
          expect(restored.lastError).toEqual(Option.some("x"))
          expect(Option.getOrThrow(yield* queue.bankState("bank-2")).memoriesSinceLastCompile).toBe(0)
          yield* close
          // the final flush wrote the compiles back
          const stored = byId(yield* store.load)
          expect(stored.map((b) => [b.bankId, b.memories, b.status])).toEqual([
            ["bank-1", 3, "idle"],
            ["bank-2", 0, "idle"],
            ["bank-3", 0, "idle"]
          ])
        }).pipe(Effect.provide(makeStore())))
    })
  }
})

/** The schema of the first release, frozen: a database made by it must open under every later one. */
const createV1Database = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* Migrator.make({})({
    loader: Migrator.fromRecord({
      "1_create_banks": sql`CREATE TABLE compile_trigger_banks (
        bank_id TEXT PRIMARY KEY,
        memories BIGINT NOT NULL,
        last_compile_at BIGINT,
        first_retain_at BIGINT,
        consecutive_failures INTEGER NOT NULL,
        last_error TEXT,
        status TEXT NOT NULL
      )`
    }),
    table: "compile_trigger_migrations"
  })
  yield* sql`INSERT INTO compile_trigger_banks ${
    sql.insert([
      { bank_id: "old-1", memories: 7, last_compile_at: 1_700_000_000_000, first_retain_at: 1_600_000_000_000, consecutive_failures: 1, last_error: "e", status: "pending" },
      { bank_id: "old-2", memories: 0, last_compile_at: null, first_retain_at: null, consecutive_failures: 0, last_error: null, status: "idle" }
    ])
  }`
})

describe("BankStateStore — migration from the first schema", () => {
  const databases: ReadonlyArray<[string, () => { client: Layer.Layer<SqlClient.SqlClient, unknown>; store: Layer.Layer<BankStateStore, BankStoreError> }]> = [
    ["sqlite", () => {
      const filename = tempFile()
      mkdirSync(dirname(filename), { recursive: true })
      return { client: SqliteClient.layer({ filename }), store: BankStateStore.sqlite({ filename }) }
    }],
    ...(pgUrl === "" ? [] : [[
      "pg",
      () => ({
        client: PgClient.layer({ url: Redacted.make(pgUrl) }).pipe(Layer.tap((context) =>
          Context.get(context, SqlClient.SqlClient)`DROP TABLE IF EXISTS compile_trigger_banks, compile_trigger_migrations, compile_trigger_budget`
        )),
        store: BankStateStore.pg({ url: Redacted.make(pgUrl) })
      })
    ] as [string, () => { client: Layer.Layer<SqlClient.SqlClient, unknown>; store: Layer.Layer<BankStateStore, BankStoreError> }]])
  ]
  for (const [name, open] of databases) {
    it.live(`${name}: an old database opens, keeps its rows, and stores policies and forgets from then on`, () =>
      Effect.gen(function*() {
        const { client, store } = open()
        yield* createV1Database.pipe(Effect.provide(client), Effect.orDie)
        yield* Effect.gen(function*() {
          const opened = yield* BankStateStore
          expect(byId(yield* opened.load)).toEqual([
            { bankId: "old-1", memories: 7, lastCompileAt: 1_700_000_000_000, firstRetainAt: 1_600_000_000_000, consecutiveFailures: 1, lastError: "e", status: "pending", forgets: 0, policy: null, oldestMemoryAt: null, memoryWaitSum: 0 },
            { bankId: "old-2", memories: 0, lastCompileAt: null, firstRetainAt: null, consecutiveFailures: 0, lastError: null, status: "idle", forgets: 0, policy: null, oldestMemoryAt: null, memoryWaitSum: 0 }
          ])
          const policy = new BankPolicy({ forgetThreshold: 4 })
          yield* opened.save([{ ...bank(9), bankId: "old-2", forgets: 3, policy }])
          const loaded = (yield* opened.load).find((b) => b.bankId === "old-2")
          expect(loaded?.forgets).toBe(3)
          expect(loaded?.policy).toEqual(policy)
        }).pipe(Effect.provide(store))
        // opening it again runs no migration twice
        yield* Effect.flatMap(BankStateStore, (again) => again.load).pipe(Effect.provide(store))
      }))
  }
})

describe("BankStateStore — unreadable policy column", () => {
  it.live("loads the bank without its policy and warns", () =>
    Effect.gen(function*() {
      const filename = tempFile()
      const store = BankStateStore.sqlite({ filename })
      yield* Effect.flatMap(BankStateStore, (s) => s.save([bank(1)])).pipe(Effect.provide(store))
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`UPDATE compile_trigger_banks SET policy = '{"sizeThreshold":-4}'`)
        .pipe(Effect.provide(SqliteClient.layer({ filename })))
      const loaded = yield* Effect.flatMap(BankStateStore, (s) => s.load).pipe(Effect.provide(store))
      expect(loaded).toEqual([{ ...bank(1), policy: null }])
    }))
})

describe("CompileQueue with a store", () => {
  it.effect("restart in-process on the same SQLite file: identical state, pending banks compile", () =>
    Effect.gen(function*() {
      const filename = tempFile()
      const options: CompileQueueOptions = { config: { sizeThreshold: 5 }, flushInterval: "1 second" }
      const first = yield* openQueue(BankStateStore.sqlite({ filename }), options)
      yield* first.engine.hold
      yield* TestClock.adjust("10 seconds") // (each flush interval is a wake-up: keep adjustments short)
      first.queue.unsafeNotifyRetain("compiled", 5) // compiles (held), then …
      yield* Queue.take(first.engine.started)
      first.queue.unsafeNotifyRetain("waiting", 5) // … queued behind it
      first.queue.unsafeNotifyRetain("counting", 3)
      yield* TestClock.adjust("2 seconds") // a flush happens meanwhile
      yield* first.engine.open
      yield* Queue.take(first.engine.started)
      yield* first.queue.drain()
      first.queue.unsafeNotifyRetain("late", 2) // not flushed yet: the close flushes it
      const before = yield* first.queue.state
      yield* first.close

      const second = yield* openQueue(BankStateStore.sqlite({ filename }), options)
      const after = yield* second.queue.state
      expect([...after.keys()].sort()).toEqual([...before.keys()].sort())
      for (const [id, state] of before) expect(after.get(id)).toEqual(state)
      yield* second.close
    }))

  it.effect("a restart keeps a spent global budget spent (SQLite): the next compile waits for the refill", () =>
    Effect.gen(function*() {
      const filename = tempFile()
      const options: CompileQueueOptions = { budget: { tokens: 1000 }, shutdownTimeout: 0, flushInterval: "1 day" }
      const first = yield* openQueue(BankStateStore.sqlite({ filename }), options)
      first.engine.behavior = (bankId) => Effect.succeed(new CompileResult({ bankId, tokensUsed: 1500 }))
      yield* first.queue.compileNow("a")
      yield* first.queue.drain()
      expect((yield* first.queue.stats).budget.tokensAvailable).toBe(-500)
      yield* first.close

      const second = yield* openQueue(BankStateStore.sqlite({ filename }), options)
      expect((yield* second.queue.stats).budget.tokensAvailable).toBe(-500) // not refilled by the restart
      yield* second.queue.compileNow("b")
      yield* TestClock.adjust(30 * 60_000) // -500 at 1,000/h: back at 0, not above it
      expect(second.engine.calls).toEqual([])
      yield* TestClock.adjust(1)
      yield* second.queue.drain()
      expect(second.engine.calls).toEqual(["b"])
      yield* second.close
    }))

  it.effect("a limit raised at restart gives its headroom at once: what was spent stays spent (SQLite)", () =>
    Effect.gen(function*() {
      const filename = tempFile()
      const options = (tokens: number): CompileQueueOptions => ({
        budget: { tokens, bankTokens: tokens },
        shutdownTimeout: 0,
        flushInterval: "1 day"
      })
      const first = yield* openQueue(BankStateStore.sqlite({ filename }), options(1000))
      first.engine.behavior = (bankId) => Effect.succeed(new CompileResult({ bankId, tokensUsed: 1500 }))
      yield* first.queue.compileNow("a")
      yield* first.queue.drain()
      yield* first.close

      const second = yield* openQueue(BankStateStore.sqlite({ filename }), options(50_000))
      expect((yield* second.queue.stats).budget.tokensAvailable).toBe(48_500) // not -500 for the next half hour
      yield* second.queue.compileNow("a") // its own bucket too: 48,500 of its new 50,000
      yield* second.queue.drain()
      expect(second.engine.calls).toEqual(["a"])
      yield* second.close
    }))

  it.effect("a restart keeps a bank's spent own bucket and the compiles bucket (SQLite)", () =>
    Effect.gen(function*() {
      const filename = tempFile()
      const options: CompileQueueOptions = { budget: { compiles: 10, bankTokens: 1000 }, shutdownTimeout: 0, flushInterval: "1 day" }
      const first = yield* openQueue(BankStateStore.sqlite({ filename }), options)
      first.engine.behavior = (bankId) => Effect.succeed(new CompileResult({ bankId, tokensUsed: 1500 }))
      yield* first.queue.compileNow("a")
      yield* first.queue.drain()
      yield* first.close

      const second = yield* openQueue(BankStateStore.sqlite({ filename }), options)
      expect((yield* second.queue.stats).budget.compilesAvailable).toBe(9)
      yield* second.queue.compileNow("a") // at -500 of its own 1,000/h: deferred for 30 minutes
      yield* second.queue.compileNow("b")
      yield* second.queue.drain({ timeout: "1 second" }).pipe(Effect.fork, Effect.zipLeft(TestClock.adjust("1 second")))
      expect(second.engine.calls).toEqual(["b"])
      const report = yield* second.queue.budget
      expect(report.deferred.map((bank) => [bank.bankId, bank.tokensAvailable])).toEqual([["a", -500 + 1000 / 3600]])
      yield* TestClock.adjust(30 * 60_000)
      yield* second.queue.drain()
      expect(second.engine.calls).toEqual(["b", "a"])
      yield* second.close
    }))

  it.effect("a compile cut off by shutdown is stored as pending and runs after the restart", () =>
    Effect.gen(function*() {
      const filename = tempFile()
      const options: CompileQueueOptions = { config: { sizeThreshold: 5 }, shutdownTimeout: 0 }
      const first = yield* openQueue(BankStateStore.sqlite({ filename }), options)
      yield* first.engine.hold
      first.queue.unsafeNotifyRetain("cut", 5)
      yield* Queue.take(first.engine.started)
      yield* first.close // deadline 0: the held compile is interrupted
      const second = yield* openQueue(BankStateStore.sqlite({ filename }), options)
      expect(Option.getOrThrow(yield* second.queue.bankState("cut")).memoriesSinceLastCompile).toBe(5)
      yield* second.queue.drain()
      expect(second.engine.calls).toEqual(["cut"])
      expect(Option.getOrThrow(yield* second.queue.bankState("cut")).memoriesSinceLastCompile).toBe(0)
      yield* second.close
    }))

  it.effect("a failing store never blocks retains: the flush keeps its banks and retries with backoff", () =>
    Effect.gen(function*() {
      const saved: Array<PersistedBank> = []
      let failuresLeft = 3
      const flaky: BankStateStoreService = {
        load: Effect.succeed([]),
        save: (banks) =>
          failuresLeft-- > 0
            ? Effect.fail(new BankStoreError({ operation: "save", message: "disk full" }))
            : Effect.sync(() => void saved.push(...banks))
      }
      const failuresBefore = (yield* Metric.value(CompileMetrics.storeFlushFailures)).count
      const { close, queue } = yield* openQueue(Layer.succeed(BankStateStore, flaky), {
        config: { sizeThreshold: 1000 },
        flushInterval: "1 second"
      })
      for (let n = 0; n < 100; n++) queue.unsafeNotifyRetain(`b${n % 10}`)
      yield* TestClock.adjust("1 second") // fails; retry in 2 s
      yield* TestClock.adjust("2 seconds") // fails; retry in 4 s
      yield* TestClock.adjust("4 seconds") // fails; retry in 8 s
      for (let n = 0; n < 10; n++) queue.unsafeNotifyRetain(`b${n}`)
      expect(saved).toEqual([])
      yield* TestClock.adjust("8 seconds") // succeeds
      expect(saved.map((b) => [b.bankId, b.memories]).sort()).toEqual(
        Array.from({ length: 10 }, (_, n) => [`b${n}`, 11]).sort()
      )
      expect((yield* Metric.value(CompileMetrics.storeFlushFailures)).count - failuresBefore).toBe(3)
      yield* close
    }))

  it.effect("an unreadable store fails construction with a clear message", () =>
    Effect.gen(function*() {
      const broken = Layer.succeed(BankStateStore, {
        load: Effect.fail(new BankStoreError({ operation: "load", message: "file is not a database" })),
        save: () => Effect.void
      })
      const exit = yield* Effect.exit(openQueue(broken))
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("file is not a database")
    }))
})

describe("BankStateStore.layerConfig", () => {
  const withEnv = (env: Record<string, string>) =>
    Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.live("defaults to SQLite under DATA_DIR", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "ect-config-"))
      dirs.push(dir)
      yield* Effect.flatMap(BankStateStore, (store) => store.save([bank(1)])).pipe(
        Effect.provide(BankStateStore.layerConfig.pipe(Layer.provide(withEnv({ DATA_DIR: dir }))))
      )
      expect(existsSync(join(dir, "compile-trigger.db"))).toBe(true)
    }))

  it.live("rejects a DATABASE_URL that is not postgres://", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.provide(BankStateStore, BankStateStore.layerConfig.pipe(Layer.provide(withEnv({ DATABASE_URL: "mysql://x" }))))
      )
      expect(String(Exit.isFailure(exit) && exit.cause)).toContain("DATABASE_URL must be a postgres:// URL")
    }))

  if (pgUrl !== "") {
    it.live("DATABASE_URL selects Postgres", () =>
      Effect.gen(function*() {
        const store = yield* BankStateStore
        yield* store.save([bank(7)])
        expect((yield* store.load).some((b) => b.bankId === "bank-7")).toBe(true)
      }).pipe(Effect.provide(BankStateStore.layerConfig.pipe(Layer.provide(withEnv({ DATABASE_URL: pgUrl }))))))
  }
})
