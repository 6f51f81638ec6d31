/**
 * Signals as a terminal and a process manager send them: `npm start` (the built service under npm) in its own process
 * group, signalled as a group, so node gets the signal twice (the group's copy and npm's forwarded one). The stop must
 * still be graceful and lose nothing acknowledged; a deliberate second Ctrl-C a second later forces the exit.
 */
import { describe, expect, it } from "@effect/vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type ServiceProcess, startService, startWebhook } from "../support/harness.js"

const npmStart = { command: ["npm", "start"], detached: true } as const

const retain = (base: string, bankId: string) => fetch(`${base}/v1/banks/${bankId}/retain`, { method: "POST" })

/** Retains one at a time until `stop` resolves; returns how many were acknowledged (202). */
const retainUntil = async (service: ServiceProcess, bankId: string, stop: Promise<unknown>): Promise<number> => {
  let stopped = false
  void stop.then(() => (stopped = true))
  let acknowledged = 0
  while (!stopped) {
    try {
      if ((await retain(service.base, bankId)).status === 202) acknowledged++
    } catch {
      // refused once the server has closed
    }
  }
  return acknowledged
}

const memories = async (base: string, bankId: string): Promise<number> =>
  ((await (await fetch(`${base}/v1/banks/${bankId}`)).json()) as { memoriesSinceLastCompile: number })
    .memoriesSinceLastCompile

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.concurrent("signals to the process group of npm start", () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`${signal} to the group: exit 0, "shutting down", and every acknowledged retain is there after a restart`, async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "ect-signals-"))
      // A compile in flight keeps the graceful stop going for 3 s, so every copy of the signal arrives during it.
      const webhook = await startWebhook((bankId) => ({ status: 200, body: JSON.stringify({ bankId }), delayMs: 3_000 }))
      // Flushed only at shutdown: what the restart finds was written by the graceful stop.
      const env = {
        DATA_DIR: dataDir,
        COMPILE_WEBHOOK_URL: webhook.url,
        COMPILE_SHUTDOWN_TIMEOUT: "20 seconds",
        COMPILE_SIZE_THRESHOLD: "1000000000",
        COMPILE_FLUSH_INTERVAL: "1 hour"
      }
      const first = await startService(env, 60_000, npmStart)
      try {
        expect((await fetch(`${first.base}/v1/banks/slow/compile`, { method: "POST" })).status).toBe(202)
        await webhook.waitForCall("slow")
        const retaining = retainUntil(first, "grouped", first.exited)
        await sleep(300)
        process.kill(-first.child.pid!, signal)
        // Node may see the group's copy and npm's forwarded one as one signal when they arrive together: one more
        // duplicate right after, as a slow forward or a process manager repeating itself would send.
        await sleep(50)
        process.kill(-first.child.pid!, signal)
        const [exit, acknowledged] = await Promise.all([first.exited, retaining])
        expect(exit, first.output()).toMatchObject({ code: 0, signal: null })
        expect(first.output()).toContain("shutting down: not ready")
        expect(acknowledged).toBeGreaterThan(0)

        const second = await startService(env, 60_000, npmStart)
        try {
          expect(await memories(second.base, "grouped")).toBe(acknowledged)
        } finally {
          await second.stop()
        }
      } finally {
        await first.stop(1000)
        await webhook.close()
        rmSync(dataDir, { recursive: true, force: true })
      }
    }, 180_000)
  }

  it("a second Ctrl-C a second later: exit 130 at once, with one line saying so", async () => {
    const webhook = await startWebhook(() => "hang") // the graceful stop would wait COMPILE_SHUTDOWN_TIMEOUT for it
    const service = await startService(
      { COMPILE_WEBHOOK_URL: webhook.url, COMPILE_SIZE_THRESHOLD: "1", COMPILE_SHUTDOWN_TIMEOUT: "60 seconds" },
      60_000,
      npmStart
    )
    try {
      expect((await retain(service.base, "hanging")).status).toBe(202)
      await webhook.waitForCall("hanging")
      process.kill(-service.child.pid!, "SIGINT")
      await sleep(1_500)
      expect(service.child.exitCode).toBeNull() // still stopping gracefully
      const secondAt = Date.now()
      process.kill(-service.child.pid!, "SIGINT")
      const exit = await service.exited
      expect(exit.code).toBe(130)
      expect(exit.at - secondAt).toBeLessThan(5_000)
      expect(service.output()).toContain("second Ctrl-C: exiting now")
    } finally {
      await service.stop(1000)
      await webhook.close()
    }
  }, 180_000)
})
