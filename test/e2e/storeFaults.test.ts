/**
 * End-to-end store faults: the real service (`node dist/bin.js`) under a load of retains while its store fails, then
 * killed with SIGKILL and started again on the same store, checked against a counting oracle.
 *
 * - SQLite on a 2 MB tmpfs filled up (SQLITE_FULL), then given room (`mount -o remount,size=64m`). Needs root (CI
 *   runs as root); skipped otherwise, with a message.
 * - Postgres, on a throwaway cluster of this file's own (so that restarting it disturbs no other test):
 *   `pg_terminate_backend` of the service's connections while they flush, and one restart that keeps the server down
 *   for a second.
 *
 * The oracle, per bank, with `counted` its `memoriesSinceLastCompile` read from the restarted service and `consumed`
 * the memories compiles took (none: the size threshold is out of reach, and the webhook receiver proves that no
 * compile ran):
 *
 * - counted + consumed ≤ sent (every retain sent, answered or not: nothing is invented, nothing counted twice);
 * - acked(before T) ≤ counted + consumed, where acked(before T) sums the counts of the requests answered 202 before T
 *   (a retain is counted in memory before its answer leaves), for three T:
 *   - the recovery: once a flush commits again, everything acknowledged before is stored (the store's health says
 *     so: `unflushed` 0, or `oldestUnflushedSeconds` bounds the time the last committed flush took its changes);
 *   - the newest such bound the test saw before the kill (what `/v1/queue` promised to be stored was stored);
 *   - the kill less one flush interval less the time of a flush or two (`COMPILE_FLUSH_INTERVAL` promises that "a crash
 *     loses at most this much"; a change made just after a flush took its list waits for the interval and the next
 *     flush, so the window is the interval plus flush times: see `WINDOW_SLACK_MILLIS`).
 *
 * No request of the whole run may be answered with a 5xx. Every loop is bounded in count and time; correctness waits
 * poll (`eventually`), never sleep.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import parsePrometheusTextFormat from "parse-prometheus-text-format"
import { findPgBinDir, startPgCluster } from "../support/pgCluster.js"
import { prng } from "../support/random.js"
import { eventually, type ServiceProcess, startService, startWebhook, type WebhookReceiver } from "../support/harness.js"

const FLUSH_MILLIS = 200
/**
 * Added to the flush interval for the "one flush interval before the kill" bound: the flush that takes a change may
 * start up to one interval plus the previous flush's duration after it, and commits after its own duration. Flushes of
 * a few thousand rows take tens of milliseconds, more on a loaded 2-core machine.
 */
const WINDOW_SLACK_MILLIS = 600
const isRoot = process.getuid?.() === 0
const pgInstalled = findPgBinDir() !== undefined

if (!isRoot) {
  console.warn("storeFaults: not running as root, so the SQLite disk-full test (it mounts a tmpfs) is skipped")
}
if (!pgInstalled && !process.env.CI) {
  console.warn("storeFaults: PostgreSQL is not installed: the Postgres fault test is skipped here (CI installs it)")
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const seeded = prng

// ---- requests, and every answer's status ----

interface Item {
  readonly bankId: string
  readonly count: number
}

interface Sent {
  readonly items: ReadonlyArray<Item>
  readonly sentAt: number
  /** When the 202 arrived (undefined: no 202). */
  ackedAt: number | undefined
  /** The status, or undefined when no answer came (connection refused or cut by the kill). */
  status: number | undefined
}

/** Every retain request of a run, and every 5xx any request got. */
class Ledger {
  readonly requests: Array<Sent> = []
  readonly serverErrors: Array<string> = []
  readonly otherStatuses: Array<string> = []

  /** A request whose 5xx is recorded; undefined when no answer came. */
  async http(base: string, path: string, init: RequestInit = {}): Promise<Response | undefined> {
    try {
      const response = await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(20_000) })
      if (response.status >= 500) {
        this.serverErrors.push(`${init.method ?? "GET"} ${path} → ${response.status}: ${(await response.text()).slice(0, 300)}`)
      }
      return response
    } catch {
      return undefined
    }
  }

  async retain(base: string, items: ReadonlyArray<Item>): Promise<Sent> {
    const sent: Sent = { items, sentAt: Date.now(), ackedAt: undefined, status: undefined }
    this.requests.push(sent)
    const response = await this.http(base, "/v1/retains", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(items)
    })
    if (response === undefined) return sent
    sent.status = response.status
    try {
      const body = (await response.json()) as { readonly retains?: number }
      if (response.status === 202) {
        expect(body.retains).toBe(items.reduce((sum, item) => sum + item.count, 0))
        sent.ackedAt = Date.now()
      } else this.otherStatuses.push(`${response.status}: ${JSON.stringify(body).slice(0, 200)}`)
    } catch {
      // the body was cut off (the kill): not acknowledged
    }
    return sent
  }
}

