/**
 * The workload log in cluster mode: three runners (`npm start`, as docs/cluster.md says), each with its own
 * WORKLOAD_LOG_DIR; every retain sent through one runner's HTTP port. Each runner logs the banks it owns — counted
 * where the partition's queue runs, not where the request came in — and the runners' logs, merged as docs/tuner.md
 * says, hold every retain exactly once. Live clock, loopback only.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, describe, expect, inject, it } from "vitest"
import { readLog } from "../../src/internal/tuner/readLog.js"
import { bankId, freshDatabase, post, settled, startReceiver, THRESHOLD } from "../support/clusterKit.js"
import { freePort, type ServiceProcess, startService } from "../support/harness.js"

const pgUrl = inject("pgUrl")
const BANKS = 300
const retainsFor = (n: number) => 1 + (n % 5)

/** Three runners on `database`, each logging to a directory of its own. */
const startRunners = (database: string, webhook: string, dirs: ReadonlyArray<string>) =>
  Promise.all(dirs.map(async (dir) =>
    startService({
      DATABASE_URL: database,
      CLUSTER_RUNNER_ADDRESS: `127.0.0.1:${await freePort()}`,
      COMPILE_WEBHOOK_URL: webhook,
      COMPILE_SIZE_THRESHOLD: String(THRESHOLD),
      COMPILE_CONCURRENCY: "2",
      LOG_LEVEL: "debug",
      LOG_FORMAT: "json",
      WORKLOAD_LOG_DIR: dir
    }, 90_000, { command: ["npm", "start"], detached: true })
  ))

/** Every retain a runner logged, per bank. */
const logged = (dir: string): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const name of readdirSync(dir)) {
    for (const line of readFileSync(join(dir, name), "utf8").split("\n")) {
      if (line === "") continue
      const event = JSON.parse(line) as { bankId: string; count: number; op?: string }
      expect(event.op).toBeUndefined()
      counts.set(event.bankId, (counts.get(event.bankId) ?? 0) + event.count)
    }
  }
  return counts
}

describe.skipIf(pgUrl === "")("cluster mode: the workload log", () => {
  const cleanup: Array<() => Promise<unknown>> = []
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step()
  })

  it("each runner logs the banks it owns; the merged logs hold every retain once", async () => {
    const root = mkdtempSync(join(tmpdir(), "cluster-workload-log-"))
    cleanup.push(async () => rmSync(root, { recursive: true, force: true }))
    const dirs = ["runner-a", "runner-b", "runner-c"].map((name) => join(root, name))
    const receiver = await startReceiver(50)
    cleanup.push(receiver.close)
    const database = freshDatabase(pgUrl)
    const nodes: Array<ServiceProcess> = await startRunners(database, receiver.url, dirs)
    cleanup.push(() => Promise.all(nodes.map((node) => node.stop(5000))))
    await settled(database, nodes)

    const items = Array.from({ length: BANKS }, (_, n) => ({ bankId: bankId(n), count: retainsFor(n) }))
    for (let i = 0; i < BANKS; i += 100) expect(await post(nodes[0]!.base, "/v1/retains", items.slice(i, i + 100))).toBe(202)
    // A graceful stop writes each runner's last minute.
    const exits = await Promise.all(nodes.map((node) => node.stop(30_000)))
    expect(exits.map((exit) => exit.code)).toEqual([0, 0, 0])

    const perRunner = dirs.map(logged)
    // Counted at the owners: every runner logged banks, though all requests came in through the first.
    for (const counts of perRunner) expect(counts.size).toBeGreaterThan(0)
    const total = new Map<string, number>()
    for (const counts of perRunner) for (const [id, n] of counts) total.set(id, (total.get(id) ?? 0) + n)
    expect(total).toEqual(new Map(items.map((item) => [item.bankId, item.count])))

    // Merged as docs/tuner.md says, the tuner reads them as one log.
    const merged = join(root, "cluster.jsonl")
    const sort = spawnSync("sh", ["-c", `cat ${dirs.map((dir) => `'${dir}'/*.jsonl`).join(" ")} | LC_ALL=C sort -s -t, -k1,1 > '${merged}'`])
    expect(sort.status).toBe(0)
    const workload = await Effect.runPromise(readLog(merged))
    expect(Array.from(workload.counts).reduce((sum, n) => sum + n, 0)).toBe(items.reduce((sum, item) => sum + item.count, 0))
  }, 240_000)
})
