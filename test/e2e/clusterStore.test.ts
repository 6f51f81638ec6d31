/**
 * Cluster mode through Postgres restarts: three runners (as in `cluster.test.ts`) on a Postgres server of this test's
 * own (`startPgCluster`, so that restarting it disturbs no other test), retains sent without pause to 640 banks through
 * all three HTTP ports, compiles running against a webhook receiver that answers every call with a success; meanwhile
 * Postgres is stopped at once (`-m immediate`: every session ends, and with it every advisory lock) and started again,
 * twice: down 1.1 s (the partitions keep running and take their locks again) and down 4 s (the runners' shard lock
 * storage gives up, so partitions are handed over while Postgres is still down and their final flush waits for it).
 * `PG_DOWN_MS=<ms>[,<ms>…]` changes the outages. Live clock, loopback only.
 *
 * The webhook receiver's log is the oracle. For every bank:
 * - nothing acknowledged is lost: the retains answered 202 ≤ what the bank counts now + what the successful compiles
 *   consumed (each call's `memories`: the counter when that run started, which its success takes off the counter);
 * - no memory is consumed twice: what the successful compiles consumed + what it counts now ≤ every retain sent to it
 *   (answered or not). A compile whose success was recorded but not stored and that the next owner runs again (the
 *   bug this test is for) consumes the same memories a second time and breaks this bound (so does a success that is
 *   forgotten while its memories stay counted); a compile cut off mid-flight (its call never answered) consumed
 *   nothing, so its legitimate re-run does not;
 * - every successful call consumed at least the size threshold (a repeat with nothing new would not) — with the bound
 *   above, a bank compiles at most once per THRESHOLD retains sent to it; once the load stops no bank is left due, so
 *   every trigger was compiled; no two calls overlap, and a call cut off is run again to the end.
 * Besides: no partition ran on two runners at once, no queue closed with changes unstored, every partition that moved
 * was handed over by its owner (none taken because its lease expired), and once every change is stored Postgres's rows
 * hold the same counters as the runners' memory.
 */
import { afterEach, describe, expect, inject, it } from "vitest"
import { partitionOf } from "../../src/internal/cluster/protocol.js"
import { startPgCluster } from "../support/pgCluster.js"
import { prng } from "../support/random.js"
import {
  allBanks,
  bankId,
  type BankJson,
  type Call,
  freshDatabase,
  getJson,
  noOverlaps,
  partitionMoves,
  post,
  psql,
  ranOnTwoNodes,
  type Runner,
  settled,
  startCluster,
  startReceiver,
  THRESHOLD
} from "../support/clusterKit.js"
import { eventually, type ServiceProcess } from "../support/harness.js"

const pgUrl = inject("pgUrl")
const BANKS = 640
const COMPILE_MS = 250
/** Load before each restart, and after Postgres is back. */
const LOAD_BEFORE_MS = 3000
const LOAD_AFTER_MS = 6000

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The load's picks, seeded; the seed is printed with the figures. */
const random = prng

interface Sent {
  readonly items: ReadonlyArray<{ readonly bankId: string; readonly count: number }>
  readonly sentAt: number
  answeredAt: number | undefined
  /** 202, another status with its body, or the request's error. */
  status: number | string | undefined
}

/**
 * `senders` loops, each posting a batch of 5 retains (count 1, sometimes 2) to random banks, round-robin over the
 * nodes, one request at a time with a short pause; every request is recorded with its answer.
 */
const startLoad = (nodes: ReadonlyArray<ServiceProcess>, seed: number, senders = 2, pauseMs = 60) => {
  const sent: Array<Sent> = []
  const next = random(seed)
  let stopping = false
  const sender = async (first: number) => {
    for (let i = first; !stopping; i += senders) {
      const picked = new Set<string>()
      while (picked.size < 5) picked.add(bankId(Math.floor(next() * BANKS)))
      const record: Sent = {
        items: Array.from(picked, (id) => ({ bankId: id, count: next() < 0.3 ? 2 : 1 })),
        sentAt: Date.now(),
        answeredAt: undefined,
        status: undefined
      }
      sent.push(record)
      record.status = await post(nodes[i % nodes.length]!.base, "/v1/retains", record.items)
        .catch((error: unknown) => `request failed: ${String(error)}`)
      record.answeredAt = Date.now()
      await sleep(pauseMs)
    }
  }
  const done = Promise.all(Array.from({ length: senders }, (_, s) => sender(s)))
  return { sent, stop: () => ((stopping = true), done) }
}