interface Load {
  readonly stop: () => Promise<void>
  readonly requests: () => number
}

/** `workers` loops sending batches of retains picked by `pick`, each bounded by `maxRequests` and `maxMillis`. */
const startLoad = (
  ledger: Ledger,
  base: string,
  options: {
    readonly workers: number
    readonly batch: number
    readonly pick: () => Item
    readonly pauseMillis: number
    readonly maxRequests: number
    readonly maxMillis: number
  }
): Load => {
  let stopped = false
  let requests = 0
  const worker = async () => {
    const until = Date.now() + options.maxMillis
    for (let n = 0; !stopped && n < options.maxRequests && Date.now() < until; n++) {
      requests++
      await ledger.retain(base, Array.from({ length: options.batch }, options.pick))
      if (options.pauseMillis > 0) await sleep(options.pauseMillis)
    }
  }
  const done = Promise.all(Array.from({ length: options.workers }, worker))
  return {
    stop: async () => {
      stopped = true
      await done
    },
    requests: () => requests
  }
}

// ---- the store's health, as the service reports it ----

interface StoreHealthJson {
  readonly healthy: boolean
  readonly unhealthySince: string | null
  readonly unflushed: number
  readonly oldestUnflushedSeconds: number
  readonly lastFlushAt: string | null
  readonly consecutiveFailures: number
  readonly failures: number
  readonly lastError: string | null
}

interface StoreSample {
  /** When the request was sent: the service computed the health at or after this. */
  readonly at: number
  readonly store: StoreHealthJson
}

const readStore = async (ledger: Ledger, base: string): Promise<StoreSample | undefined> => {
  const at = Date.now()
  const response = await ledger.http(base, "/v1/queue")
  if (response?.status !== 200) return undefined
  try {
    const queue = (await response.json()) as { readonly store: StoreHealthJson | null }
    return queue.store === null ? undefined : { at, store: queue.store }
  } catch {
    return undefined
  }
}

/**
 * A lower bound, on this process's clock, of the time the last committed flush took its changes: every retain
 * counted before it is stored. The service computed the health at some time N ≥ `at`; with nothing unflushed every
 * change before N is stored, else the last committed flush took its changes at N − oldestUnflushedSeconds.
 */
const storedBound = (sample: StoreSample): number =>
  sample.store.unflushed === 0 ? sample.at : sample.at - sample.store.oldestUnflushedSeconds * 1000

interface ReadyzSample {
  readonly at: number
  readonly status: number
  readonly body: { readonly status?: string; readonly message?: string; readonly store?: StoreHealthJson }
}

/** Polls `/v1/queue` (and `/readyz` every few rounds) until stopped: the samples and the best stored bound. */
class StoreWatch {
  readonly samples: Array<StoreSample> = []
  readonly readyz: Array<ReadyzSample> = []
  storedUpTo = -Infinity
  private stopped = false
  private readonly done: Promise<void>

  constructor(private readonly ledger: Ledger, private readonly base: string, maxMillis: number) {
    this.done = this.run(maxMillis)
  }

