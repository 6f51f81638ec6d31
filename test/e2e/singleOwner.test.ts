/**
 * One owner per store, between live service processes (`node dist/bin.js`): a second service on the same DATA_DIR
 * (another port) exits 1 at once with one line naming the owner's pid, and the owner's acknowledged writes survive;
 * an owner killed with -9 does not block the next start; a second service on a port in use fails before it touches
 * its store; two single-node services on one Postgres database are refused the same way, pointing at cluster mode.
 */
import { describe, expect, inject, it } from "@effect/vitest"
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { type AddressInfo, connect, createServer, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freshDatabase } from "../support/clusterKit.js"
import { eventually, type ServiceProcess, spawnService, startService } from "../support/harness.js"

const pgUrl = inject("pgUrl")

const retain = (base: string, bankId: string, count = 1) =>
  fetch(`${base}/v1/banks/${bankId}/retain`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ count })
  })

const memories = async (base: string, bankId: string) =>
  ((await (await fetch(`${base}/v1/banks/${bankId}`)).json()) as { memoriesSinceLastCompile: number })
    .memoriesSinceLastCompile

/** Spawns a service expected to fail at start: its exit (or a timeout: it started), and its stderr alone. */
const startRefused = async (env: Record<string, string>) => {
  const service = await spawnService(env)
  let stderr = ""
  service.child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
  const exit = await Promise.race([
    service.exited,
    new Promise<"still running">((resolve) => setTimeout(() => resolve("still running"), 20_000))
  ])
  await service.stop(1000)
  return { exit, stderrLines: stderr.trim().split("\n").filter((line) => line !== ""), output: service.output() }
}

/** Every file of a directory with its size and modification time. */
const snapshot = (dir: string) =>
  readdirSync(dir).sort().map((name) => {
    const stat = statSync(join(dir, name))
    return `${name} ${stat.size} ${stat.mtimeMs}`
  })

const tempDir = (prefix: string) => mkdtempSync(join(tmpdir(), prefix))