/** A node's log entries (JSON lines): level, message, epoch ms. */
const logOf = (node: ServiceProcess) =>
  node.output().split("\n").flatMap((line) => {
    if (!line.startsWith("{")) return []
    try {
      const entry = JSON.parse(line) as { message: unknown; logLevel: string; timestamp: string }
      const message = Array.isArray(entry.message) ? entry.message.map(String).join(" ") : String(entry.message)
      return [{ level: entry.logLevel, message, at: Date.parse(entry.timestamp) }]
    } catch {
      return []
    }
  })

/** The books of each bank, from the load's records, the receiver's log and the banks' counters now. */
const books = (sent: ReadonlyArray<Sent>, calls: ReadonlyArray<Call>, banks: Map<string, BankJson>) => {
  const perBank = new Map<string, { sent: number; acked: number; consumed: number; counted: number }>()
  const of = (id: string) => {
    let entry = perBank.get(id)
    if (entry === undefined) perBank.set(id, entry = { sent: 0, acked: 0, consumed: 0, counted: 0 })
    return entry
  }
  for (const request of sent) {
    for (const item of request.items) {
      of(item.bankId).sent += item.count
      if (request.status === 202) of(item.bankId).acked += item.count
    }
  }
  for (const call of calls) if (call.answered) of(call.bankId).consumed += call.memories
  for (const [id, bank] of banks) of(id).counted = bank.memoriesSinceLastCompile
  return perBank
}

/** What the oracle found wrong (every list empty when all is well), with the details of each offending bank. */
const oracle = (sent: ReadonlyArray<Sent>, calls: ReadonlyArray<Call>, banks: Map<string, BankJson>) => {
  const perBank = books(sent, calls, banks)
  const callsOf = (id: string) =>
    calls.filter((call) => call.bankId === id).map((call) =>
      `${call.start}${call.answered ? "" : " cut off"} ${call.reason}#${call.attempt} memories ${call.memories}`
    )
  const detail = (id: string) => ({ bankId: id, partition: partitionOf(id), ...perBank.get(id)!, calls: callsOf(id) })
  const lost: Array<unknown> = []
  const consumedTwice: Array<unknown> = []
  const due: Array<unknown> = []
  for (const [id, entry] of perBank) {
    if (entry.acked > entry.counted + entry.consumed) lost.push(detail(id))
    if (entry.consumed + entry.counted > entry.sent) consumedTwice.push(detail(id))
    const bank = banks.get(id)
    if (bank !== undefined && (bank.memoriesSinceLastCompile >= THRESHOLD || bank.status !== "idle")) due.push(detail(id))
  }
  return {
    lost,
    consumedTwice,
    due,
    belowThreshold: calls.filter((call) => call.answered && call.memories < THRESHOLD),
    overlapping: noOverlaps(calls),
    // A call cut off mid-flight is run again, to the end, later.
    notRunAgain: calls.filter((call) =>
      !call.answered &&
      !calls.some((later) => later.bankId === call.bankId && later.answered && later.start >= (call.end ?? Infinity))
    )
  }
}

/** The cluster's store health, as `/v1/queue` reports it (every partition's write-behind combined). */
const storeHealth = async (base: string) => {
  try {
    const stats = await getJson(base, "/v1/queue", 5000) as {
      store: { healthy: boolean; unflushed: number; failures: number } | null
    }
    return stats.store ?? undefined
  } catch {
    return undefined
  }
}

/** Each node's WARN and worse lines and its partition lines: printed when the test fails. */
const problems = (nodes: ReadonlyArray<Runner>) => {
  for (const node of nodes) {
    const lines = node.output().split("\n").filter((line) =>
      /"logLevel":"(WARN|ERROR|FATAL)"/.test(line) || /partition \d+: |Shard lock|unhealthy|works again/.test(line)
    )
    console.log(`${node.runnerAddress}:\n${lines.slice(-80).join("\n")}`)
  }
}

interface Outage {
  /** Asked for: how long Postgres stays down between the stop and the start. */
  readonly downMs: number
  readonly restartAt: number
  readonly upAt: number
  /** When `/v1/queue` first said every partition's store works again. */
  readonly healthyAt: number
}

