/**
 * Cluster mode end to end: three runners started as the README says (`npm start` with DATABASE_URL and
 * CLUSTER_RUNNER_ADDRESS, each in its own process group) on a fresh database of the throwaway Postgres, retains for
 * 2,000 banks through all three HTTP ports, a webhook receiver that records every call's start and end; then one
 * runner is killed (SIGKILL) or stopped (SIGTERM) while compiles are in flight. Live clock, loopback only.
 */
import { spawnSync } from "node:child_process"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { afterEach, describe, expect, inject, it } from "vitest"
import { partitionOf } from "../../src/internal/clusterProtocol.js"
import { findPgBinDir } from "../pgCluster.js"
import { eventually, freePort, type ServiceProcess, startService } from "./harness.js"

const pgUrl = inject("pgUrl")
const BANKS = 2000
const THRESHOLD = 3
const FLUSH_MS = 1000
const COMPILE_MS = 400

interface Call {
  readonly bankId: string
  readonly memories: number
  readonly start: number
  end: number | undefined
  answered: boolean
}

/** Records every compile call with its start and end (the end of a call cut off by a kill is when its socket closed). */
const startReceiver = async () => {
  const calls: Array<Call> = []
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    let text = ""
    request.on("data", (chunk: Buffer) => (text += chunk.toString()))
    request.on("end", () => {
      const body = JSON.parse(text) as { bankId: string; memories: number }
      const call: Call = { bankId: body.bankId, memories: body.memories, start: Date.now(), end: undefined, answered: false }
      calls.push(call)
      // The caller's end of the connection going away (a killed runner's socket sends FIN) cuts the call off.
      const socket = request.socket
      const gone = () => (call.end ??= Date.now())
      socket.once("end", gone)
      socket.once("close", gone)
      setTimeout(() =>
        // After this turn's I/O events: a FIN that arrived while this process was busy is seen first.
        setImmediate(() => {
          if (call.end !== undefined || response.destroyed) return
          socket.off("end", gone)
          socket.off("close", gone)
          response.writeHead(200, { "content-type": "application/json" })
          response.end(JSON.stringify({ bankId: body.bankId }), () => {
            call.answered = true
            call.end = Date.now()
          })
        }), COMPILE_MS)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/compile`,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

const psql = (url: string, query: string): string => {
  const result = spawnSync(join(findPgBinDir()!, "psql"), [url, "-Atc", query], { encoding: "utf8" })
  if (result.status !== 0) throw new Error(`psql failed: ${result.stderr}`)
  return result.stdout.trim()
}

/** A database of its own: the cluster's advisory locks are per database, one cluster per database. */
const freshDatabase = (): string => {
  const name = `cluster_${Date.now()}_${Math.floor(Math.random() * 1e6)}`
  psql(pgUrl, `CREATE DATABASE ${name}`)
  return pgUrl.replace(/\/[^/]*$/, `/${name}`)
}

const bankId = (n: number) => `bank-${n}`

/** The cluster's shard of a partition entity: @effect/cluster's string hash of the entity id, as Sharding computes it. */
const shardOfPartition = (partition: number): number => {
  const id = String(partition)
  let h = 5381, i = id.length
  while (i) h = (h * 33) ^ id.charCodeAt(--i)
  h = (h & 0xbfffffff) | ((h >>> 1) & 0x40000000)
  return Math.abs(h % 64) + 1
}

/** The runner address holding the shard lock of the bank's partition (the PgClient names its connections after it). */
const ownerOf = (database: string, id: string): string =>
  psql(
    database,
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' " +
      `AND l.granted AND l.objid::bigint = ${1_000_000 + shardOfPartition(partitionOf(id))} AND ` +
      "l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
  ).replace("effect-compile-trigger ", "")
/** One bank in eight gets THRESHOLD retains (it compiles), the rest one each. */
const retainsFor = (n: number) => (n % 8 === 0 ? THRESHOLD : 1)

const post = async (base: string, path: string, body: unknown) => {
  const response = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(20_000)
  })
  if (response.status !== 202) return `${response.status} ${await response.text()}`
  return response.status
}

const getJson = async (base: string, path: string, timeoutMs = 2000): Promise<unknown> => {
  const response = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs) })
  if (response.status !== 200) throw new Error(`${path}: ${response.status}`)
  return response.json()
}

interface BankJson {
  readonly bankId: string
  readonly memoriesSinceLastCompile: number
  readonly status: string
}

/** Every bank, paged through one node (empty while a page does not answer). */
const allBanks = (base: string): Promise<Map<string, BankJson>> =>
  pageBanks(base).catch(() => new Map<string, BankJson>())

const pageBanks = async (base: string): Promise<Map<string, BankJson>> => {
  const banks = new Map<string, BankJson>()
  let cursor: string | null = null
  do {
    const page = (await getJson(
      base,
      `/v1/banks?limit=1000${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`,
      20_000
    )) as { banks: Array<BankJson>; nextCursor: string | null }
    for (const bank of page.banks) banks.set(bank.bankId, bank)
    cursor = page.nextCursor
  } while (cursor !== null)
  return banks
}

const startCluster = async (
  database: string,
  webhook: string,
  extraEnv: Record<string, string> = {}
): Promise<Array<ServiceProcess & { readonly runnerAddress: string }>> =>
  Promise.all([0, 1, 2].map(async () => {
    const runnerAddress = `127.0.0.1:${await freePort()}`
    const env = {
      DATABASE_URL: database,
      CLUSTER_RUNNER_ADDRESS: runnerAddress,
      COMPILE_WEBHOOK_URL: webhook,
      COMPILE_SIZE_THRESHOLD: String(THRESHOLD),
      COMPILE_CONCURRENCY: "2",
      COMPILE_FLUSH_INTERVAL: `${FLUSH_MS} millis`,
      LOG_LEVEL: "debug",
      LOG_FORMAT: "json",
      ...extraEnv
    }
    return Object.assign(await startService(env, 90_000, { command: ["npm", "start"], detached: true }), { runnerAddress })
  }))

/** Which runner connection holds each shard lock (advisory locks 1,000,001 to 1,000,064 of this database). */
const shardLocks = (database: string): string =>
  psql(
    database,
    "SELECT count(DISTINCT pid) || ' ' || count(*) || ' ' || coalesce(string_agg(objid || ':' || pid, ',' ORDER BY objid), '') " +
      "FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid > 1000000 AND " +
      "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
  )

/** A node's partition moves, from its debug log: when (epoch ms) it took a partition over, began or ended a hand-over. */
const partitionMoves = (node: ServiceProcess) => {
  const moves: Array<{ partition: number; move: string; at: number }> = []
  for (const line of node.output().split("\n")) {
    if (!line.includes("partition ")) continue
    try {
      const entry = JSON.parse(line) as { message: unknown; timestamp: string }
      const found = /^partition (\d+): (taken over|handing over|handed over)/.exec(String(entry.message))
      if (found !== null) moves.push({ partition: Number(found[1]), move: found[2]!, at: Date.parse(entry.timestamp) })
    } catch {
      // not a log line
    }
  }
  return moves
}

/** When a node last took a partition over or began handing one over (epoch ms; 0 if never). */
const lastMove = (node: ServiceProcess): number =>
  Math.max(0, ...partitionMoves(node).filter(({ move }) => move !== "handed over").map(({ at }) => at))

/**
 * The assignment settled: each of the three runners holds shards, every shard is held, the holders did not change
 * for 2 seconds, and no partition moved in that time (the startup's rebalancing is over).
 */
const settled = (database: string, nodes: ReadonlyArray<ServiceProcess>) =>
  eventually(
    async () => {
      const before = shardLocks(database)
      await new Promise((resolve) => setTimeout(resolve, 2000))
      const quiet = nodes.every((node) => Date.now() - lastMove(node) >= 2000)
      return before.startsWith("3 64 ") && shardLocks(database) === before && quiet
    },
    (stable) => stable,
    60_000
  )

/** Sends every bank's retains in batches of 100, round-robin over the nodes; resolves when all were answered 202. */
const sendRetains = async (nodes: ReadonlyArray<ServiceProcess>) => {
  const items: Array<{ bankId: string; count: number }> = []
  for (let n = 0; n < BANKS; n++) items.push({ bankId: bankId(n), count: retainsFor(n) })
  const batches: Array<Array<{ bankId: string; count: number }>> = []
  for (let i = 0; i < items.length; i += 100) batches.push(items.slice(i, i + 100))
  const statuses = await Promise.all(batches.map((batch, i) => post(nodes[i % nodes.length]!.base, "/v1/retains", batch)))
  expect(statuses.filter((status) => status !== 202)).toEqual([])
}

/** 200 banks (every partition) each asked through the survivors until it answers: the time until the last did. */
const answersForEveryBank = async (bases: ReadonlyArray<string>, since: number, timeoutMs: number) => {
  const banks = Array.from({ length: 200 }, (_, n) => bankId(n * 10))
  const answeredAt = await Promise.all(banks.map(async (id, i) => {
    while (Date.now() < since + timeoutMs) {
      try {
        // A long enough wait that a request is not abandoned (and sent again) while the cluster moves the partition.
        await getJson(bases[i % bases.length]!, `/v1/banks/${id}`, 3000)
        return Date.now()
      } catch {
        // not answered yet: ask again at once
      }
    }
    return undefined
  }))
  return {
    unanswered: answeredAt.filter((at) => at === undefined).length,
    ms: Math.max(...answeredAt.map((at) => (at ?? Infinity) - since))
  }
}

/** When each survivor took partitions over and handed them over, in ms after `since` (from their debug logs). */
const handovers = (nodes: ReadonlyArray<ServiceProcess>, since: number) =>
  nodes.map((node) => {
    const after = partitionMoves(node).filter(({ at }) => at >= since)
    const takenOver = after.filter(({ move }) => move === "taken over").map(({ at }) => at - since)
    return {
      takenOver: takenOver.length,
      lastTakenOverMs: Math.max(0, ...takenOver),
      handedOver: after.filter(({ move }) => move === "handing over").length
    }
  })

/**
 * Each node's spells of running a partition, from its debug log ("taken over" once its lock is held and its banks
 * restored, to "handed over" once its lock is released; a killed node's open spells end at the kill): the partitions
 * two nodes ran at once, by more than 50 ms of logging slack.
 */
const ranOnTwoNodes = (nodes: ReadonlyArray<ServiceProcess>, killed?: { readonly node: ServiceProcess; readonly at: number }) => {
  const spells = new Map<number, Array<{ node: number; from: number; to: number }>>()
  const add = (partition: number, spell: { node: number; from: number; to: number }) =>
    spells.set(partition, [...(spells.get(partition) ?? []), spell])
  nodes.forEach((node, index) => {
    const open = new Map<number, number>()
    for (const { at, move, partition } of partitionMoves(node)) {
      if (move === "taken over") open.set(partition, at)
      if (move !== "handed over") continue
      add(partition, { node: index, from: open.get(partition) ?? 0, to: at })
      open.delete(partition)
    }
    const end = node === killed?.node ? killed.at : Infinity
    for (const [partition, from] of open) add(partition, { node: index, from, to: end })
  })
  const twice: Array<string> = []
  for (const [partition, list] of spells) {
    for (const a of list) {
      for (const b of list) {
        if (a.node >= b.node) continue
        const overlap = Math.min(a.to, b.to) - Math.max(a.from, b.from)
        if (overlap > 50) twice.push(`partition ${partition} on nodes ${a.node} and ${b.node} for ${overlap} ms`)
      }
    }
  }
  return twice
}

const noOverlaps = (calls: ReadonlyArray<Call>) => {
  const byBank = new Map<string, Array<Call>>()
  for (const call of calls) byBank.set(call.bankId, [...(byBank.get(call.bankId) ?? []), call])
  const overlapping: Array<string> = []
  for (const [id, list] of byBank) {
    list.sort((a, b) => a.start - b.start)
    for (let i = 1; i < list.length; i++) {
      if (list[i]!.start < (list[i - 1]!.end ?? Infinity)) overlapping.push(id)
    }
  }
  return overlapping
}

/** Every compiling bank has an answered compile, and its retains are all counted (consumed by compiles, or pending). */
const checkOutcome = (banks: Map<string, BankJson>, calls: ReadonlyArray<Call>) => {
  const consumed = new Map<string, number>()
  const answered = new Set<string>()
  for (const call of calls) {
    if (!call.answered) continue
    answered.add(call.bankId)
    consumed.set(call.bankId, (consumed.get(call.bankId) ?? 0) + call.memories)
  }
  const uncompiled: Array<string> = []
  const uncounted: Array<string> = []
  for (let n = 0; n < BANKS; n++) {
    const id = bankId(n)
    if (retainsFor(n) >= THRESHOLD && !answered.has(id)) uncompiled.push(id)
    const counted = (banks.get(id)?.memoriesSinceLastCompile ?? 0) + (consumed.get(id) ?? 0)
    if (counted < retainsFor(n)) uncounted.push(id)
  }
  return { uncompiled, uncounted }
}

describe.skipIf(pgUrl === "")("cluster mode: three runners over Postgres", () => {
  const cleanup: Array<() => Promise<unknown>> = []
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step()
  })

  it("SIGKILL: the dead runner's banks answer elsewhere within 10 s, compile again, nothing acknowledged is lost", async () => {
    const receiver = await startReceiver()
    cleanup.push(receiver.close)
    const database = freshDatabase()
    const nodes = await startCluster(database, receiver.url)
    cleanup.push(() => Promise.all(nodes.map((node) => node.stop(5000))))
    await settled(database, nodes)

    await sendRetains(nodes)
    // Every retain was acknowledged more than one flush interval before the kill.
    await new Promise((resolve) => setTimeout(resolve, FLUSH_MS + 500))
    // The victim: the owner of a bank whose compile is running right now.
    const running = await eventually(
      async () => receiver.calls.find((call) => call.end === undefined && Date.now() - call.start < COMPILE_MS / 2),
      (call) => call !== undefined,
      10_000
    )
    const victimAddress = ownerOf(database, running!.bankId)
    const victim = nodes.find((node) => node.runnerAddress === victimAddress)!
    const survivors = nodes.filter((node) => node !== victim)
    const inFlight = receiver.calls.filter((call) => call.end === undefined).length
    process.kill(-victim.child.pid!, "SIGKILL")
    const killedAt = Date.now()
    await victim.exited

    const failover = await answersForEveryBank(survivors.map((node) => node.base), killedAt, 10_000)
    console.log(`after the kill: ${JSON.stringify(handovers(survivors, killedAt))}`)
    expect(failover.unanswered).toBe(0)
    expect(failover.ms).toBeLessThan(10_000)

    const banks = await eventually(
      () => allBanks(survivors[0]!.base),
      (banks) => banks.size === BANKS && Array.from(banks.values()).every((bank) => bank.status === "idle"),
      90_000
    )
    const cutOff = receiver.calls.filter((call) => !call.answered)
    expect(cutOff.length).toBeGreaterThan(0)
    for (const call of cutOff) {
      // A compile cut off by the kill ran again, after the kill, to the end.
      expect(receiver.calls.some((later) => later.bankId === call.bankId && later.answered && later.start >= killedAt))
        .toBe(true)
    }
    expect(noOverlaps(receiver.calls)).toEqual([])
    expect(ranOnTwoNodes(nodes, { node: victim, at: killedAt })).toEqual([])
    expect(checkOutcome(banks, receiver.calls)).toEqual({ uncompiled: [], uncounted: [] })
    console.log(
      `cluster SIGKILL: ${inFlight} compiles in flight at the kill, ${cutOff.length} cut off; ` +
        `every partition answered ${failover.ms} ms after the kill; ${receiver.calls.length} webhook calls`
    )
  }, 240_000)

  it("SIGTERM: a graceful stop hands the runner's partitions over with nothing lost", async () => {
    const receiver = await startReceiver()
    cleanup.push(receiver.close)
    const database = freshDatabase()
    // A runner-wide budget (its partitions share it) and the compile history, routed and fanned out.
    const nodes = await startCluster(database, receiver.url, { COMPILE_BUDGET_TOKENS: "1000000000" })
    cleanup.push(() => Promise.all(nodes.map((node) => node.stop(5000))))
    await settled(database, nodes)

    await sendRetains(nodes)
    const [leaving, ...staying] = nodes
    // At once after the last 202: some writes are not flushed yet, some compiles are running.
    const stoppedAt = Date.now()
    const exit = await leaving!.stop(60_000)
    expect(exit.code).toBe(0)

    const banks = await eventually(
      () => allBanks(staying[0]!.base),
      (banks) => banks.size === BANKS && Array.from(banks.values()).every((bank) => bank.status === "idle"),
      90_000
    ).catch((error) => {
      for (const node of nodes) {
        const problems = node.output().split("\n").filter((line) =>
          /"logLevel":"(WARN|ERROR|FATAL)"/.test(line) && !line.includes("compile interrupted by shutdown") ||
          /partition \d+: |Shard lock|Could not|unhealthy/.test(line)
        )
        console.log(`${node.runnerAddress}:\n${problems.slice(-60).join("\n")}`)
      }
      throw error
    })
    expect(noOverlaps(receiver.calls)).toEqual([])
    expect(ranOnTwoNodes(nodes)).toEqual([])
    expect(checkOutcome(banks, receiver.calls)).toEqual({ uncompiled: [], uncounted: [] })
    const budget = await getJson(staying[1]!.base, "/v1/budget") as { tokens: { capacity: number }; deferredCount: number }
    expect(budget.tokens.capacity).toBe(1_000_000_000)
    expect(budget.deferredCount).toBe(0)
    const history = await getJson(staying[1]!.base, "/v1/compiles?limit=1000", 10_000) as {
      compiles: ReadonlyArray<{ bankId: string; endedAt: string }>
    }
    expect(history.compiles.length).toBeGreaterThan(0)
    const times = history.compiles.map((record) => Date.parse(record.endedAt))
    expect(times).toEqual([...times].sort((a, b) => b - a)) // merged over the partitions, newest first
    const one = history.compiles[0]!.bankId
    const own = await getJson(staying[0]!.base, `/v1/compiles?bankId=${one}`) as { compiles: ReadonlyArray<{ bankId: string }> }
    expect(own.compiles.length).toBeGreaterThan(0)
    expect(own.compiles.every((record) => record.bankId === one)).toBe(true)
    console.log(`cluster SIGTERM: the runner stopped in ${exit.at - stoppedAt} ms; ${receiver.calls.length} webhook calls`)
  }, 240_000)
})
