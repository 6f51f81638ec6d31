/**
 * Real processes on loopback for the service's end-to-end tests: the service as built (`node dist/bin.js`, what
 * `npm start` runs; test/support/globalSetup.ts rebuilds dist/ when a source is newer), or another command such as
 * `npm start` itself, on a free 127.0.0.1 port, and a webhook receiver (an HTTP server in the test process) that records every compile call.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { mkdtempSync, rmSync } from "node:fs"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "../..")

/** Variables the service reads: cleared from the inherited environment so that each test sets exactly its own. */
const SERVICE_VARIABLES = [
  "HOST",
  "PORT",
  "COMPILE_SIZE_THRESHOLD",
  "COMPILE_STALENESS_DAYS",
  "COMPILE_STALENESS_MIN_MEMORIES",
  "COMPILE_DEFAULT_ENABLED",
  "COMPILE_FORGET_THRESHOLD",
  "COMPILE_FORGET_DELAY",
  "COMPILE_MAX_QUEUE_SIZE",
  "COMPILE_CONCURRENCY",
  "COMPILE_SWEEP_INTERVAL",
  "COMPILE_TIMEOUT",
  "COMPILE_SHUTDOWN_TIMEOUT",
  "COMPILE_FLUSH_INTERVAL",
  "COMPILE_BUDGET_TOKENS",
  "COMPILE_BUDGET_COMPILES",
  "COMPILE_BUDGET_BANK_TOKENS",
  "COMPILE_BUDGET_PERIOD",
  "COMPILE_WEBHOOK_URL",
  "COMPILE_WEBHOOK_CANCEL_URL",
  "COMPILE_WEBHOOK_TOKEN",
  "COMPILE_WEBHOOK_MAX_RESPONSE",
  "COMPILE_WEBHOOK_READ_TIMEOUT",
  "COMPILE_WEBHOOK_SECRET",
  "COMPILE_WEBHOOK_SECRET_PREVIOUS",
  "API_TOKEN",
  "LOG_FORMAT",
  "LOG_LEVEL",
  "DATABASE_URL",
  "DATA_DIR",
  "ACK_MODE",
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_SERVICE_NAME",
  "CLUSTER_RUNNER_ADDRESS",
  "CLUSTER_HANDOVER_TIMEOUT"
]

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** `Date.now()` when the process exited. */
  readonly at: number
}

export interface ServiceProcess {
  readonly base: string
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<Exit>
  /** SIGTERM, then the exit (SIGKILL after `killAfterMs` so a test never hangs). */
  readonly stop: (killAfterMs?: number) => Promise<Exit>
}

export interface SpawnOptions {
  /** The command and its arguments (default: `node dist/bin.js`). */
  readonly command?: readonly [string, ...Array<string>]
  readonly cwd?: string
  /** In its own process group (as a terminal runs a command); `stop` then signals the whole group. */
  readonly detached?: boolean
}

/** Spawns the service with `env` (plus PORT/HOST) without waiting for it. */
export const spawnService = async (env: Record<string, string>, options: SpawnOptions = {}): Promise<ServiceProcess> => {
  const port = await freePort()
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !SERVICE_VARIABLES.includes(name))
  )
  // Each process gets its own state directory unless the test shares one on purpose (restart tests).
  const dataDir = env.DATA_DIR ?? mkdtempSync(join(tmpdir(), "ect-e2e-"))
  const [file, ...args] = options.command ?? [process.execPath, "dist/bin.js"]
  const child = spawn(file, args, {
    cwd: options.cwd ?? root,
    env: { ...clean, HOST: "127.0.0.1", PORT: String(port), ...env, DATA_DIR: dataDir },
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false
  })
  let output = ""
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()))
  const exited = new Promise<Exit>((resolve) =>
    child.once("exit", (code, signal) => {
      if (env.DATA_DIR === undefined) rmSync(dataDir, { recursive: true, force: true })
      resolve({ code, signal, at: Date.now() })
    })
  )
  const signal = (name: NodeJS.Signals) => {
    try {
      if (options.detached === true) process.kill(-child.pid!, name)
      else child.kill(name)
    } catch {
      // already gone
    }
  }
  const stop = async (killAfterMs = 10_000) => {
    if (child.exitCode === null && child.signalCode === null) signal("SIGTERM")
    const timer = setTimeout(() => signal("SIGKILL"), killAfterMs)
    const exit = await exited
    clearTimeout(timer)
    return exit
  }
  return { base: `http://127.0.0.1:${env.PORT ?? port}`, child, output: () => output, exited, stop }
}