  private async run(maxMillis: number): Promise<void> {
    const until = Date.now() + maxMillis
    for (let n = 0; !this.stopped && n < 20_000 && Date.now() < until; n++) {
      const sample = await readStore(this.ledger, this.base)
      if (sample !== undefined) {
        this.samples.push(sample)
        this.storedUpTo = Math.max(this.storedUpTo, storedBound(sample))
      }
      if (n % 4 === 0) {
        const at = Date.now()
        const response = await this.ledger.http(this.base, "/readyz")
        if (response !== undefined) {
          try {
            this.readyz.push({ at, status: response.status, body: (await response.json()) as ReadyzSample["body"] })
          } catch {
            // cut off
          }
        }
      }
      await sleep(30)
    }
  }

  /** The first sample at or after `since` that reports the store healthy. */
  firstHealthy(since: number): StoreSample | undefined {
    return this.samples.find((sample) => sample.at >= since && sample.store.healthy)
  }

  get last(): StoreSample | undefined {
    return this.samples[this.samples.length - 1]
  }

  stop(): Promise<void> {
    this.stopped = true
    return this.done
  }
}

const metric = async (ledger: Ledger, base: string, name: string): Promise<number | undefined> => {
  const response = await ledger.http(base, "/metrics")
  if (response?.status !== 200) return undefined
  const family = parsePrometheusTextFormat(await response.text()).find((family) => family.name === name)
  return family === undefined ? undefined : family.metrics.reduce((sum, sample) => sum + Number(sample.value ?? 0), 0)
}

// ---- the oracle ----

