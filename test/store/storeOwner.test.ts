/**
 * One owner per store, in one process: a second SQLite layer on a file already open, or a second Postgres store on a
 * database a single-node store holds, is refused at once with a message naming the holder; once the first closes,
 * the store opens again at once. (test/e2e/singleOwner.test.ts runs the same between live service processes.)
 */
import { describe, expect, inject, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Redacted, Scope } from "effect"
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { afterAll } from "vitest"
import { describeDatabase } from "../../src/BankStateStore.js"
import { BankStateStore } from "../../src/index.js"
import { freshDatabase, psql } from "../support/clusterKit.js"
import { storedRow } from "../support/utils.js"

/** The advisory lock class of the single-node owner ("ECT0"). */
const OWNER_CLASS = 0x45435430

const row = (bankId: string) => storedRow(bankId)

const dirs: Array<string> = []
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

const pgUrl = inject("pgUrl")

/** Builds `layer` in a scope of its own: the store, and the way to close it. */
const open = <E>(layer: Layer.Layer<BankStateStore, E>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const exit = yield* Effect.exit(Layer.buildWithScope(layer, scope))
    return { exit, close: Scope.close(scope, Exit.void) }
  })

const failureMessage = (exit: Exit.Exit<unknown, unknown>): string =>
  Exit.isFailure(exit) ? String((exit.cause as { readonly failure?: { readonly message?: string } }).failure?.message ?? exit.cause) : ""

describe("one owner per store", () => {
  it.live("SQLite: a second layer on an open file is refused, naming this process; after the first closes it opens", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "ect-owner-"))
      dirs.push(dir)
      const filename = join(dir, "data", "compile-trigger.db")
      const first = yield* open(BankStateStore.sqlite({ filename }))
      expect(Exit.isSuccess(first.exit)).toBe(true)
      const second = yield* open(BankStateStore.sqlite({ filename }))
      expect(Exit.isFailure(second.exit)).toBe(true)
      expect(failureMessage(second.exit)).toContain(`${filename} is in use by this process (pid ${process.pid}`)
      yield* second.close
      // Beside the database: the lock file and the owner's, no journal.
      expect(readdirSync(dirname(filename)).filter((name) => !name.startsWith("compile-trigger.db-")).sort())
        .toEqual(["compile-trigger.db", "compile-trigger.db.lock", "compile-trigger.db.owner"])
      // The first is untouched by the refused attempt.
      const store = Exit.isSuccess(first.exit) ? first.exit.value : undefined
      yield* BankStateStore.pipe(
        Effect.flatMap((s) => s.save([{ bankId: "a", memories: 2, lastCompileAt: null, firstRetainAt: null, consecutiveFailures: 0, lastError: null, status: "idle" }])),
        Effect.provide(store!)
      )
      yield* first.close
      expect(existsSync(`${filename}.owner`)).toBe(false)
      const third = yield* open(BankStateStore.sqlite({ filename }))
      expect(Exit.isSuccess(third.exit)).toBe(true)
      if (Exit.isSuccess(third.exit)) {
        const loaded = yield* Effect.flatMap(BankStateStore, (s) => s.load).pipe(Effect.provide(third.exit.value))
        expect(loaded.map((bank) => [bank.bankId, bank.memories])).toEqual([["a", 2]])
      }
      yield* third.close
    }))

  it("a Postgres URL is described without its user or password", () => {
    expect(describeDatabase("postgres://app:s3cret@db.example:6543/banks?sslmode=require")).toBe("db.example:6543/banks")
    expect(describeDatabase("postgresql://db/banks")).toBe("db/banks")
  })

  if (pgUrl === "") it.skip("pg (PostgreSQL is not installed here; CI installs it)", () => {})
  else {
    it.live("Postgres: a second single-node store on one database is refused, naming the holder and cluster mode", () =>
      Effect.gen(function*() {
        const url = Redacted.make(freshDatabase(pgUrl))
        const first = yield* open(BankStateStore.pg({ url }))
        expect(Exit.isSuccess(first.exit)).toBe(true)
        const second = yield* open(BankStateStore.pg({ url }))
        const message = failureMessage(second.exit)
        expect(message).toContain("is in use by another single-node service")
        expect(message).toContain(`"effect-compile-trigger pid ${process.pid} on `)
        expect(message).toContain("cluster mode (CLUSTER_RUNNER_ADDRESS, docs/cluster.md)")
        expect(message).not.toContain("postgres@")
        yield* second.close
        yield* first.close
        // Let go at the close: the next one opens at once.
        const third = yield* open(BankStateStore.pg({ url }))
        expect(Exit.isSuccess(third.exit)).toBe(true)
        yield* third.close
      }), 30_000)

    it.live("Postgres: an owner whose lock went with its connection writes nothing while another holds it", () =>
      Effect.gen(function*() {
        const text = freshDatabase(pgUrl)
        const url = Redacted.make(text)
        const first = yield* open(BankStateStore.pg({ url }))
        if (!Exit.isSuccess(first.exit)) throw new Error(failureMessage(first.exit))
        const store = Context.get(first.exit.value, BankStateStore)
        yield* store.save([row("before")])
        // The owner's lock session dies (a network cut, a restarted pooler): Postgres frees its lock.
        psql(text, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = ${OWNER_CLASS}`)
        const second = yield* open(BankStateStore.pg({ url }))
        expect(Exit.isSuccess(second.exit)).toBe(true)
        // The first is fenced off: its save fails (its write-behind keeps the change), nothing of it is stored.
        const fenced = yield* Effect.flip(store.save([row("while-fenced")]))
        expect(fenced.message).toContain("another single-node service holds the Postgres database")
        expect(psql(text, "SELECT count(*) FROM compile_trigger_banks WHERE bank_id = 'while-fenced'")).toBe("0")
        // Once the other lets go, the next save takes the lock again and writes.
        yield* second.close
        yield* store.save([row("after")])
        expect(psql(text, "SELECT count(*) FROM compile_trigger_banks WHERE bank_id = 'after'")).toBe("1")
        yield* first.close
      }), 30_000)
  }
})