/** What the runners' logs say about one outage (from its restart to `until`), in ms after the restart. */
const recovery = (nodes: ReadonlyArray<ServiceProcess>, outage: Outage, until: number) => {
  const { restartAt } = outage
  const inWindow = nodes.map((node) => logOf(node).filter(({ at }) => at >= restartAt && at < until))
  const all = inWindow.flat()
  const after = (at: number) => Math.round(at - restartAt)
  const last = (entries: ReadonlyArray<{ readonly at: number }>) => Math.max(0, ...entries.map(({ at }) => after(at)))
  const worksAgain = all.filter(({ message }) => message.startsWith("flushing bank state works again"))
  const retaken = all.filter(({ message }) => / taken again$/.test(message))
  // Each partition handed over: until it was taken over again (on any node), it answered nobody.
  const moves = nodes.flatMap((node) => partitionMoves(node)).filter(({ at }) => at >= restartAt && at < until)
  const gaps = moves.filter(({ move }) => move === "handing over").map(({ at, partition }) => {
    const next = moves.filter((m) => m.partition === partition && m.move === "taken over" && m.at >= at)
    return next.length === 0 ? Infinity : Math.min(...next.map((m) => m.at)) - at
  })
  return {
    downMs: outage.upAt - restartAt,
    storeHealthyAfterMs: after(outage.healthyAt),
    failedFlushes: all.filter(({ message }) => message.startsWith("flushing bank state failed")).length,
    lastFlushRecoveryMs: last(worksAgain),
    locksTakenAgain: retaken.length,
    lastLockTakenAgainMs: last(retaken),
    partitionsHandedOver: gaps.length,
    longestHandOverMs: Math.max(0, ...gaps),
    lastTakenOverMs: last(moves.filter(({ move }) => move === "taken over")),
    // Partitions another runner took because their lease expired in the outage, not handed over by their live owner,
    // and until when each runner's lease renewals failed.
    takenFromExpiredLeasesAtMs: all.filter(({ message }) => /did not hand it over: its lease expired/.test(message))
      .map(({ at }) => after(at)),
    renewalsFailedUntilMs: inWindow.map((entries) =>
      last(entries.filter(({ message }) => message.startsWith("could not renew the partition leases")))
    ),
    shardLockStorageUnhealthy: all.filter(({ message }) => message.startsWith("Shard lock storage is unhealthy")).length
  }
}

/** The outages, one after the other under the same load: PG_DOWN_MS=<ms>[,<ms>…] to change them. */
const OUTAGES = (process.env.PG_DOWN_MS ?? "1100,4000").split(",").map(Number)

