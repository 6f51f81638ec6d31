/**
 * `ACK_MODE=durable` end to end: the built service (`node dist/bin.js`) on SQLite, whose write routes answer 202 only
 * once the flush holding the write committed.
 *
 * - Crashes under load: the service is killed with SIGKILL at a random moment while several clients send single
 *   retains and batches, 20 times on one DATA_DIR. Every 202 is recorded; after each restart, for every bank,
 *   acknowledged ≤ counted ≤ sent (what the clients sent, answered or not). No compile runs (thresholds out of
 *   reach), so `memoriesSinceLastCompile` is exactly what was counted and stored.
 * - A failing store: SQLite on a 2 MiB tmpfs (root only) filled with distinct banks until flushes fail. Writes then
 *   answer 503 StoreUnavailable — never 202 — and /readyz 503 `store_unhealthy`; after the tmpfs is remounted
 *   larger they answer 202 again, and after a kill -9 every 202 is counted.
 *
 * Set DURABLE_ACK_SEED to replay one run's random choices (the seed is printed).
 */
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { eventually, type ServiceProcess, startService } from "../support/harness.js"
import { prng } from "../support/random.js"

// --- a seeded generator -------------------------------------------------------------------------------------------

const SEED = Number(process.env.DURABLE_ACK_SEED ?? Math.floor(Math.random() * 2 ** 31))

/** Seeded picks of banks and moments. */
const generator = (seed: number) => {
  const next = prng(seed)
  /** An integer in [min, max]. */
  const int = (min: number, max: number): number => min + Math.floor(next() * (max - min + 1))
  return { next, int }
}
type Random = ReturnType<typeof generator>

// --- the ledger of what was sent and what was acknowledged ----------------------------------------------------------

/** One write: its route, its body, and the retains it carries per bank. */
interface Write {
  readonly path: string
  readonly body: string
  readonly retains: ReadonlyArray<readonly [bankId: string, count: number]>
}

type Outcome =
  | { readonly _tag: "answered"; readonly status: number; readonly body: string }
  | { readonly _tag: "unanswered"; readonly error: string }

const add = (map: Map<string, number>, bankId: string, count: number) => map.set(bankId, (map.get(bankId) ?? 0) + count)

class Ledger {
  /** Retains per bank in every write sent, answered or not (an unanswered one may or may not have been counted). */
  readonly sent = new Map<string, number>()
  /** Retains per bank in every write answered 202. */
  readonly acknowledged = new Map<string, number>()
  writes = 0
  accepted = 0
  unanswered = 0
  /** Writes sent and not answered yet. */
  inFlight = 0
  /** Answers other than 202, with their bodies. */
  readonly refused: Array<{ readonly path: string; readonly status: number; readonly body: string }> = []

