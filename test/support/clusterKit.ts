/**
 * What the cluster e2e tests share: three runners started as docs/cluster.md says (`npm start` with DATABASE_URL and
 * CLUSTER_RUNNER_ADDRESS, each in its own process group), a webhook receiver that records every compile call's job,
 * start and end, and readers of Postgres (which runner holds which shard) and of the runners' debug logs (when a
 * partition moved).
 */
import { execFile, spawnSync } from "node:child_process"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { partitionOf } from "../../src/internal/cluster/protocol.js"
import { findPgBinDir } from "./pgCluster.js"
import { eventually, freePort, type ServiceProcess, startService } from "./harness.js"

export const THRESHOLD = 3
export const FLUSH_MS = 1000

export interface Call {
  readonly bankId: string
  /** The job's fields, as the webhook body carries them. */
  readonly memories: number
  readonly forgets: number
  readonly reason: string
  readonly attempt: number
  readonly start: number
  end: number | undefined
  answered: boolean
}

export type Runner = ServiceProcess & { readonly runnerAddress: string }

/**
 * Records every compile call with its start and end (the end of a call cut off by a kill is when its socket closed);
 * answers 200 after `compileMs`.
 */
export const startReceiver = async (compileMs = 400) => {
  const calls: Array<Call> = []
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    let text = ""
    request.on("data", (chunk: Buffer) => (text += chunk.toString()))
    request.on("end", () => {
      const body = JSON.parse(text) as { bankId: string; memories: number; forgets: number; reason: string; attempt: number }
      const call: Call = {
        bankId: body.bankId,
        memories: body.memories,
        forgets: body.forgets,
        reason: body.reason,
        attempt: body.attempt,
        start: Date.now(),
        end: undefined,
        answered: false
      }
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
        }), compileMs)
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

export const psql = (url: string, query: string): string => {
  const result = spawnSync(join(findPgBinDir()!, "psql"), [url, "-Atc", query], { encoding: "utf8" })
  if (result.status !== 0) throw new Error(`psql failed: ${result.stderr}`)
  return result.stdout.trim()
}

/** A database of its own on the server of `serverUrl`: the cluster's advisory locks are per database, one cluster per database. */
export const freshDatabase = (serverUrl: string): string => {
  const name = `cluster_${Date.now()}_${Math.floor(Math.random() * 1e6)}`
  psql(serverUrl, `CREATE DATABASE ${name}`)
  return serverUrl.replace(/\/[^/]*$/, `/${name}`)
}

export const bankId = (n: number) => `bank-${n}`

/** The cluster's shard of a partition entity: @effect/cluster's string hash of the entity id, as Sharding computes it. */
const shardOfPartition = (partition: number): number => {
  const id = String(partition)
  let h = 5381, i = id.length
  while (i) h = (h * 33) ^ id.charCodeAt(--i)
  h = (h & 0xbfffffff) | ((h >>> 1) & 0x40000000)
  return Math.abs(h % 64) + 1
}

/** The runner address holding the shard lock of the bank's partition (a row of the cluster's `cluster_locks` table). */
export const ownerOf = (database: string, id: string): string =>
  psql(
    database,
    `SELECT address FROM cluster_locks WHERE shard_id = 'default:${shardOfPartition(partitionOf(id))}' ` +
      "AND acquired_at > now() - interval '5 seconds'"
  )

export const post = async (base: string, path: string, body: unknown) => {
  const response = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(20_000)
  })
  if (response.status !== 202) return `${response.status} ${await response.text()}`
  return response.status
}

export const getJson = async (base: string, path: string, timeoutMs = 2000): Promise<unknown> => {
  const response = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs) })
  if (response.status !== 200) throw new Error(`${path}: ${response.status}`)
  return response.json()
}

export interface BankJson {
  readonly bankId: string
  readonly memoriesSinceLastCompile: number
  readonly status: string
}

/** Every bank, paged through one node (empty while a page does not answer). */
export const allBanks = (base: string): Promise<Map<string, BankJson>> =>
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

/** Three runners on `database`, compiling through `webhook` (`extraEnv` adds to or overrides the defaults). */
export const startCluster = async (
  database: string,
  webhook: string,
  extraEnv: Record<string, string> = {}
): Promise<Array<Runner>> =>
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

/** Which runner holds each shard lock (the rows of `cluster_locks` refreshed within their 5 s expiration). */
export const shardLocks = (database: string): string =>
  psql(
    database,
    "SELECT count(DISTINCT address) || ' ' || count(*) || ' ' || " +
      "coalesce(string_agg(shard_id || ':' || address, ',' ORDER BY shard_id), '') " +
      "FROM cluster_locks WHERE acquired_at > now() - interval '5 seconds'"
  )