/** Every bank's `memoriesSinceLastCompile` and status, through the listing (1,000 a page). */
const readBanks = async (ledger: Ledger, base: string): Promise<Map<string, { memories: number; status: string }>> => {
  const banks = new Map<string, { memories: number; status: string }>()
  let cursor: string | null = null
  for (let page = 0; page < 1_000; page++) {
    const query: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`
    const response = await ledger.http(base, `/v1/banks?limit=1000${query}`)
    if (response?.status !== 200) throw new Error(`listing the banks answered ${response?.status ?? "nothing"}`)
    const body = (await response.json()) as {
      readonly banks: ReadonlyArray<{ readonly bankId: string; readonly memoriesSinceLastCompile: number; readonly status: string }>
      readonly nextCursor: string | null
    }
    for (const bank of body.banks) banks.set(bank.bankId, { memories: bank.memoriesSinceLastCompile, status: bank.status })
    cursor = body.nextCursor
    if (cursor === null) return banks
  }
  throw new Error("more than 1,000 pages of banks")
}

interface Bound {
  readonly name: string
  /** Every retain acknowledged before this time must be counted. */
  readonly before: number
}

interface Audit {
  readonly banks: number
  readonly requests: number
  readonly acknowledgedRequests: number
  readonly sent: number
  readonly acknowledged: number
  readonly counted: number
  readonly consumed: number
  /** Per bound: the retains acknowledged before it, and the banks short of them. */
  readonly bounds: ReadonlyArray<{ readonly name: string; readonly acknowledged: number; readonly short: ReadonlyArray<string> }>
  /** Banks counting more than was sent. */
  readonly invented: ReadonlyArray<string>
  /** Acknowledged retains missing after the restart (allowed only after the last bound). */
  readonly lost: number
  /** How long before the kill the oldest lost acknowledgement arrived (0: none lost). */
  readonly lossWindowMillis: number
}

const audit = (
  requests: ReadonlyArray<Sent>,
  counted: ReadonlyMap<string, { memories: number }>,
  consumed: ReadonlyMap<string, number>,
  bounds: ReadonlyArray<Bound>,
  killedAt: number
): Audit => {
  const sent = new Map<string, number>()
  const acks = new Map<string, Array<readonly [number, number]>>()
  for (const request of requests) {
    const perBank = new Map<string, number>()
    for (const item of request.items) perBank.set(item.bankId, (perBank.get(item.bankId) ?? 0) + item.count)
    for (const [bankId, count] of perBank) {
      sent.set(bankId, (sent.get(bankId) ?? 0) + count)
      if (request.ackedAt !== undefined) {
        const list = acks.get(bankId) ?? []
        list.push([request.ackedAt, count])
        acks.set(bankId, list)
      }
    }
  }
  const stored = (bankId: string) => (counted.get(bankId)?.memories ?? 0) + (consumed.get(bankId) ?? 0)
  const invented: Array<string> = []
  for (const bankId of new Set([...sent.keys(), ...counted.keys()])) {
    if (stored(bankId) > (sent.get(bankId) ?? 0)) invented.push(`${bankId}: ${stored(bankId)} > sent ${sent.get(bankId) ?? 0}`)
  }
  const results = bounds.map((bound) => {
    let acknowledged = 0
    const short: Array<string> = []
    for (const [bankId, list] of acks) {
      const before = list.reduce((sum, [at, count]) => (at < bound.before ? sum + count : sum), 0)
      acknowledged += before
      if (before > stored(bankId)) short.push(`${bankId}: acknowledged ${before}, counted ${stored(bankId)}`)
    }
    return { name: bound.name, acknowledged, short }
  })
  let lost = 0
  let oldestLost = killedAt
  let acknowledged = 0
  for (const [bankId, list] of acks) {
    list.sort((a, b) => a[0] - b[0])
    let sum = 0
    for (const [at, count] of list) {
      sum += count
      if (sum > stored(bankId)) {
        oldestLost = Math.min(oldestLost, at)
        break
      }
    }
    acknowledged += sum
    lost += Math.max(0, sum - stored(bankId))
  }
  const sum = (map: ReadonlyMap<string, number>) => Array.from(map.values()).reduce((a, b) => a + b, 0)
  return {
    banks: sent.size,
    requests: requests.length,
    acknowledgedRequests: requests.filter((request) => request.ackedAt !== undefined).length,
    sent: sum(sent),
    acknowledged,
    counted: Array.from(counted.values()).reduce((total, bank) => total + bank.memories, 0),
    consumed: sum(consumed),
    bounds: results,
    invented,
    lost,
    lossWindowMillis: killedAt - oldestLost
  }
}

/** The oracle's assertions, with the figures printed. */
const expectAudit = (label: string, result: Audit) => {
  console.info(`${label}: ${JSON.stringify({ ...result, bounds: result.bounds.map((b) => ({ ...b, short: b.short.length })) })}`)
  expect(result.invented, "banks counting more than was sent").toEqual([])
  for (const bound of result.bounds) {
    expect(bound.short.slice(0, 10), `banks short of what was acknowledged ${bound.name}`).toEqual([])
  }
}

/** Memories each bank's compiles took, from the receiver's log (the job names the counter it consumes). */
const consumedBy = (webhook: WebhookReceiver): Map<string, number> => {
  const consumed = new Map<string, number>()
  for (const call of webhook.calls) {
    if (call.answered) consumed.set(call.bankId, (consumed.get(call.bankId) ?? 0) + Number(call.body.memories ?? 0))
  }
  return consumed
}

const serviceEnv = (webhook: WebhookReceiver) => ({
  COMPILE_FLUSH_INTERVAL: `${FLUSH_MILLIS} millis`,
  // No compile: the counters only grow, so the oracle reads them straight (the receiver proves none ran).
  COMPILE_SIZE_THRESHOLD: "1000000000",
  COMPILE_STALENESS_MIN_MEMORIES: "1000000000",
  COMPILE_WEBHOOK_URL: webhook.url
})

const killHard = async (service: ServiceProcess): Promise<number> => {
  const at = Date.now()
  service.child.kill("SIGKILL")
  const exit = await service.exited
  expect(exit.signal).toBe("SIGKILL")
  return at
}

const lines = (output: string, pattern: RegExp) => output.split("\n").filter((line) => pattern.test(line))

/** Clean-up that must not hide the test's own failure, nor stop the clean-up after it. */
const quietly = async (cleanUp: () => unknown): Promise<void> => {
  try {
    await cleanUp()
  } catch (error) {
    console.warn(`storeFaults: clean-up failed: ${String(error)}`)
  }
}

// ---- Postgres: terminating the service's sessions ----

interface PgQueryResult {
  readonly rows: ReadonlyArray<Record<string, unknown>>
}
interface PgClient {
  connect(): Promise<void>
  query(text: string): Promise<PgQueryResult>
  end(): Promise<void>
  on(event: "error", listener: (error: Error) => void): unknown
}
interface PgModule {
  readonly Client: new (options: { readonly connectionString: string; readonly application_name: string }) => PgClient
}

/** `pg` (installed with @effect/sql-pg; it ships no types, hence this interface), loaded by the Postgres test only. */
const loadPg = (): PgModule => createRequire(import.meta.url)("pg") as PgModule

/** The service's sessions: @effect/sql-pg names its pool's connections so (the single-node service sets no name). */
const SERVICE_APPLICATION = "@effect/sql-pg"

/** One session of this test; `use` it and it is closed. */
const withPg = async <A>(url: string, use: (client: PgClient) => Promise<A>): Promise<A> => {
  const client = new (loadPg().Client)({ connectionString: url, application_name: "ect-store-faults" })
  client.on("error", () => {})
  await client.connect()
  try {
    return await use(client)
  } finally {
    await client.end().catch(() => {})
  }
}

/**
 * Terminates the service's sessions that are busy (a flush: `active` or `idle in transaction`) as soon as one is seen
 * (polling for up to `millis`), then every session of the service. Returns [busy terminated, all terminated].
 */
const terminateDuringFlush = (url: string, millis: number): Promise<readonly [number, number]> =>
  withPg(url, async (client) => {
    const until = Date.now() + millis
    let busy = 0
    for (let n = 0; busy === 0 && n < 2_000 && Date.now() < until; n++) {
      const result = await client.query(
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
         WHERE application_name = '${SERVICE_APPLICATION}' AND pid <> pg_backend_pid() AND state <> 'idle'`
      )
      busy += result.rows.filter((row) => row.ok === true).length
      if (busy === 0) await sleep(3)
    }
    const all = await client.query(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
       WHERE application_name = '${SERVICE_APPLICATION}' AND pid <> pg_backend_pid()`
    )
    return [busy, all.rows.filter((row) => row.ok === true).length] as const
  })

const serviceSessions = (url: string): Promise<number> =>
  withPg(url, async (client) => {
    const result = await client.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = '${SERVICE_APPLICATION}'`
    )
    return Number(result.rows[0]?.n ?? 0)
  })

