/**
 * Durable-state benchmark rows: flush of 100,000 dirty banks (SQLite, Postgres), the retain hot path with the SQLite
 * store attached against the memory-only queue in the same run, and restore of 1M banks at startup.
 *
 *   node --expose-gc --import tsx bench/store.ts [--quick]
 */
import { Context, Effect, Exit, Layer, Redacted, Scope } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Bench } from "tinybench"
import {
  BankStateStore,
  type BankStoreError,
  CompileEngine,
  CompileQueue,
  CompileResult,
  type PersistedBank
} from "../src/index.js"
import { startPgCluster } from "../test/support/pgCluster.js"
import type { Row } from "./common.js"

export type StoreRow = Row

const instantEngine = CompileEngine.layer((bankId) => Effect.succeed(new CompileResult({ bankId }, true)))

const persisted = (count: number): Array<PersistedBank> =>
  Array.from({ length: count }, (_, n) => ({
    bankId: `bank-${n}`,
    memories: n % 49,
    lastCompileAt: 1_700_000_000_000 + n,
    firstRetainAt: 1_690_000_000_000 + n,
    consecutiveFailures: 0,
    lastError: null,
    status: "idle" as const
  }))

/** Builds a layer in a scope of its own; returns what it provides and how to close it. */
const open = <A, I>(tag: Context.Tag<I, A>, layer: Layer.Layer<I, BankStoreError>) =>
  Effect.runPromise(Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(layer, scope)
    return { service: Context.get(context, tag), close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
  }))

const flushRow = async (name: string, layer: Layer.Layer<BankStateStore, BankStoreError>, banks: number) => {
  const { close, service } = await open(BankStateStore, layer)
  const rows = persisted(banks)
  const bench = new Bench({ iterations: 3, warmupIterations: 1, time: 0 })
  let round = 0
  // Every round changes every bank, so each save really updates 100k rows.
  bench.add(name, () => Effect.runPromise(service.save(rows.map((row) => ({ ...row, memories: row.memories + ++round })))))
  await bench.run()
  await close()
  return bench.tasks[0]!.result!.latency.mean
}

const hotPathRatio = async (filename: string, notifies: number) => {
  const ids = Array.from({ length: 1000 }, (_, n) => `bank-${n}`)
  const build = (store: boolean) =>
    open(
      CompileQueue,
      (store
        ? CompileQueue.layer({ maxQueueSize: 1001 }).pipe(Layer.provide(BankStateStore.sqlite({ filename })))
        : CompileQueue.layer({ maxQueueSize: 1001 })).pipe(Layer.provide(instantEngine))
    )
  const memory = await build(false)
  const sqlite = await build(true)
  const loop = (queue: CompileQueue["Type"]) => () => {
    for (let n = 0; n < notifies; n++) queue.unsafeNotifyRetain(ids[n % 1000]!)
  }
  const bench = new Bench({ time: 1000, warmupTime: 200 })
  bench.add("memory store", loop(memory.service)).add("sqlite store", loop(sqlite.service))
  await bench.run()
  await memory.close()
  await sqlite.close()
  const [m, s] = bench.tasks.map((task) => notifies / (task.result!.latency.mean / 1000))
  return { memory: m!, sqlite: s! }
}

const restoreSeconds = async (filename: string, banks: number) => {
  const { close, service } = await open(BankStateStore, BankStateStore.sqlite({ filename }))
  await Effect.runPromise(service.save(persisted(banks)))
  await close()
  const started = performance.now()
  const queue = await open(
    CompileQueue,
    CompileQueue.layer().pipe(Layer.provide(BankStateStore.sqlite({ filename })), Layer.provide(instantEngine))
  )
  const seconds = (performance.now() - started) / 1000
  const stats = await Effect.runPromise(queue.service.stats)
  await queue.close()
  if (stats.banks !== banks) throw new Error(`restored ${stats.banks} banks, expected ${banks}`)
  return seconds
}

export const runStoreBench = async (options: { readonly quick: boolean }): Promise<Array<StoreRow>> => {
  const scale = options.quick ? 10 : 1
  const dir = mkdtempSync(join(tmpdir(), "ect-bench-"))
  const rows: Array<StoreRow> = []
  try {
    const flushBanks = 100_000 / scale
    const sqliteFlush = await flushRow("sqlite flush", BankStateStore.sqlite({ filename: join(dir, "flush.db") }), flushBanks)
    rows.push({
      id: "S1",
      figure: `flush of ${flushBanks.toLocaleString("en")} dirty banks, SQLite`,
      value: `${sqliteFlush.toFixed(0)} ms`,
      baseline: "—",
      target: "≤ 1 s",
      met: sqliteFlush <= 1000
    })
    const cluster = await startPgCluster()
    if (cluster === undefined) {
      rows.push({ id: "S2", figure: "flush, Postgres", value: "not run (no PostgreSQL)", baseline: "—", target: "≤ 1 s", met: null })
    } else {
      try {
        const pgFlush = await flushRow("pg flush", BankStateStore.pg({ url: Redacted.make(cluster.url) }), flushBanks)
        rows.push({
          id: "S2",
          figure: `flush of ${flushBanks.toLocaleString("en")} dirty banks, Postgres`,
          value: `${pgFlush.toFixed(0)} ms`,
          baseline: "—",
          target: "≤ 1 s",
          met: pgFlush <= 1000
        })
      } finally {
        cluster.stop()
      }
    }
    const { memory, sqlite } = await hotPathRatio(join(dir, "hot.db"), 1_000_000 / scale)
    rows.push({
      id: "S3",
      figure: "unsafeNotifyRetain with the SQLite store attached",
      value: `${(sqlite / 1e6).toFixed(1)} M/s (${((sqlite / memory) * 100).toFixed(0)} %)`,
      baseline: `memory-only queue ${(memory / 1e6).toFixed(1)} M/s`,
      target: "≥ 90 % of memory",
      met: sqlite >= 0.9 * memory
    })
    const restoreBanks = 1_000_000 / scale
    const restore = await restoreSeconds(join(dir, "restore.db"), restoreBanks)
    rows.push({
      id: "S4",
      figure: `restore of ${restoreBanks.toLocaleString("en")} banks at startup (SQLite)`,
      value: `${restore.toFixed(2)} s`,
      baseline: "—",
      target: "report",
      met: null
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  return rows
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await runStoreBench({ quick: process.argv.includes("--quick") })
  console.log("| # | figure | value | baseline | target | met |\n|---|---|---|---|---|---|")
  for (const row of rows) {
    console.log(`| ${row.id} | ${row.figure} | ${row.value} | ${row.baseline} | ${row.target} | ${row.met === null ? "—" : row.met ? "yes" : "no"} |`)
  }
}
