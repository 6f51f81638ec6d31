/**
 * B1 (notifyRetain from Effect code), B2 (unsafeNotifyRetain from plain code) and the heap growth over a B1 run,
 * against a plain-Map counter loop, `yield* Effect.sync` of an empty op and the Python reference, all in one run.
 *
 * Workload (as the reference's bench_notify.py): N notifies round-robin over 1,000 banks, sizeThreshold 50, an
 * instant engine, maxQueueSize 1,001, and the event loop gets a turn every 10,000 notifies so the worker runs
 * (N / 50 compiles). Each loop is measured two ways:
 * - hot path: only the 10,000-notify chunks are timed (tinybench's overriddenDuration); the turns between them, where
 *   the worker compiles, are not. Effect loops run each chunk with Effect.runSync, so no compile interleaves.
 * - whole loop: chunks and turns, i.e. the notifies plus the compiles they cause — what the Python reference times.
 *
 * @internal
 */
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import {
  bankIds,
  Bench,
  fmtInt,
  instantEngine,
  liveBytes,
  mps,
  openQueue,
  opsPerSecond,
  rme,
  type Row,
  runBench,
  type Scale,
  yieldToEventLoop
} from "./common.js"

const BANKS = 1000
const THRESHOLD = 50
const CHUNK = 10_000

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..")
const pythonScript = join(repoRoot, "..", "shared", "reference", "bench_notify.py")

/** The reference implementation's own benchmark, same workload; null when it cannot run here. */
const runPython = (notifies: number): { readonly rate: number | null; readonly note: string } => {
  if (!existsSync(pythonScript)) return { rate: null, note: "not run (../shared/reference/bench_notify.py missing)" }
  const run = spawnSync("python3", [pythonScript, String(notifies), String(BANKS), String(THRESHOLD)], {
    encoding: "utf8",
    timeout: 180_000
  })
  if (run.error !== undefined || run.status !== 0) {
    return { rate: null, note: `not run (python3: ${run.error?.message ?? run.stderr.trim().split("\n").pop()})` }
  }
  const parsed = JSON.parse(run.stdout.trim().split("\n").pop() ?? "") as { ops_per_s: number; compiles: number }
  return { rate: parsed.ops_per_s, note: `${fmtInt(parsed.compiles)} compiles` }
}

type Chunk = (from: number) => void

/** Runs `notifies` notifies in chunks with an event-loop turn between chunks; times either the chunks or everything. */
const chunked = (notifies: number, chunk: Chunk, hotPathOnly: boolean) => async () => {
  let chunks = 0
  const started = performance.now()
  for (let from = 0; from < notifies; from += CHUNK) {
    const t0 = performance.now()
    chunk(from)
    chunks += performance.now() - t0
    await yieldToEventLoop()
  }
  return { overriddenDuration: hotPathOnly ? chunks : performance.now() - started }
}