describe("store faults under load: kill -9 and restart, every acknowledged retain counted", () => {
  it.skipIf(!isRoot)("SQLite on a full tmpfs: failures logged and counted, flushing resumes once there is room", async () => {
    const seed = Date.now() >>> 0
    const random = seeded(seed)
    console.info(`storeFaults sqlite: seed ${seed}`)
    const root = mkdtempSync(join(tmpdir(), "ect-store-full-"))
    const dataDir = join(root, "data")
    mkdirSync(dataDir)
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", dataDir])
    const webhook = await startWebhook()
    const ledger = new Ledger()
    const env = { ...serviceEnv(webhook), DATA_DIR: dataDir }
    let first: ServiceProcess | undefined
    let second: ServiceProcess | undefined
    let watch: StoreWatch | undefined
    let load: Load | undefined
    try {
      first = await startService(env)
      const base = first.base
      watch = new StoreWatch(ledger, base, 120_000)

      // 1. Fill the disk: batches of 1,000 new banks with long ids until a flush fails (2 MB hold a few thousand).
      const fillIds: Array<string> = []
      const fillStart = Date.now()
      for (let batch = 0; batch < 100 && Date.now() - fillStart < 30_000; batch++) {
        const items = Array.from({ length: 1_000 }, (_, i) => {
          const bankId = `fill-${String(batch * 1_000 + i).padStart(6, "0")}-${"x".repeat(150)}`
          fillIds.push(bankId)
          return { bankId, count: 1 + Math.floor(random() * 3) }
        })
        expect((await ledger.retain(base, items)).status).toBe(202)
        const failing = await eventually(
          () => readStore(ledger, base),
          (sample) => sample !== undefined && (sample.store.failures > 0 || sample.store.unflushed === 0),
          20_000
        )
        if (failing !== undefined && failing.store.failures > 0) break
      }
      const full = await eventually(() => readStore(ledger, base), (sample) => sample?.store.healthy === false, 20_000)
      const filledAt = Date.now()
      console.info(
        `storeFaults sqlite: disk full after ${fillIds.length} banks in ${filledAt - fillStart} ms: ${full?.store.lastError}`
      )

      // 2. Load while the disk is full: retains keep being answered 202 (ACK_MODE=memory), failures are counted.
      const hot = Array.from({ length: 300 }, (_, i) => `hot-${i}`)
      const pick = (): Item => ({
        bankId: random() < 0.5 ? hot[Math.floor(random() * hot.length)]! : fillIds[Math.floor(random() * fillIds.length)]!,
        count: 1 + Math.floor(random() * 5)
      })
      const loadOptions = { workers: 2, batch: 100, pick, pauseMillis: 10, maxRequests: 2_000, maxMillis: 30_000 }
      load = startLoad(ledger, base, loadOptions)
      const whileFull = await eventually(
        async () => ({
          sample: await readStore(ledger, base),
          failures: await metric(ledger, base, "compile_trigger_store_flush_failures_total"),
          healthy: await metric(ledger, base, "compile_trigger_store_healthy"),
          unflushedGauge: await metric(ledger, base, "compile_trigger_store_unflushed_changes"),
          readyz: await ledger.http(base, "/readyz").then(async (response) =>
            response === undefined ? undefined : { status: response.status, body: (await response.json()) as ReadyzSample["body"] }
          ),
          loaded: load?.requests() ?? 0
        }),
        (state) =>
          state.sample !== undefined && !state.sample.store.healthy && state.sample.store.failures >= 3 &&
          state.sample.store.unflushed > 0 && (state.failures ?? 0) >= 3 && state.healthy === 0 &&
          (state.unflushedGauge ?? 0) > 0 && state.readyz?.status === 200 && state.readyz.body.status === "degraded" &&
          state.loaded >= 20 && Date.now() - filledAt >= 1_000,
        30_000
      )
      expect(whileFull.sample?.store.lastError).toMatch(/full|SQLITE_FULL/i)
      expect(whileFull.readyz?.body.message).toMatch(/store unhealthy/)
      expect(lines(first.output(), /WARN.*flushing bank state failed/).length).toBeGreaterThanOrEqual(1)
      await load.stop()
      const failingStats = await readStore(ledger, base)

      // 3. Room again: flushing resumes by itself, everything acknowledged so far gets stored.
      const remountedAt = Date.now()
      execFileSync("mount", ["-o", "remount,size=64m", dataDir])
      const recovered = await eventually(
        () => readStore(ledger, base),
        (sample) => sample !== undefined && sample.store.healthy && sample.store.unflushed === 0,
        30_000
      )
      const recoveredAt = recovered!.at
      const firstHealthy = watch.firstHealthy(remountedAt)?.at ?? recoveredAt
      expect(lines(first.output(), /flushing bank state works again/).length).toBeGreaterThanOrEqual(1)
      const readyAgain = await ledger.http(base, "/readyz")
      expect(await readyAgain?.json()).toMatchObject({ status: "ready", store: { healthy: true } })
      expect(await metric(ledger, base, "compile_trigger_store_healthy")).toBe(1)

      // 4. Load again, then kill -9 at a moment the test does not pick with the store: after the service reported a
      // flush committed that took the changes of a fence, and a random while more.
      load = startLoad(ledger, base, loadOptions)
      const fence = Date.now() + 300
      await eventually(() => Promise.resolve(watch!.storedUpTo), (bound) => bound >= fence, 20_000)
      await sleep(Math.max(0, fence + 1_500 - Date.now()) + Math.floor(random() * 500))
      const failuresBeforeKill = await metric(ledger, base, "compile_trigger_store_flush_failures_total")
      await watch.stop()
      const storedUpTo = watch.storedUpTo
      const killedAt = await killHard(first)
      await load.stop()
      const failLines = lines(first.output(), /flushing bank state failed/)
      if (process.env.STORE_FAULTS_DEBUG) console.info(first.output())

      // 5. Restart on the same DATA_DIR, check the books.
      second = await startService(env)
      const counted = await readBanks(ledger, second.base)
      expect(webhook.calls).toEqual([])
      const result = audit(ledger.requests, counted, consumedBy(webhook), [
        { name: "before the recovery", before: recoveredAt },
        { name: "before the last flush the service reported committed", before: storedUpTo },
        { name: `more than ${FLUSH_MILLIS} ms (+${WINDOW_SLACK_MILLIS} ms) before the kill`, before: killedAt - FLUSH_MILLIS - WINDOW_SLACK_MILLIS }
      ], killedAt)
      console.info(
        `storeFaults sqlite: ${JSON.stringify({
          fillBanks: fillIds.length,
          failures: failuresBeforeKill,
          failLogLines: failLines.length,
          failingFor: failingStats === undefined ? null : remountedAt - Date.parse(failingStats.store.unhealthySince ?? ""),
          unflushedWhileFull: failingStats?.store.unflushed,
          recoveryMillis: recoveredAt - remountedAt,
          firstHealthyMillis: firstHealthy - remountedAt,
          killedAfterStoredMillis: killedAt - storedUpTo
        })}`
      )
      expectAudit("storeFaults sqlite audit", result)
      expect(failuresBeforeKill).toBeGreaterThanOrEqual(3)
      for (const bank of counted.values()) expect(bank.status).toBe("idle")
      expect(ledger.serverErrors).toEqual([])
    } finally {
      await quietly(() => watch?.stop())
      await quietly(() => load?.stop())
      await quietly(() => first?.stop(1000))
      await quietly(() => second?.stop(5000))
      await quietly(() => webhook.close())
      await quietly(() => {
        try {
          execFileSync("umount", [dataDir])
        } catch {
          execFileSync("umount", ["-l", dataDir])
        }
      })
      await quietly(() => rmSync(root, { recursive: true, force: true }))
    }
  }, 120_000)

  it.skipIf(!pgInstalled && !process.env.CI)(
    "Postgres: sessions terminated during flushes and a restart of the server: failures logged and counted, flushing resumes",
    async () => {
      const seed = Date.now() >>> 0
      const random = seeded(seed)
      console.info(`storeFaults pg: seed ${seed}`)
      const cluster = await startPgCluster()
      if (cluster === undefined) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql")
      const webhook = await startWebhook()
      const ledger = new Ledger()
      const env = { ...serviceEnv(webhook), DATABASE_URL: cluster.url }
      let first: ServiceProcess | undefined
      let second: ServiceProcess | undefined
      let watch: StoreWatch | undefined
      let load: Load | undefined
      try {
        first = await startService(env)
        const base = first.base
        watch = new StoreWatch(ledger, base, 120_000)
        // 4,000 banks, a tenth of the picks on 100 hot ones: flushes write a few thousand rows, so they take a while.
        const pick = (): Item => ({
          bankId: random() < 0.1 ? `pg-hot-${Math.floor(random() * 100)}` : `pg-${Math.floor(random() * 4_000)}`,
          count: 1 + Math.floor(random() * 5)
        })
        load = startLoad(ledger, base, { workers: 2, batch: 200, pick, pauseMillis: 10, maxRequests: 5_000, maxMillis: 90_000 })
        await eventually(() => Promise.resolve(watch!.samples.filter((s) => s.store.healthy).length), (n) => n >= 3, 20_000)
        await eventually(() => serviceSessions(cluster.url), (n) => n >= 1, 20_000)

        // 1. Terminate the service's sessions, during a flush when one is caught in the act, several times; each time
        // once flushing works again (a retry caught too would only lengthen the backoff).
        const terminated: Array<readonly [number, number]> = []
        const terminationRecoveries: Array<number> = []
        let terminatedAt = Date.now()
        for (let round = 0; round < 4; round++) {
          const healthy = await eventually(
            () => Promise.resolve(watch!.firstHealthy(terminatedAt + 1)),
            (sample) => sample !== undefined,
            20_000
          )
          if (round > 0) terminationRecoveries.push(healthy!.at - terminatedAt)
          await sleep(Math.floor(random() * 200))
          terminated.push(await terminateDuringFlush(cluster.url, 2_000))
          terminatedAt = Date.now()
        }
        const afterTerminate = await eventually(
          () => metric(ledger, base, "compile_trigger_store_flush_failures_total"),
          (failures) => (failures ?? 0) >= 1,
          10_000
        )
        const busyTerminated = terminated.reduce((sum, [busy]) => sum + busy, 0)
        expect(terminated.reduce((sum, [busy, rest]) => sum + busy + rest, 0)).toBeGreaterThanOrEqual(4)
        expect(busyTerminated).toBeGreaterThanOrEqual(1)
        await eventually(() => Promise.resolve(watch!.firstHealthy(terminatedAt + 1)), (sample) => sample !== undefined, 20_000)

        // 2. Restart Postgres, down for a second (`-m immediate`: every session ends as in a crash).
        const restartAt = Date.now()
        await cluster.restart(1000)
        const restartedAt = Date.now()
        const recovered = await eventually(
          () => Promise.resolve(watch!.firstHealthy(restartedAt)),
          (sample) => sample !== undefined,
          30_000
        )
        const recoveredAt = recovered!.at
        const failures = await metric(ledger, base, "compile_trigger_store_flush_failures_total")
        const outage = watch.samples.filter((sample) => sample.at >= restartAt && sample.at < recoveredAt && !sample.store.healthy)
        const degraded = watch.readyz.filter((sample) => sample.status === 200 && sample.body.status === "degraded")

        // 3. Everything acknowledged before the recovery gets stored, under load; then kill -9 a random while later.
        await eventually(() => Promise.resolve(watch!.storedUpTo), (bound) => bound >= recoveredAt, 20_000)
        await sleep(Math.max(0, recoveredAt + 1_500 - Date.now()) + Math.floor(random() * 500))
        await watch.stop()
        const storedUpTo = watch.storedUpTo
        const killedAt = await killHard(first)
        await load.stop()
        const output = first.output()
        if (process.env.STORE_FAULTS_DEBUG) console.info(output)

        second = await startService(env)
        const counted = await readBanks(ledger, second.base)
        expect(webhook.calls).toEqual([])
        const result = audit(ledger.requests, counted, consumedBy(webhook), [
          { name: "before the recovery", before: recoveredAt },
          { name: "before the last flush the service reported committed", before: storedUpTo },
          { name: `more than ${FLUSH_MILLIS} ms (+${WINDOW_SLACK_MILLIS} ms) before the kill`, before: killedAt - FLUSH_MILLIS - WINDOW_SLACK_MILLIS }
        ], killedAt)
        console.info(
          `storeFaults pg: ${JSON.stringify({
            terminated,
            terminationRecoveries,
            failuresAfterTerminate: afterTerminate,
            failures,
            failLogLines: lines(output, /flushing bank state failed/).length,
            unhealthySamplesDuringOutage: outage.length,
            maxUnflushed: Math.max(0, ...watch.samples.map((sample) => sample.store.unflushed)),
            degradedReadyz: degraded.length,
            restartMillis: restartedAt - restartAt,
            recoveryMillis: recoveredAt - restartedAt,
            killedAfterStoredMillis: killedAt - storedUpTo
          })}`
        )
        expectAudit("storeFaults pg audit", result)
        expect(failures).toBeGreaterThan(afterTerminate ?? 0)
        expect(outage.length).toBeGreaterThanOrEqual(1)
        expect(degraded.length).toBeGreaterThanOrEqual(1)
        expect(lines(output, /WARN.*flushing bank state failed/).length).toBeGreaterThanOrEqual(1)
        expect(lines(output, /flushing bank state works again/).length).toBeGreaterThanOrEqual(1)
        for (const bank of counted.values()) expect(bank.status).toBe("idle")
        expect(ledger.serverErrors).toEqual([])
      } finally {
        await quietly(() => watch?.stop())
        await quietly(() => load?.stop())
        await quietly(() => first?.stop(1000))
        await quietly(() => second?.stop(5000))
        await quietly(() => webhook.close())
        cluster.stop()
      }
    },
    120_000
  )
})
