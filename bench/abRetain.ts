/**
 * Same-run A/B of the retain hot path (B1/B2) against another checkout of this repository, in one process:
 *
 *   git worktree add --detach /tmp/base <commit> && ln -s "$PWD/node_modules" /tmp/base/node_modules
 *   node --import tsx bench/abRetain.ts /tmp/base [rounds=30] [--budget] [--max-wait] [--workload-log] [--here-first]
 *
 * One queue per build (V8 specializes a closure's optimized code only while one instance of it exists: two queues of
 * one build in a process run ~15 % slower, which would bias a three-way comparison). Each round is 1M `notifyRetain`
 * in `Effect.gen` chunks of 10,000 (B1) and 1M `unsafeNotifyRetain` (B2) over 1,000 banks, threshold 50, instant
 * engine, an event-loop turn after each chunk; the builds alternate chunk by chunk (whatever the machine does
 * meanwhile falls on both alike), and only the chunks are timed — wall time, or CPU time of the process with `CPU=1`
 * (which also counts V8's background GC threads). Processes differ by a few per cent (each JIT-compiles its own way):
 * run several, in both orders (`--here-first`: this build's queue is made first), and an A/A run beside them. Prints the
 * median and interquartile range of this checkout's per-round ratio to the other's. `--budget` gives this checkout's
 * queue a cost budget too large to bind; `--max-wait` a freshness deadline (`maxWaitSeconds: 3600`, never reached: it
 * measures keeping the deadlines, not compiling more); `--workload-log` turns this checkout's workload log on
 * (`WORKLOAD_LOG_DIR`, in a temporary directory): the other checkout is then the same retain path with it off.
 *
 * @internal
 */
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import * as Here from "../src/index.js"
import { alternating } from "./common.js"
import * as WorkloadLog from "../src/internal/workloadLog/workloadLog.js"

const args = process.argv.slice(2)
const positional = args.filter((arg) => !arg.startsWith("--"))
const basePath = positional[0]
if (basePath === undefined) {
  throw new Error("usage: bench/abRetain.ts <other checkout> [rounds] [--budget] [--workload-log]")
}
const logDir = args.includes("--workload-log") ? mkdtempSync(join(tmpdir(), "abretain-workload-log-")) : undefined
const rounds = Number(positional[1] ?? 30)
const Base = (await import(join(resolve(basePath), "src", "index.ts"))) as typeof Here

const BANKS = 1000
const CHUNK = 10_000
const NOTIFIES = 1_000_000
const ids = Array.from({ length: BANKS }, (_, n) => `bank-${n}`)

type Lib = typeof Here
type Queue = Here.CompileQueueService

const open = async (lib: Lib, options: Here.CompileQueueOptions, workloadLog?: string) => {
  const result = new lib.CompileResult({ bankId: "bench" }, true)
  const engine = Layer.succeed(lib.CompileEngine, { run: () => Effect.succeed(result) })
  const scope = Effect.runSync(Scope.make())
  const log = workloadLog === undefined ? Layer.empty : WorkloadLog.layer({ dir: workloadLog, retentionDays: 1 })
  const context = await Effect.runPromise(
    Layer.buildWithScope(lib.CompileQueue.layer(options).pipe(Layer.provide(engine), Layer.provide(log)), scope)
  )
  return { queue: Context.get(context, lib.CompileQueue) as Queue, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

type Chunk = (queue: Queue, from: number) => void

/** One round of a workload on both builds, alternating chunk by chunk: this build's rate over the other's. */
const versus = async (chunk: Chunk, here: Queue, other: Queue): Promise<number> => {
  const spent = await alternating(NOTIFIES / CHUNK, (k) => chunk(here, k * CHUNK), (k) => chunk(other, k * CHUNK))
  return spent.b / spent.a
}
const b1: Chunk = (queue, from) =>
  Effect.runSync(Effect.gen(function*() {
    for (let n = from; n < from + CHUNK; n++) yield* queue.notifyRetain(ids[n % BANKS]!)
  }))
const b2: Chunk = (queue, from) => {
  for (let n = from; n < from + CHUNK; n++) queue.unsafeNotifyRetain(ids[n % BANKS]!)
}

const options: Here.CompileQueueOptions = { config: { sizeThreshold: 50 }, maxQueueSize: BANKS + 1 }
const maxWait = args.includes("--max-wait")
const openHere = () =>
  open(
    Here,
    {
      ...options,
      ...(maxWait ? { config: { sizeThreshold: 50, maxWaitSeconds: 3600 } } : {}),
      ...(args.includes("--budget") ? { budget: { tokens: 1e12, compiles: 1e9, bankTokens: 1e9 } } : {})
    },
    logDir
  )
// `--here-first`: this build's queue is made first (the queue made second runs a little slower: run both orders).
const hereFirst = args.includes("--here-first")
const first = await (hereFirst ? openHere() : open(Base, options))
const second = await (hereFirst ? open(Base, options) : openHere())
const [here, base] = hereFirst ? [first, second] : [second, first]
const ratios = { b1: [] as Array<number>, b2: [] as Array<number> }
for (let round = -2; round < rounds; round++) { // two warm-up rounds
  const b1Ratio = await versus(b1, here.queue, base.queue)
  const b2Ratio = await versus(b2, here.queue, base.queue)
  if (round < 0) continue
  ratios.b1.push(b1Ratio)
  ratios.b2.push(b2Ratio)
}
const quantile = (xs: Array<number>, p: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)]!
const pct = (x: number) => `${(x * 100).toFixed(1)} %`
for (const [name, xs] of Object.entries(ratios)) {
  console.log(
    `${name.toUpperCase()}: this checkout${args.includes("--budget") ? " (budget set)" : ""}${
      maxWait ? " (maxWaitSeconds set)" : ""
    }${
      logDir === undefined ? "" : " (workload log on)"
    } at ${
      pct(quantile(xs, 0.5))
    } of ${basePath} (IQR ${pct(quantile(xs, 0.25))}–${pct(quantile(xs, 0.75))}, ${rounds} rounds, ${
      process.env.CPU === "1" ? "CPU" : "wall"
    } time)`
  )
}
await base.close()
await here.close()
if (logDir !== undefined) rmSync(logDir, { recursive: true, force: true })