describe.skipIf(pgUrl === "")("cluster mode: Postgres restarts under load", () => {
  const cleanup: Array<() => Promise<unknown>> = []
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step()
  })

  it("lose no acknowledged retain and compile no bank twice for one trigger", async () => {
    // A server of its own: restarting it ends no other test's sessions.
    const pg = await startPgCluster()
    expect(pg).toBeDefined()
    cleanup.push(async () => pg!.stop())
    const receiver = await startReceiver(COMPILE_MS)
    cleanup.push(receiver.close)
    const database = freshDatabase(pg!.url)
    const nodes = await startCluster(database, receiver.url, {
      COMPILE_CONCURRENCY: "3",
      // Unbounded: a due bank is always queued at once, none waits for the sweep (kept short all the same).
      COMPILE_MAX_QUEUE_SIZE: "0",
      COMPILE_SWEEP_INTERVAL: "2 seconds"
    })
    cleanup.push(() => Promise.all(nodes.map((node) => node.stop(10_000))))
    await settled(database, nodes)

    const seed = Date.now() % 1_000_000
    const load = startLoad(nodes, seed)
    let loadStopped = false
    cleanup.push(async () => {
      if (!loadStopped) await load.stop()
    })
    const outages: Array<Outage> = []
    for (const downMs of OUTAGES) {
      await sleep(LOAD_BEFORE_MS)
      // The restart while compiles run: one call in flight at least.
      await eventually(
        () => Promise.resolve(receiver.calls.filter((call) => call.end === undefined).length),
        (running) => running > 0,
        10_000
      )
      const restartAt = Date.now()
      await pg!.restart(downMs)
      const upAt = Date.now()
      await eventually(() => storeHealth(nodes[0]!.base), (store) => store?.healthy === true, 60_000)
      outages.push({ downMs, restartAt, upAt, healthyAt: Date.now() })
      await sleep(Math.max(0, upAt + LOAD_AFTER_MS - Date.now()))
    }
    await load.stop()
    loadStopped = true
    const loadStoppedAt = Date.now()

    // Quiet: nothing runs, nothing is due, every change is stored.
    const banks = await eventually(
      async () => {
        const banks = await allBanks(nodes[1]!.base)
        const store = await storeHealth(nodes[2]!.base)
        const quiet = Array.from(banks.values()).every((bank) =>
          bank.status === "idle" && bank.memoriesSinceLastCompile < THRESHOLD
        ) && receiver.calls.every((call) => call.end !== undefined)
        return { banks, settled: quiet && banks.size > 0 && store?.healthy === true && store.unflushed === 0 }
      },
      ({ settled }) => settled,
      120_000
    ).then(({ banks }) => banks).catch(async (error) => {
      problems(nodes)
      console.log(JSON.stringify(oracle(load.sent, receiver.calls, await allBanks(nodes[1]!.base))).slice(0, 20_000))
      throw error
    })
    const quietAfterMs = Date.now() - loadStoppedAt

    const found = oracle(load.sent, receiver.calls, banks)
    // Postgres's rows, now that every change is stored: the same counters as the runners' memory.
    const rows = new Map(
      psql(database, "SELECT bank_id || ' ' || memories FROM compile_trigger_banks").split("\n").filter(Boolean)
        .map((line) => line.split(" ") as [string, string])
    )
    const unlikeMemory = Array.from(banks.values()).filter((bank) =>
      Number(rows.get(bank.bankId)) !== bank.memoriesSinceLastCompile
    )
    const notStored = nodes.flatMap(logOf).filter(({ message }) => / changed banks not stored/.test(message))

    const report = summary(load.sent, receiver.calls, banks, outages)
    console.log(
      `cluster store restarts (seed ${seed}, outages ${OUTAGES.join(", ")} ms): ${JSON.stringify(report)}; ` +
        `lost ${found.lost.length}, consumed twice ${found.consumedTwice.length}, ` +
        `below threshold ${found.belowThreshold.length}; quiet ${quietAfterMs} ms after the load stopped`
    )
    const recoveries = outages.map((outage, i) => recovery(nodes, outage, outages[i + 1]?.restartAt ?? Infinity))
    recoveries.forEach((figures, i) => console.log(`outage ${i + 1} (${outages[i]!.downMs} ms): ${JSON.stringify(figures)}`))

    expect(found).toEqual({ lost: [], consumedTwice: [], due: [], belowThreshold: [], overlapping: [], notRunAgain: [] })
    expect(ranOnTwoNodes(nodes)).toEqual([])
    expect(notStored.map(({ message }) => message)).toEqual([])
    expect(unlikeMemory).toEqual([])
    // The faults were hit under load: while Postgres was down, flushes failed, retains were acknowledged and compiles
    // succeeded.
    for (const figures of recoveries) expect(figures.failedFlushes).toBeGreaterThan(0)
    // Every partition that moved was handed over by its live owner (its release retried past the restart), none left
    // to wait for its lease to expire.
    for (const figures of recoveries) expect(figures.takenFromExpiredLeasesAtMs).toEqual([])
    for (const during of report.whileDown) {
      expect(during.acknowledgedRequests).toBeGreaterThan(0)
      expect(during.compilesAnswered).toBeGreaterThan(0)
    }
  }, 300_000)
})

/** The run's figures: retains sent, acknowledged, counted and consumed; the webhook calls; what happened while down. */
const summary = (
  sent: ReadonlyArray<Sent>,
  calls: ReadonlyArray<Call>,
  banks: Map<string, BankJson>,
  outages: ReadonlyArray<Outage>
) => {
  const perBank = Array.from(books(sent, calls, banks).values())
  const total = (key: "sent" | "acked" | "consumed" | "counted") => perBank.reduce((sum, entry) => sum + entry[key], 0)
  const acked = sent.filter((request) => request.status === 202)
  const answered = calls.filter((call) => call.answered)
  const compilesPerBank = new Map<string, number>()
  for (const call of answered) compilesPerBank.set(call.bankId, (compilesPerBank.get(call.bankId) ?? 0) + 1)
  return {
    requests: sent.length,
    acknowledgedRequests: acked.length,
    otherAnswers: Array.from(new Set(sent.filter((r) => r.status !== 202).map((r) => String(r.status)))).slice(0, 5),
    retains: { sent: total("sent"), acknowledged: total("acked"), countedNow: total("counted"), consumed: total("consumed") },
    calls: calls.length,
    answered: answered.length,
    cutOff: calls.length - answered.length,
    restored: calls.filter((call) => call.reason === "restored").length,
    retries: calls.filter((call) => call.attempt > 1).length,
    compiledBanks: compilesPerBank.size,
    mostCompilesOfABank: Math.max(0, ...compilesPerBank.values()),
    whileDown: outages.map(({ restartAt, upAt }) => ({
      acknowledgedRequests: acked.filter((r) => r.answeredAt! >= restartAt && r.answeredAt! <= upAt).length,
      compilesAnswered: answered.filter((call) => call.end! >= restartAt && call.end! <= upAt).length
    }))
  }
}
