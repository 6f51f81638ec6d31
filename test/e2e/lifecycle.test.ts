/**
 * End-to-end lifecycle: graceful shutdown on SIGTERM (a compile in flight finishes; a hanging one is cut off at
 * COMPILE_SHUTDOWN_TIMEOUT), startup errors (exit 1 naming the variable), and the dry-run engine. Each test runs its
 * own service process on a free 127.0.0.1 port.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFileSync, execSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { createServer } from "node:net"
import { eventually, freePort, spawnService, startService, startWebhook } from "../support/harness.js"

const retain = (base: string, bankId: string, count: number) =>
  fetch(`${base}/v1/banks/${bankId}/retain`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ count })
  })

describe.concurrent("service lifecycle", () => {
  it("SIGTERM during an in-flight compile: the webhook call completes, then exit 0", async () => {
    const webhook = await startWebhook((bankId) => ({ status: 200, body: JSON.stringify({ bankId }), delayMs: 1_500 }))
    const service = await startService({
      COMPILE_WEBHOOK_URL: webhook.url,
      COMPILE_SIZE_THRESHOLD: "3",
      COMPILE_SHUTDOWN_TIMEOUT: "10 seconds"
    })
    try {
      expect((await retain(service.base, "inflight-1", 3)).status).toBe(202)
      const call = await webhook.waitForCall("inflight-1")
      const exit = await service.stop()
      expect(call.answered).toBe(true)
      expect(exit).toMatchObject({ code: 0, signal: null })
      expect(exit.at).toBeGreaterThanOrEqual(call.receivedAt + 1_400)
      expect(service.output()).toContain("shutting down: not ready")
      // The server stopped taking requests.
      await expect(fetch(`${service.base}/healthz`)).rejects.toThrow()
    } finally {
      await service.stop(1000)
      await webhook.close()
    }
  }, 30_000)

  it("SIGTERM with a hanging webhook: exit 0 within COMPILE_SHUTDOWN_TIMEOUT + 1 s", async () => {
    const webhook = await startWebhook(() => "hang")
    const service = await startService({
      COMPILE_WEBHOOK_URL: webhook.url,
      COMPILE_SIZE_THRESHOLD: "1",
      COMPILE_SHUTDOWN_TIMEOUT: "1 second"
    })
    try {
      expect((await retain(service.base, "hang-1", 1)).status).toBe(202)
      await webhook.waitForCall("hang-1")
      const signalledAt = Date.now()
      const exit = await service.stop()
      expect(exit).toMatchObject({ code: 0, signal: null })
      expect(exit.at - signalledAt).toBeLessThan(1_000 + 1_000)
    } finally {
      await service.stop(1000)
      await webhook.close()
    }
  }, 30_000)

  it("a bad PORT: exit 1 with one line naming the variable", async () => {
    const service = await spawnService({ PORT: "eighty" })
    const exit = await service.exited
    expect(exit.code).toBe(1)
    expect(service.output()).toMatch(/startup failed: invalid configuration: PORT must be an integer from 0 to 65535, got "eighty"/)
    expect(service.output().trim().split("\n")).toHaveLength(1)
  }, 30_000)

  it("a bad threshold and a bad concurrency: exit 1 naming each variable", async () => {
    const service = await spawnService({ COMPILE_SIZE_THRESHOLD: "-5", COMPILE_CONCURRENCY: "0", LOG_FORMAT: "json" })
    const exit = await service.exited
    expect(exit.code).toBe(1)
    const line = JSON.parse(service.output().trim()) as { message: string; logLevel: string }
    expect(line.logLevel).toBe("ERROR")
    expect(line.message).toMatch(/COMPILE_SIZE_THRESHOLD must be an integer >= 0, got "-5"/)
    expect(line.message).toMatch(/COMPILE_CONCURRENCY must be an integer from 1 to 10000, got "0"/)
  }, 30_000)

  it("a port already in use: exit 1 saying it cannot listen", async () => {
    const port = await freePort()
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(port, "127.0.0.1", resolve))
    try {
      const service = await spawnService({ PORT: String(port) })
      const exit = await service.exited
      expect(exit.code).toBe(1)
      expect(service.output()).toMatch(/startup failed: cannot listen: .*EADDRINUSE/)
    } finally {
      await new Promise((resolve) => blocker.close(resolve))
    }
  }, 30_000)

  it("without COMPILE_WEBHOOK_URL: the dry-run engine logs each compile (JSON logs) and the counter is consumed", async () => {
    const service = await startService({ COMPILE_SIZE_THRESHOLD: "2", LOG_FORMAT: "json" })
    try {
      expect((await retain(service.base, "dry-1", 2)).status).toBe(202)
      await eventually(
        async () => (await (await fetch(`${service.base}/v1/banks/dry-1`)).json()) as { lastCompileAt: string | null },
        (state) => state.lastCompileAt !== null
      )
      const lines = service.output().trim().split("\n").map((line) => JSON.parse(line) as { message: string })
      expect(lines.some((line) => /engine: dry run — COMPILE_WEBHOOK_URL is not set/.test(line.message))).toBe(true)
      expect(lines.some((line) => /dry run: would compile/.test(line.message))).toBe(true)
    } finally {
      expect((await service.stop()).code).toBe(0)
    }
  }, 30_000)

  const hasCurl = (() => {
    try {
      execSync("command -v curl", { stdio: "ignore" })
      return true
    } catch {
      return false
    }
  })()

  it.skipIf(!hasCurl)("the README's curl examples work as written (on the test's port)", async () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8")
    const block = /### Quick start\s+```sh\n([\s\S]*?)```/.exec(readme)?.[1]
    expect(block).toBeDefined()
    const commands = block!.replace(/\\\n\s*/g, "").split("\n").filter((line) => line.startsWith("curl "))
    expect(commands.length).toBeGreaterThanOrEqual(8)
    const service = await startService({})
    try {
      const port = new URL(service.base).port
      for (const command of commands) {
        const output = execFileSync("sh", ["-c", command.replaceAll("127.0.0.1:8787", `127.0.0.1:${port}`)], {
          encoding: "utf8",
          timeout: 10_000
        })
        expect({ command, output }).toEqual({ command, output: expect.stringMatching(/\S/) })
        expect({ command, output }).toEqual({ command, output: expect.not.stringMatching(/"_tag"/) })
      }
      // bank-1 reached the default threshold (1 + 49) and compiled (dry run).
      await eventually(
        async () => (await (await fetch(`${service.base}/v1/banks/bank-1`)).json()) as { lastCompileAt: string | null },
        (state) => state.lastCompileAt !== null
      )
    } finally {
      expect((await service.stop()).code).toBe(0)
    }
  }, 30_000)
})
