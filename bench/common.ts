/**
 * Shared pieces of the benchmark rows: the row shape, an instant engine, and a queue opened in a scope of its own.
 *
 * @internal
 */
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { Bench, type Task } from "tinybench"
import { CompileEngine, CompileQueue, type CompileQueueOptions, CompileResult } from "../src/index.js"

export interface Row {
  readonly id: string
  readonly figure: string
  readonly value: string
  readonly baseline: string
  readonly target: string
  /** null: reported only (no target), or not run. */
  readonly met: boolean | null
  /** Raw numbers for bench/results/latest.json. */
  readonly data?: Record<string, number | string | null>
}

export interface Scale {
  readonly quick: boolean
  /** 1 for the full run, 10 for `--quick`. */
  readonly divisor: number
  /** `--budget`: B1/B2 on a queue with a (non-binding) cost budget. */
  readonly budget?: boolean | undefined
  /** `--max-wait`: B3 on a queue with a freshness deadline set (`maxWaitSeconds`: every bank has one on the timeline). */
  readonly maxWait?: boolean | undefined
}

/** One shared result, built without validation: the instant engine must not dominate what is measured. */
export const instantEngine = (onRun?: (bankId: string) => void) => {
  const result = new CompileResult({ bankId: "bench" }, true)
  return CompileEngine.layer((bankId) =>
    onRun === undefined ? Effect.succeed(result) : Effect.sync(() => {
      onRun(bankId)
      return result
    })
  )
}

export interface OpenQueue {
  readonly queue: CompileQueue["Type"]
  readonly close: () => Promise<void>
}

/** Builds a queue (workers, sweep and staleness fibers running) on the default runtime (live clock). */
export const openQueue = (
  options: CompileQueueOptions,
  engine: Layer.Layer<CompileEngine> = instantEngine()
): Promise<OpenQueue> =>
  Effect.runPromise(Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(CompileQueue.layer(options).pipe(Layer.provide(engine)), scope)
    return {
      queue: Context.get(context, CompileQueue),
      close: () => Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }))

export const bankIds = (count: number, prefix = "bank-"): Array<string> =>
  Array.from({ length: count }, (_, n) => `${prefix}${n}`)

/** Runs the bench and returns its tasks by name; a failed task throws. */
export const runBench = async (bench: Bench): Promise<Map<string, Task>> => {
  await bench.run()
  const tasks = new Map<string, Task>()
  for (const task of bench.tasks) {
    const result = task.result
    if (result === undefined || result.error !== undefined) {
      throw new Error(`bench task "${task.name}" failed: ${String(result?.error ?? "no result")}`)
    }
    tasks.set(task.name, task)
  }
  return tasks
}

/** Operations per second of a task whose every iteration does `opsPerIteration` operations (mean latency). */
export const opsPerSecond = (task: Task, opsPerIteration: number): number =>
  opsPerIteration / (task.result!.latency.mean / 1000)

/** Relative margin of error of the mean, for the table. */
export const rme = (task: Task): string => `±${task.result!.latency.rme.toFixed(0)} %`

export const mps = (opsPerSec: number): string => `${(opsPerSec / 1e6).toFixed(2)} M/s`

export const fmtInt = (n: number): string => Math.round(n).toLocaleString("en")

/** A macrotask turn: lets timers, I/O and Effect's scheduler run (the worker fibers included). */
export const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Milliseconds: the process's CPU time with `CPU=1` (V8's background GC threads included), else wall time. */
export const benchClock: () => number = process.env.CPU === "1"
  ? () => {
    const used = process.cpuUsage()
    return (used.user + used.system) / 1000
  }
  : () => performance.now()

/**
 * The time `a` and `b` spent over `chunks` chunks each, run in alternation chunk by chunk (which goes first swaps
 * every chunk), so that whatever the machine does meanwhile falls on both alike; an event-loop turn after each chunk
 * (what it queued, compiles included, runs there, untimed).
 */
export const alternating = async (
  chunks: number,
  a: (chunk: number) => void,
  b: (chunk: number) => void
): Promise<{ readonly a: number; readonly b: number }> => {
  let spentA = 0
  let spentB = 0
  for (let chunk = 0; chunk < chunks; chunk++) {
    for (const run of chunk % 2 === 0 ? [a, b] : [b, a]) {
      const t0 = benchClock()
      run(chunk)
      const spent = benchClock() - t0
      if (run === a) spentA += spent
      else spentB += spent
      await yieldToEventLoop()
    }
  }
  return { a: spentA, b: spentB }
}

export const gc = (): void => {
  const collect = (globalThis as { gc?: () => void }).gc
  if (collect === undefined) throw new Error("run with node --expose-gc (npm run bench does)")
  collect()
  collect()
}

/**
 * Bytes the JS heap and ArrayBuffers hold (typed-array storage is outside the JS heap), after a few event-loop turns
 * (so fibers and timers that are finishing let go of what they hold) and a full GC.
 */
export const liveBytes = async (): Promise<number> => {
  for (let n = 0; n < 5; n++) await yieldToEventLoop()
  gc()
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
}

export { Bench }
