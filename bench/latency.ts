/**
 * B6: latency from the retain that triggers a bank to the start of its compile (the engine's first instruction),
 * 1,000 banks, concurrency 8, engine 1 ms on the live clock. tinybench runs one bank per iteration and takes the
 * measured latency as the sample (overriddenDuration), in two shapes:
 * - steady: 8 banks in flight, each iteration waits for its compile to end — a free worker is always there, so
 *   this is the queue's own dispatch latency;
 * - burst: all 1,000 banks triggered at once — this includes waiting behind up to 999 others (ideal ≈ position / 8 ms).
 *
 * @internal
 */
import { Duration, Effect } from "effect"
import { CompileEngine, CompileResult } from "../src/index.js"
import { Bench, fmtInt, openQueue, type Row, runBench, type Scale } from "./common.js"

const CONCURRENCY = 8
const ENGINE_MILLIS = 1

export const latencyRows = async (scale: Scale): Promise<Array<Row>> => {
  const banks = 1000
  const waiting = new Map<string, { started: (at: number) => void; ended: () => void }>()
  const result = new CompileResult({ bankId: "bench" }, true)
  const engine = CompileEngine.layer((bankId) =>
    Effect.sync(() => waiting.get(bankId)?.started(performance.now())).pipe(
      Effect.zipRight(Effect.sleep(Duration.millis(ENGINE_MILLIS))),
      Effect.ensuring(Effect.sync(() => waiting.get(bankId)?.ended())),
      Effect.as(result)
    )
  )
  const { close, queue } = await openQueue({ config: { sizeThreshold: 1 }, concurrency: CONCURRENCY, maxQueueSize: 0 }, engine)
  let next = 0
  const oneBank = async () => {
    const bankId = `b6-${next++}`
    let started!: (at: number) => void
    let ended!: () => void
    const startedAt = new Promise<number>((resolve) => (started = resolve))
    const endedP = new Promise<void>((resolve) => (ended = resolve))
    waiting.set(bankId, { started, ended })
    const triggeredAt = performance.now()
    queue.unsafeNotifyRetain(bankId)
    const latency = (await startedAt) - triggeredAt
    await endedP
    waiting.delete(bankId)
    return { overriddenDuration: latency }
  }
  const measure = async (name: string, inFlight: number) => {
    const bench = new Bench({ iterations: banks / (scale.quick ? 2 : 1), time: 0, warmup: false })
    bench.concurrency = "task"
    bench.threshold = inFlight
    bench.add(name, oneBank)
    return (await runBench(bench)).get(name)!.result!.latency
  }
  // A short warm-up of the whole path (JIT) before either shape is measured.
  await measure("warm-up", CONCURRENCY)
  const steady = await measure("steady", CONCURRENCY)
  const burst = await measure("burst", Infinity)
  await close()
  const row = (figure: string, l: typeof steady, baseline: string): Row => ({
    id: "B6",
    figure: `trigger → compile start, ${fmtInt(l.samples.length)} banks, concurrency ${CONCURRENCY}, engine ${ENGINE_MILLIS} ms, ${figure}`,
    value: `p50 ${l.p50!.toFixed(3)} ms, p99 ${l.p99!.toFixed(3)} ms (mean ${l.mean.toFixed(3)} ms)`,
    baseline,
    target: "report p50/p99",
    met: null,
    data: { p50Ms: l.p50 ?? null, p99Ms: l.p99 ?? null, meanMs: l.mean }
  })
  return [
    row(`steady (${CONCURRENCY} in flight)`, steady, "—"),
    row(
      "burst (all triggered at once)",
      burst,
      `queue wait alone: p50 ≈ ${((l50(burst.samples.length) / CONCURRENCY) * ENGINE_MILLIS).toFixed(0)} ms, p99 ≈ ${
        ((0.99 * burst.samples.length / CONCURRENCY) * ENGINE_MILLIS).toFixed(0)
      } ms at exactly ${ENGINE_MILLIS} ms a compile`
    )
  ]
}

const l50 = (n: number) => n / 2
