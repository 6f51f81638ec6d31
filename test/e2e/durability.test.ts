/**
 * End-to-end durability: the real service on SQLite, killed with SIGKILL (no shutdown, no final flush), started
 * again on the same DATA_DIR. Also an unreadable database at startup (exit 1, clear message).
 */
import { describe, expect, it } from "@effect/vitest"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { eventually, spawnService, startService, startWebhook } from "../support/harness.js"

const retain = (base: string, bankId: string, count: number) =>
  fetch(`${base}/v1/banks/${bankId}/retain`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ count })
  })

const bank = async (base: string, bankId: string) =>
  (await (await fetch(`${base}/v1/banks/${bankId}`)).json()) as { memoriesSinceLastCompile: number; status: string }

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.concurrent("service durability", () => {
  it("kill -9 after a flush: every retain is counted after the restart; a compile in flight at the kill runs again", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "ect-crash-"))
    const webhook = await startWebhook(() => "hang") // the first compile never answers: it is in flight at the kill
    const env = {
      DATA_DIR: dataDir,
      COMPILE_WEBHOOK_URL: webhook.url,
      COMPILE_SIZE_THRESHOLD: "1000",
      COMPILE_FLUSH_INTERVAL: "200 millis"
    }
    const first = await startService(env)
    try {
      const N = 250
      for (let n = 0; n < N; n++) expect((await retain(first.base, "counted", 1)).status).toBe(202)
      expect((await retain(first.base, "inflight", 1000)).status).toBe(202)
      await webhook.waitForCall("inflight")
      await sleep(800) // past the flush interval, so the running status and the counts are stored
      first.child.kill("SIGKILL")
      expect((await first.exited).signal).toBe("SIGKILL")

      webhook.behaviour = (bankId) => ({ status: 200, body: JSON.stringify({ bankId }) })
      const second = await startService(env)
      try {
        expect((await bank(second.base, "counted")).memoriesSinceLastCompile).toBe(N)
        // queued again at startup and compiled: the receiver sees a second call, the counter is consumed
        await eventually(() => Promise.resolve(webhook.calls.filter((call) => call.bankId === "inflight").length), (n) => n >= 2)
        const inflight = await eventually(() => bank(second.base, "inflight"), (state) => state.status === "idle")
        expect(inflight.memoriesSinceLastCompile).toBe(0)
      } finally {
        await second.stop()
      }
    } finally {
      await first.stop(1000)
      await webhook.close()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 60_000)

  it("an unreadable database at startup: exit 1 with a clear message", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "ect-bad-db-"))
    writeFileSync(join(dataDir, "compile-trigger.db"), "this is not a SQLite database, just text ".repeat(200))
    const service = await spawnService({ DATA_DIR: dataDir })
    try {
      const exit = await service.exited
      expect(exit.code).toBe(1)
      expect(service.output()).toMatch(/bank state store/)
    } finally {
      await service.stop(1000)
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 30_000)
})