  /** Sends `write` (counted as sent before it leaves); a 202 counts it as acknowledged. */
  async send(base: string, write: Write): Promise<Outcome> {
    this.writes++
    for (const [bankId, count] of write.retains) add(this.sent, bankId, count)
    let status: number
    let text: Promise<string>
    this.inFlight++
    try {
      const response = await fetch(`${base}${write.path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: write.body,
        signal: AbortSignal.timeout(30_000)
      })
      status = response.status
      text = response.text()
    } catch (error) {
      this.unanswered++
      return { _tag: "unanswered", error: String(error) }
    } finally {
      this.inFlight--
    }
    // The status line is the acknowledgement: durable mode writes it only after the commit, so a body cut off by
    // the kill still means "stored".
    if (status === 202) {
      this.accepted++
      for (const [bankId, count] of write.retains) add(this.acknowledged, bankId, count)
    }
    const body = await text.catch((error: unknown) => `(body cut off: ${String(error)})`)
    if (status !== 202) this.refused.push({ path: write.path, status, body })
    return { _tag: "answered", status, body }
  }

  /** Every bank where counted < acknowledged (a lost acknowledged retain) or counted > sent (counted from nowhere). */
  violations(counted: ReadonlyMap<string, number>): Array<string> {
    const found: Array<string> = []
    for (const [bankId, sent] of this.sent) {
      const acknowledged = this.acknowledged.get(bankId) ?? 0
      const stored = counted.get(bankId) ?? 0
      if (stored < acknowledged || stored > sent) {
        found.push(`${bankId}: acknowledged ${acknowledged}, counted ${stored}, sent ${sent}`)
      }
    }
    for (const [bankId, stored] of counted) {
      if (!this.sent.has(bankId) && stored > 0) found.push(`${bankId}: counted ${stored}, never sent`)
    }
    return found
  }

  totals(counted: ReadonlyMap<string, number>) {
    const sum = (map: ReadonlyMap<string, number>) => Array.from(map.values()).reduce((a, b) => a + b, 0)
    return { acknowledged: sum(this.acknowledged), counted: sum(counted), sent: sum(this.sent) }
  }
}

const single = (bankId: string, count: number): Write => ({
  path: `/v1/banks/${bankId}/retain`,
  body: JSON.stringify({ count }),
  retains: [[bankId, count]]
})

const batch = (items: ReadonlyArray<readonly [string, number]>): Write => ({
  path: "/v1/retains",
  body: JSON.stringify(items.map(([bankId, count]) => ({ bankId, count }))),
  retains: items
})

/** Every bank's `memoriesSinceLastCompile`, read page by page (bounded). */
const countedByBank = async (base: string): Promise<Map<string, number>> => {
  const counted = new Map<string, number>()
  let cursor: string | null = null
  for (let page = 0; page < 1_000; page++) {
    const query: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`
    const response = await fetch(`${base}/v1/banks?limit=1000${query}`)
    expect(response.status).toBe(200)
    const body = (await response.json()) as {
      readonly banks: ReadonlyArray<{ readonly bankId: string; readonly memoriesSinceLastCompile: number }>
      readonly nextCursor: string | null
    }
    for (const bank of body.banks) counted.set(bank.bankId, bank.memoriesSinceLastCompile)
    cursor = body.nextCursor
    if (cursor === null) return counted
  }
  throw new Error("more than 1,000 pages of banks")
}

/** Nothing compiles, so every bank's counter only grows by what was retained. */
const NO_COMPILES = {
  ACK_MODE: "durable",
  COMPILE_SIZE_THRESHOLD: "1000000000",
  COMPILE_STALENESS_DAYS: "3650",
  COMPILE_STALENESS_MIN_MEMORIES: "1000000000",
  LOG_LEVEL: "warn"
} as const

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const killed = async (service: ServiceProcess): Promise<void> => {
  service.child.kill("SIGKILL")
  await service.exited
}

// --- tmpfs (root only) ----------------------------------------------------------------------------------------------

const mount = (...args: Array<string>) => execFileSync("mount", args, { stdio: ["ignore", "ignore", "pipe"] })

/** Why a tmpfs cannot be mounted here, or undefined when it can (tried once, on a scratch directory). */
const tmpfsUnavailable = ((): string | undefined => {
  if (process.platform !== "linux") return `needs Linux (this is ${process.platform})`
  if (process.getuid?.() !== 0) return "needs root to mount a tmpfs (run as root, e.g. in CI's container)"
  const dir = mkdtempSync(join(tmpdir(), "ect-tmpfs-probe-"))
  try {
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", dir)
    execFileSync("umount", [dir])
    return undefined
  } catch (error) {
    return `mount -t tmpfs failed here: ${String(error).split("\n")[0]}`
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})()

if (tmpfsUnavailable !== undefined) {
  console.warn(`durableAck.test.ts: the full-disk test is skipped: ${tmpfsUnavailable}`)
}

const unmount = async (dir: string): Promise<void> => {
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      execFileSync("umount", [dir], { stdio: ["ignore", "ignore", "pipe"] })
      return
    } catch (error) {
      if (attempt === 19) throw error
      await sleep(250) // a process that was just killed may still hold a file open
    }
  }
}

// --- the tests ----------------------------------------------------------------------------------------------------

const CYCLES = 20
const CLIENTS = 8
const BANKS = 200

describe.concurrent("ACK_MODE=durable", () => {
  it(`kill -9 under load, ${CYCLES} times: every acknowledged retain is counted after the restart`, async () => {
    const random = generator(SEED)
    const dataDir = mkdtempSync(join(tmpdir(), "ect-durable-ack-"))
    const env = { ...NO_COMPILES, DATA_DIR: dataDir }
    const ledger = new Ledger()
    const bankId = (r: Random) => `bank-${r.int(0, BANKS - 1)}`
    const nextWrite = (r: Random): Write =>
      r.next() < 0.6
        ? single(bankId(r), r.int(1, 3))
        : batch(Array.from({ length: r.int(1, 100) }, () => [bankId(r), r.int(1, 5)] as const))
    const perCycle: Array<string> = []
    let inFlightAtKills = 0
    let service: ServiceProcess | undefined
    try {
      for (let cycle = 0; cycle < CYCLES; cycle++) {
        service = await startService(env)
        // What the previous cycles acknowledged is there, and nothing more than they sent.
        const restored = await countedByBank(service.base)
        expect(ledger.violations(restored), `seed ${SEED}: after restart ${cycle}`).toEqual([])

        const before = { writes: ledger.writes, accepted: ledger.accepted, unanswered: ledger.unanswered }
        const base = service.base
        let stopped = false
        const clients = Array.from({ length: CLIENTS }, async (_, client) => {
          // Each client has its own generator, so its writes do not depend on how the others interleave.
          const own = generator(SEED + 7919 * (cycle * CLIENTS + client + 1))
          for (let n = 0; n < 100_000 && !stopped; n++) {
            if ((await ledger.send(base, nextWrite(own)))._tag === "unanswered") return
          }
        })
        const loadMs = random.int(100, 600)
        await sleep(loadMs)
        const inFlight = ledger.inFlight
        inFlightAtKills += inFlight
        await killed(service)
        stopped = true
        await Promise.all(clients)
        perCycle.push(
          `${loadMs} ms: ${ledger.writes - before.writes} sent, ${ledger.accepted - before.accepted} acknowledged, ` +
            `${inFlight} in flight at the kill`
        )
        expect(ledger.refused, `seed ${SEED}: ${service.output()}`).toEqual([])
      }

      service = await startService(env)
      const counted = await countedByBank(service.base)
      const totals = ledger.totals(counted)
      console.log(
        `durable acks under kill -9 (seed ${SEED}): ${ledger.writes} writes, ${ledger.accepted} acknowledged, ` +
          `${ledger.unanswered} unanswered; retains acknowledged ${totals.acknowledged} <= counted ` +
          `${totals.counted} <= sent ${totals.sent}\n  ${perCycle.join("\n  ")}`
      )
      expect(ledger.violations(counted), `seed ${SEED}: after the last restart`).toEqual([])
      expect(ledger.refused).toEqual([])
      // The kills landed mid-load (writes in flight) and the load was real (many writes acknowledged).
      expect(inFlightAtKills).toBeGreaterThanOrEqual(CYCLES)
      expect(ledger.accepted).toBeGreaterThan(CYCLES * 5)
    } finally {
      if (service !== undefined) await killed(service)
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 240_000)

  const fullDisk = "a store that fails (a full tmpfs) answers 503 StoreUnavailable, never a 202 it cannot keep"
  ;(tmpfsUnavailable === undefined ? it : it.skip)(
    tmpfsUnavailable === undefined ? fullDisk : `${fullDisk} (skipped: ${tmpfsUnavailable})`,
    async () => {
      const random = generator(SEED ^ 0x5bd1e995)
      const dir = mkdtempSync(join(tmpdir(), "ect-durable-full-"))
      let mounted = false
      // A short interval: retries after a failure back off from it (capped at 5 s).
      const env = { ...NO_COMPILES, DATA_DIR: dir, COMPILE_FLUSH_INTERVAL: "200 millis" }
      const ledger = new Ledger()
      const services: Array<ServiceProcess> = []
      try {
        mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", dir)
        mounted = true
        const first = await startService(env)
        services.push(first)
        // Long, distinct bank ids fill the database (and its WAL) fast; a few hot banks are updated all along.
        const pad = "x".repeat(150)
        let fresh = 0
        const freshBatch = () =>
          batch(Array.from({ length: 500 }, () => [`full-${pad}-${fresh++}`, random.int(1, 3)] as const))
        const hot = () => single(`hot-${random.int(0, 3)}`, random.int(1, 3))

        // 1. Fill the 2 MiB until a write is refused.
        let refusedAt: number | undefined
        for (let round = 0; round < 100 && refusedAt === undefined; round++) {
          const outcomes = await Promise.all([
            ledger.send(first.base, freshBatch()),
            ...Array.from({ length: 3 }, () => ledger.send(first.base, hot()))
          ])
          for (const outcome of outcomes) {
            expect(outcome._tag, JSON.stringify(outcome)).toBe("answered")
            if (outcome._tag !== "answered" || outcome.status === 202) continue
            expect(outcome.status, outcome.body).toBe(503)
            expect(JSON.parse(outcome.body)).toMatchObject({ _tag: "StoreUnavailable" })
            refusedAt = round
          }
        }
        expect(refusedAt, "the 2 MiB tmpfs never filled up").toBeDefined()
        const acknowledgedWhileFilling = ledger.accepted
        expect(acknowledgedWhileFilling).toBeGreaterThan(0)

        // 2. Not ready, and every write refused while the disk is full: retains, batches, a policy, a compile-now.
        const notReady = await eventually(
          async () => {
            const response = await fetch(`${first.base}/readyz`)
            return { status: response.status, body: await response.text() }
          },
          (read) => read.status === 503,
          20_000
        )
        expect(JSON.parse(notReady.body)).toMatchObject({ _tag: "NotReady", state: "store_unhealthy" })
        const whileFull = await Promise.all([
          ledger.send(first.base, hot()),
          ledger.send(first.base, single("while-full", 1)),
          ledger.send(first.base, batch([["while-full", 2], ["hot-0", 1]]))
        ])
        const policy = await fetch(`${first.base}/v1/banks/policy-probe/policy`, {
          method: "PUT",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ enabled: false })
        })
        // A bank that only ever compiles (the dry-run engine consumes nothing it counts): outside the ledger.
        const compile = await fetch(`${first.base}/v1/banks/compile-probe/compile`, { method: "POST" })
        const answers = [
          ...whileFull.map((outcome) => outcome._tag === "answered" ? outcome : { status: 0, body: outcome.error }),
          { status: policy.status, body: await policy.text() },
          { status: compile.status, body: await compile.text() }
        ]
        for (const answer of answers) {
          expect(answer.status, answer.body).toBe(503)
          expect(JSON.parse(answer.body)).toMatchObject({ _tag: "StoreUnavailable" })
        }
        expect(ledger.accepted).toBe(acknowledgedWhileFilling)

        // 3. Room again: writes are acknowledged once the write-behind's next retry commits (its backoff ≤ 5 s).
        mount("-o", "remount,size=64m", dir)
        await eventually(
          () => ledger.send(first.base, single(`after-${random.int(0, 9)}`, 1)),
          (outcome) => outcome._tag === "answered" && outcome.status === 202,
          30_000
        )
        await eventually(
          () => fetch(`${first.base}/readyz`).then((response) => response.status),
          (status) => status === 200,
          20_000
        )
        const afterRemount = await Promise.all([
          ledger.send(first.base, freshBatch()),
          ledger.send(first.base, hot()),
          ledger.send(first.base, single("while-full", 1))
        ])
        for (const outcome of afterRemount) expect(outcome).toMatchObject({ _tag: "answered", status: 202 })

        // 4. kill -9 and restart: every acknowledged write is there.
        await killed(first)
        const second = await startService(env)
        services.push(second)
        const counted = await countedByBank(second.base)
        const totals = ledger.totals(counted)
        console.log(
          `durable acks on a full disk: refused from round ${refusedAt}; ${ledger.writes} writes, ${ledger.accepted} ` +
            `acknowledged, ${ledger.refused.length} refused; retains acknowledged ${totals.acknowledged} <= counted ` +
            `${totals.counted} <= sent ${totals.sent}`
        )
        expect(ledger.violations(counted)).toEqual([])
        expect(ledger.unanswered).toBe(0)
        expect(ledger.refused.every((refused) => refused.status === 503)).toBe(true)
      } finally {
        for (const service of services) await killed(service)
        if (mounted) await unmount(dir)
        rmdirSync(dir)
      }
    },
    120_000
  )
})