/** A node's partition moves, from its debug log: when (epoch ms) it took a partition over, began or ended a hand-over. */
export const partitionMoves = (node: ServiceProcess) => {
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

/** The partitions a node ran at `at` (from its debug log: taken over before then, not handed over before then). */
export const partitionsRunningAt = (node: ServiceProcess, at: number): Array<number> => {
  const running = new Set<number>()
  for (const move of partitionMoves(node)) {
    if (move.at > at) break
    if (move.move === "taken over") running.add(move.partition)
    if (move.move === "handed over") running.delete(move.partition)
  }
  return [...running].sort((a, b) => a - b)
}

/** The partition moves a node logged at INFO on taking a partition over: from whom, to whom, why, when. */
export const movesLogged = (node: ServiceProcess) => {
  const moves: Array<{ partition: number; from: string; to: string; why: string; at: number }> = []
  for (const line of node.output().split("\n")) {
    if (!line.includes(" moved: ")) continue
    try {
      const entry = JSON.parse(line) as { message: unknown; logLevel: string; timestamp: string }
      const found = /^partition (\d+) moved: (\S+) → (\S+) \((.*)\)$/.exec(String(entry.message))
      if (found === null || entry.logLevel !== "INFO") continue
      moves.push({ partition: Number(found[1]), from: found[2]!, to: found[3]!, why: found[4]!, at: Date.parse(entry.timestamp) })
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
export const settled = (database: string, nodes: ReadonlyArray<ServiceProcess>) =>
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

/**
 * Banks (200 by default, every partition) each asked through `bases` until it answers: the time until the last did.
 */
export const answersForEveryBank = async (
  bases: ReadonlyArray<string>,
  since: number,
  timeoutMs: number,
  banks: ReadonlyArray<string> = Array.from({ length: 200 }, (_, n) => bankId(n * 10))
) => {
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

/** When each node took partitions over and handed them over, in ms after `since` (from their debug logs). */
export const handovers = (nodes: ReadonlyArray<ServiceProcess>, since: number) =>
  nodes.map((node) => {
    const after = partitionMoves(node).filter(({ at }) => at >= since)
    const takenOver = after.filter(({ move }) => move === "taken over").map(({ at }) => at - since)
    return {
      takenOver: takenOver.length,
      lastTakenOverMs: Math.max(0, ...takenOver),
      handedOver: after.filter(({ move }) => move === "handing over").length
    }
  })

/** The partitions two nodes ran at once (by more than 50 ms of logging slack), from each node's spells. */
const overlappingSpells = (spells: Map<number, Array<{ node: number; from: number; to: number }>>) => {
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

/**
 * Each node's spells of running a partition, from its debug log ("taken over" once its lock is held and its banks
 * restored, to "handed over" once its lock is released; a killed node's open spells end at the kill): the partitions
 * two nodes ran at once, by more than 50 ms of logging slack.
 */
export const ranOnTwoNodes = (
  nodes: ReadonlyArray<ServiceProcess>,
  killed?: { readonly node: ServiceProcess; readonly at: number }
) => {
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
  return overlappingSpells(spells)
}

/** The banks with two compile calls at once (one started before the other ended). */
export const noOverlaps = (calls: ReadonlyArray<Call>) => {
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

/** One partition's lease, as the lease table holds it. */
export interface LeaseRow {
  readonly partition: number
  /** The holding runner's address. */
  readonly runner: string
  readonly epoch: number
  /** When it expires, epoch ms by Postgres's clock (the same machine's clock as the test's here). */
  readonly expiresAt: number
}

/** The partitions' leases (`compile_trigger_partition_leases`), read without blocking; undefined without that table. */
export const partitionLeases = (database: string): Promise<Array<LeaseRow> | undefined> =>
  new Promise((resolve, reject) =>
    execFile(
      join(findPgBinDir()!, "psql"),
      [database, "-Atc", "SELECT CASE WHEN to_regclass('compile_trigger_partition_leases') IS NULL THEN 'none' END"],
      (error, found) => {
        if (error !== null) return reject(error)
        if (found.trim() === "none") return resolve(undefined)
        execFile(
          join(findPgBinDir()!, "psql"),
          [
            database,
            "-Atc",
            "SELECT partition || ' ' || runner || ' ' || epoch || ' ' || (extract(epoch FROM expires_at) * 1000)::float8 " +
              "FROM compile_trigger_partition_leases WHERE runner IS NOT NULL AND expires_at > '-infinity'"
          ],
          (error, rows) => {
            if (error !== null) return reject(error)
            resolve(rows.split("\n").filter(Boolean).map((row) => {
              const [partition, runner, epoch, expiresAt] = row.split(" ")
              return { partition: Number(partition), runner: runner!, epoch: Number(epoch), expiresAt: Number(expiresAt) }
            }))
          }
        )
      }
    )
  )

/**
 * `ranOnTwoNodes` where one node lost partitions without handing them over (frozen, or cut off the network): its
 * spells still open at `lost.at` end no later than `lost.until(partition)`, where its lease of that partition expired
 * (undefined: not cut short), whatever its log says later — once it runs again, it logs the hand-over when it notices
 * the loss, not when its ownership ended. A partition taken over twice without a hand-over logged in between ends its
 * first spell at the second take-over.
 */
export const ranOnTwoNodesAfterLoss = (
  nodes: ReadonlyArray<ServiceProcess>,
  lost: { readonly node: ServiceProcess; readonly at: number; readonly until: (partition: number) => number | undefined }
): Array<string> => {
  const spells = new Map<number, Array<{ node: number; from: number; to: number }>>()
  nodes.forEach((node, index) => {
    const open = new Map<number, number>()
    const close = (partition: number, to: number) => {
      const from = open.get(partition)
      if (from === undefined) return
      open.delete(partition)
      const until = node === lost.node && from <= lost.at && to > lost.at ? lost.until(partition) : undefined
      const spell = { node: index, from, to: until === undefined ? to : Math.min(to, until) }
      spells.set(partition, [...(spells.get(partition) ?? []), spell])
    }
    for (const { at, move, partition } of partitionMoves(node)) {
      if (move === "taken over") {
        close(partition, at)
        open.set(partition, at)
      }
      if (move === "handed over") close(partition, at)
    }
    for (const partition of [...open.keys()]) close(partition, Infinity)
  })
  return overlappingSpells(spells)
}