export const hotPathRows = async (scale: Scale): Promise<Array<Row>> => {
  const notifies = 1_000_000 / scale.divisor
  const ids = bankIds(BANKS)
  let compiles = 0
  // maxQueueSize as in the reference (banks + 1): nothing is dropped, every trigger compiles.
  const { close, queue } = await openQueue(
    {
      config: { sizeThreshold: THRESHOLD },
      maxQueueSize: BANKS + 1,
      ...(scale.budget === true ? { budget: { tokens: 1e12, compiles: 1e9, bankTokens: 1e9 } } : {})
    },
    instantEngine(() => compiles++)
  )

  const noop = (_bankId: string): void => {}
  const counters = new Map<string, number>()
  const mapChunk: Chunk = (from) => {
    for (let n = from; n < from + CHUNK; n++) {
      const bankId = ids[n % BANKS]!
      const count = (counters.get(bankId) ?? 0) + 1
      counters.set(bankId, count >= THRESHOLD ? 0 : count)
    }
  }
  const syncChunk: Chunk = (from) =>
    Effect.runSync(Effect.gen(function*() {
      // A fresh Effect.sync per call, as any API taking arguments must build one.
      for (let n = from; n < from + CHUNK; n++) {
        const bankId = ids[n % BANKS]!
        yield* Effect.sync(() => noop(bankId))
      }
    }))
  const notifyChunk: Chunk = (from) =>
    Effect.runSync(Effect.gen(function*() {
      for (let n = from; n < from + CHUNK; n++) yield* queue.notifyRetain(ids[n % BANKS]!)
    }))
  const unsafeChunk: Chunk = (from) => {
    for (let n = from; n < from + CHUNK; n++) queue.unsafeNotifyRetain(ids[n % BANKS]!)
  }
  const loops = { "Map counter": mapChunk, "Effect.sync empty op": syncChunk, notifyRetain: notifyChunk, unsafeNotifyRetain: unsafeChunk }

  const bench = new Bench({ iterations: scale.quick ? 4 : 8, time: 0, warmupIterations: 2, warmupTime: 0 })
  for (const [name, chunk] of Object.entries(loops)) {
    bench.add(`${name} (hot path)`, chunked(notifies, chunk, true))
    bench.add(`${name} (whole loop)`, chunked(notifies, chunk, false))
  }
  const tasks = await runBench(bench)
  const rate = (name: keyof typeof loops, whole: boolean) =>
    opsPerSecond(tasks.get(`${name} (${whole ? "whole loop" : "hot path"})`)!, notifies)
  const err = (name: keyof typeof loops, whole: boolean) => rme(tasks.get(`${name} (${whole ? "whole loop" : "hot path"})`)!)

  // Heap growth over B1 runs: nothing a notify allocates may survive GC. Two runs settle JIT code and caches; the
  // growth over the next two is the steady state. A retained per-notify allocation would be ≥ 16 B a notify.
  const b1Run = async () => {
    await chunked(notifies, notifyChunk, false)()
    await Effect.runPromise(queue.drain({ timeout: "1 minute" }))
  }
  const heap0 = await liveBytes()
  await b1Run()
  await b1Run()
  const heap1 = await liveBytes()
  await b1Run()
  await b1Run()
  const heap2 = await liveBytes()
  const banks = (await Effect.runPromise(queue.stats)).banks
  await close()

  const python = runPython(notifies)
  const py = python.rate
  const pyText = py === null ? `Python reference ${python.note}` : `Python reference ${mps(py)} (whole loop, ${python.note})`
  const xPy = (r: number) => (py === null ? "n/a" : `${(r / py).toFixed(1)}×`)

  const b1Hot = rate("notifyRetain", false)
  const b1Whole = rate("notifyRetain", true)
  const syncHot = rate("Effect.sync empty op", false)
  const syncWhole = rate("Effect.sync empty op", true)
  const b2Hot = rate("unsafeNotifyRetain", false)
  const b2Whole = rate("unsafeNotifyRetain", true)
  const mapHot = rate("Map counter", false)
  const mapWhole = rate("Map counter", true)
  const steadyGrowth = (heap2 - heap1) / 2
  return [
    {
      id: "B1",
      figure: `notifyRetain from Effect.gen, ${fmtInt(notifies)} notifies over ${BANKS} banks, threshold ${THRESHOLD}, hot path`,
      value: `${mps(b1Hot)} (${err("notifyRetain", false)}) = ${((b1Hot / syncHot) * 100).toFixed(0)} % of Effect.sync; ${xPy(b1Hot)} Python`,
      baseline: `\`yield* Effect.sync\` empty op ${mps(syncHot)} (${err("Effect.sync empty op", false)}); Map loop ${mps(mapHot)}; ${pyText}`,
      target: "≥ 5 M/s",
      met: b1Hot >= 5e6,
      data: { notifyRate: b1Hot, syncRate: syncHot, mapRate: mapHot, pythonRate: py }
    },
    {
      id: "B1w",
      figure: `same, whole loop (the ${fmtInt(notifies / THRESHOLD)} compiles it causes included, as the reference measures)`,
      value: `${mps(b1Whole)} (${err("notifyRetain", true)}) = ${xPy(b1Whole)} Python`,
      baseline: `Effect.sync empty op ${mps(syncWhole)}; Map loop ${mps(mapWhole)}; ${pyText}`,
      target: "≥ 4× Python",
      met: py === null ? null : b1Whole >= 4 * py,
      data: { notifyRate: b1Whole, syncRate: syncWhole, mapRate: mapWhole, pythonRate: py }
    },
    {
      id: "B2",
      figure: "unsafeNotifyRetain from a plain loop, same workload, hot path",
      value: `${mps(b2Hot)} (${err("unsafeNotifyRetain", false)}) = ${((b2Hot / mapHot) * 100).toFixed(0)} % of the Map loop; ${xPy(b2Hot)} Python`,
      baseline: `Map loop ${mps(mapHot)} (${err("Map counter", false)}); ${pyText}`,
      target: "≥ 30 M/s",
      met: b2Hot >= 30e6,
      data: { unsafeRate: b2Hot, mapRate: mapHot, pythonRate: py }
    },
    {
      id: "B2w",
      figure: "same, whole loop (compiles included)",
      value: `${mps(b2Whole)} (${err("unsafeNotifyRetain", true)}) = ${xPy(b2Whole)} Python`,
      baseline: `Map loop ${mps(mapWhole)}; ${pyText}`,
      target: "≥ 25× Python",
      met: py === null ? null : b2Whole >= 25 * py,
      data: { unsafeRate: b2Whole, mapRate: mapWhole, pythonRate: py }
    },
    {
      id: "B1h",
      figure: `heap growth over a B1 run (${fmtInt(notifies)} notifies, after GC)`,
      value: `${fmtInt(steadyGrowth)} B = ${(steadyGrowth / notifies).toFixed(4)} B/notify (mean of 2 runs; the 2 settling runs before: ${
        fmtInt(heap1 - heap0)
      } B)`,
      baseline: `${fmtInt(compiles)} compiles ran during these rows; ${banks} banks`,
      target: "no per-notify allocation survives GC (< 1 B/notify)",
      met: steadyGrowth / notifies < 1,
      data: { steadyGrowthBytes: steadyGrowth, firstRunGrowthBytes: heap1 - heap0, compiles }
    }
  ]
}