/** Spawns the service and waits until `/readyz` answers 200 (at most `timeoutMs`: generous, the 2 cores are shared). */
export const startService = async (
  env: Record<string, string>,
  timeoutMs = 60_000,
  options: SpawnOptions = {}
): Promise<ServiceProcess> => {
  const service = await spawnService(env, options)
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (service.child.exitCode !== null) {
      throw new Error(`the service exited with ${service.child.exitCode}:\n${service.output()}`)
    }
    try {
      const response = await fetch(`${service.base}/readyz`)
      if (response.status === 200) return service
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await service.stop(1000)
      throw new Error(`the service was not ready within ${timeoutMs} ms:\n${service.output()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export interface WebhookCall {
  readonly bankId: string
  /** The JSON body the service sent (the compile job). */
  readonly body: Record<string, unknown>
  readonly authorization: string | undefined
  readonly receivedAt: number
  /** Set when the receiver's answer was fully written (false if the caller went away first). */
  answered: boolean
}

export type WebhookBehaviour = (bankId: string) =>
  | { readonly status: number; readonly body: string; readonly delayMs?: number }
  | "hang"

export interface WebhookReceiver {
  readonly url: string
  readonly calls: Array<WebhookCall>
  behaviour: WebhookBehaviour
  /** Resolves with the first call for `bankId` (already made or future), rejects after `timeoutMs`. */
  readonly waitForCall: (bankId: string, timeoutMs?: number) => Promise<WebhookCall>
  readonly close: () => Promise<void>
}

export const defaultBehaviour: WebhookBehaviour = (bankId) => ({
  status: 200,
  body: JSON.stringify({ bankId, pagesUpdated: 2 })
})

/** A compile endpoint on 127.0.0.1 that records each call and answers as `behaviour` says. */
export const startWebhook = async (behaviour: WebhookBehaviour = defaultBehaviour): Promise<WebhookReceiver> => {
  const calls: Array<WebhookCall> = []
  const waiters: Array<() => void> = []
  const hanging = new Set<ServerResponse>()
  const receiver = { behaviour } as { behaviour: WebhookBehaviour }
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    let text = ""
    request.on("data", (chunk: Buffer) => (text += chunk.toString()))
    request.on("end", () => {
      const body = JSON.parse(text) as Record<string, unknown>
      const bankId = String(body.bankId)
      const call: WebhookCall = {
        bankId,
        body,
        authorization: request.headers.authorization,
        receivedAt: Date.now(),
        answered: false
      }
      calls.push(call)
      waiters.splice(0).forEach((wake) => wake())
      const answer = receiver.behaviour(bankId)
      if (answer === "hang") {
        hanging.add(response)
        return
      }
      const respond = () => {
        response.writeHead(answer.status, { "content-type": "application/json" })
        response.end(answer.body, () => (call.answered = true))
      }
      if (answer.delayMs === undefined) respond()
      else setTimeout(respond, answer.delayMs)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo

  const waitForCall = (bankId: string, timeoutMs = 10_000) =>
    new Promise<WebhookCall>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no webhook call for ${bankId} within ${timeoutMs} ms`)), timeoutMs)
      const check = () => {
        const call = calls.find((call) => call.bankId === bankId)
        if (call === undefined) return waiters.push(check)
        clearTimeout(timer)
        resolve(call)
      }
      check()
    })

  return Object.assign(receiver, {
    url: `http://127.0.0.1:${port}/compile`,
    calls,
    waitForCall,
    close: () =>
      new Promise<void>((resolve) => {
        for (const response of hanging) response.destroy()
        server.closeAllConnections()
        server.close(() => resolve())
      })
  })
}

/** Polls `read` until `done` holds (at most `timeoutMs`); returns the last value read. */
export const eventually = async <A>(
  read: () => Promise<A>,
  done: (value: A) => boolean,
  timeoutMs = 10_000
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await read()
    if (done(value)) return value
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms; last value: ${JSON.stringify(value)}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}