describe.concurrent("one owner per store", () => {
  it("two services on one DATA_DIR: the second exits 1 with one line naming the owner's pid; nothing acknowledged is lost", async () => {
    const dataDir = tempDir("ect-owner-")
    const env = { DATA_DIR: dataDir, COMPILE_SIZE_THRESHOLD: "1000", COMPILE_FLUSH_INTERVAL: "200 millis" }
    let first: ServiceProcess | undefined
    try {
      first = await startService(env)
      for (let n = 0; n < 50; n++) expect((await retain(first.base, "kept")).status).toBe(202)
      const refused = await startRefused(env)
      expect(refused.exit).toMatchObject({ code: 1 })
      expect(refused.stderrLines).toHaveLength(1)
      expect(refused.stderrLines[0]).toMatch(
        new RegExp(`startup failed: cannot open the bank state store: .*compile-trigger\\.db is in use by pid ${first.child.pid} `)
      )
      // The owner goes on, and what it acknowledged is there after its restart.
      expect((await retain(first.base, "kept", 5)).status).toBe(202)
      expect((await first.stop()).code).toBe(0)
      first = await startService(env)
      expect(await memories(first.base, "kept")).toBe(55)
    } finally {
      await first?.stop()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 90_000)

  it("an owner killed with -9 does not block the next start, which restores what it stored", async () => {
    const dataDir = tempDir("ect-owner-kill-")
    const env = { DATA_DIR: dataDir, COMPILE_SIZE_THRESHOLD: "1000", COMPILE_FLUSH_INTERVAL: "200 millis" }
    let second: ServiceProcess | undefined
    try {
      const first = await startService(env)
      expect((await retain(first.base, "survivor", 7)).status).toBe(202)
      await eventually(
        async () => ((await (await fetch(`${first.base}/v1/queue`)).json()) as { store: { unflushed: number } | null }).store,
        (store) => store !== null && store.unflushed === 0
      )
      first.child.kill("SIGKILL")
      await first.exited
      second = await startService(env)
      expect(await memories(second.base, "survivor")).toBe(7)
    } finally {
      await second?.stop()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 90_000)

  it("stopped while its store does not answer, a service with a silent connection open exits at once", async () => {
    // A "Postgres" that accepts connections and never answers: the service has bound its port and waits for its store.
    const silentDb = createServer(() => undefined)
    await new Promise<void>((resolve) => silentDb.listen(0, "127.0.0.1", resolve))
    const dbPort = (silentDb.address() as AddressInfo).port
    const service = await spawnService({
      DATABASE_URL: `postgres://app:secret@127.0.0.1:${dbPort}/app`,
      // No deadline of its own would close the silent connection: only the stop can.
      HTTP_HEADERS_TIMEOUT: "0",
      HTTP_REQUEST_TIMEOUT: "0"
    })
    const silent: Array<Socket> = []
    try {
      const port = Number(new URL(service.base).port)
      await eventually(
        () =>
          new Promise<Socket | undefined>((resolve) => {
            const socket = connect(port, "127.0.0.1", () => resolve(socket))
            socket.on("error", () => resolve(undefined))
          }),
        (socket) => socket !== undefined && silent.push(socket) > 0,
        // The port is bound before the store opens, but the process's start itself is slow on a loaded machine.
        30_000
      )
      service.child.kill("SIGTERM")
      const exit = await Promise.race([
        service.exited,
        new Promise<"still running">((resolve) => setTimeout(() => resolve("still running"), 10_000))
      ])
      expect(exit).not.toBe("still running")
    } finally {
      silent.forEach((socket) => socket.destroy())
      await service.stop(1000)
      silentDb.close()
    }
  }, 60_000)

  it("a second service on a port in use fails saying so, before it opens (or creates anything in) its store", async () => {
    const first = await startService({})
    const dataDir = tempDir("ect-owner-port-")
    try {
      // A store that would fail to open: had the second service opened it, it would say so instead.
      writeFileSync(join(dataDir, "compile-trigger.db"), "not a SQLite database ".repeat(100))
      const before = snapshot(dataDir)
      const refused = await startRefused({ PORT: new URL(first.base).port, DATA_DIR: dataDir })
      expect(refused.exit).toMatchObject({ code: 1 })
      expect(refused.stderrLines).toHaveLength(1)
      expect(refused.stderrLines[0]).toMatch(/startup failed: cannot listen: .*EADDRINUSE/)
      expect(snapshot(dataDir)).toEqual(before)
    } finally {
      await first.stop()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 60_000)

  it.skipIf(pgUrl === "")("two single-node services on one Postgres database: the second is refused, pointed at cluster mode", async () => {
    const database = freshDatabase(pgUrl)
    const first = await startService({ DATABASE_URL: database, COMPILE_SIZE_THRESHOLD: "1000" })
    try {
      expect((await retain(first.base, "pg-kept", 3)).status).toBe(202)
      const refused = await startRefused({ DATABASE_URL: database })
      expect(refused.exit).toMatchObject({ code: 1 })
      expect(refused.stderrLines).toHaveLength(1)
      const line = refused.stderrLines[0]!
      expect(line).toContain(`${new URL(database).host}${new URL(database).pathname} is in use by another single-node service`)
      expect(line).toContain(`"effect-compile-trigger pid ${first.child.pid} on `)
      expect(line).toContain("cluster mode (CLUSTER_RUNNER_ADDRESS, docs/cluster.md)")
      // Where the state is, said at start, without the URL's user or password.
      expect(first.output()).toContain(`bank state: Postgres at ${new URL(database).host}${new URL(database).pathname}`)
      expect(first.output() + refused.output).not.toContain("postgres@")
      expect(await memories(first.base, "pg-kept")).toBe(3)
    } finally {
      await first.stop()
    }
  }, 90_000)
})
