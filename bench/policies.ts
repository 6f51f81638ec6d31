/**
 * P1/P2 (B1 and B2 with 1 % of the 1,000 banks holding a policy, against the same loops with no policy, one run,
 * alternating), P3 (unsafeNotifyForget against unsafeNotifyRetain on the same workload) and P4 (B3's memory per bank
 * at 1M banks with 1 % policies, against B3's setup without them, same run).
 *
 * The policy is `{ sizeThreshold: 50, stalenessDays: 3 }`: a policy bank compiles as often as the others, but
 * leaves the fast rule for the exact per-bank check on every retain. The forget loop uses `forgetThreshold` 50 (and
 * `sizeThreshold` 50 for the retain loop it is compared with), so both queue the same number of compiles.
 *
 * @internal
 */
import { Effect } from "effect"
import { bankIds, Bench, fmtInt, liveBytes, mps, openQueue, opsPerSecond, rme, type Row, runBench, type Scale, yieldToEventLoop } from "./common.js"

const BANKS = 1000
const THRESHOLD = 50
const CHUNK = 10_000
const POLICY = { sizeThreshold: THRESHOLD, stalenessDays: 3 } as const

/** Times only the chunks (the hot path), with an event-loop turn between them so the worker compiles. */
const hotPath = (notifies: number, chunk: (from: number) => void) => async () => {
  let timed = 0
  for (let from = 0; from < notifies; from += CHUNK) {
    const t0 = performance.now()
    chunk(from)
    timed += performance.now() - t0
    await yieldToEventLoop()
  }
  return { overriddenDuration: timed }
}

const withPolicies = async (queue: Awaited<ReturnType<typeof openQueue>>["queue"], ids: ReadonlyArray<string>) => {
  for (let n = 0; n < ids.length; n += 100) await Effect.runPromise(queue.setPolicy(ids[n]!, POLICY))
}

const throughputRows = async (scale: Scale): Promise<Array<Row>> => {
  const notifies = 1_000_000 / scale.divisor
  const ids = bankIds(BANKS)
  const options = { config: { sizeThreshold: THRESHOLD, forgetThreshold: THRESHOLD }, maxQueueSize: BANKS + 1 }
  const plain = await openQueue(options)
  const policed = await openQueue(options)
  await withPolicies(policed.queue, ids)
  const effectLoop = (queue: typeof plain.queue) => (from: number) =>
    Effect.runSync(Effect.gen(function*() {
      for (let n = from; n < from + CHUNK; n++) yield* queue.notifyRetain(ids[n % BANKS]!)
    }))
  const retainLoop = (queue: typeof plain.queue) => (from: number) => {
    for (let n = from; n < from + CHUNK; n++) queue.unsafeNotifyRetain(ids[n % BANKS]!)
  }
  const forgetLoop = (queue: typeof plain.queue) => (from: number) => {
    for (let n = from; n < from + CHUNK; n++) queue.unsafeNotifyForget(ids[n % BANKS]!)
  }
  const bench = new Bench({ iterations: 4, time: 0, warmupIterations: 1, warmupTime: 0 })
  // Alternating pairs, so drift on a shared machine hits both sides alike; each figure is the median of the rounds.
  const rounds = scale.quick ? 2 : 5
  for (let round = 0; round < rounds; round++) {
    bench.add(`B1 no policy ${round}`, hotPath(notifies, effectLoop(plain.queue)))
    bench.add(`B1 1 % policies ${round}`, hotPath(notifies, effectLoop(policed.queue)))
    bench.add(`B2 no policy ${round}`, hotPath(notifies, retainLoop(plain.queue)))
    bench.add(`B2 1 % policies ${round}`, hotPath(notifies, retainLoop(policed.queue)))
    bench.add(`retain ${round}`, hotPath(notifies, retainLoop(plain.queue)))
    bench.add(`forget ${round}`, hotPath(notifies, forgetLoop(plain.queue)))
  }
  const tasks = await runBench(bench)
  await plain.close()
  await policed.close()
  const median = (values: Array<number>) => values.sort((a, b) => a - b)[values.length >> 1]!
  const ratesOf = (name: string) =>
    Array.from({ length: rounds }, (_, round) => opsPerSecond(tasks.get(`${name} ${round}`)!, notifies))
  /** Median rates of both sides, and the median of the per-round ratios (`a` over `b`). */
  const pair = (a: string, b: string) => {
    const as = ratesOf(a)
    const bs = ratesOf(b)
    return [median([...as]), median([...bs]), median(as.map((rate, round) => rate / bs[round]!))] as const
  }
  const err = (name: string) => rme(tasks.get(`${name} 0`)!)
  const pct = (ratio: number) => `${(ratio * 100).toFixed(1)} %`
  const b1 = pair("B1 1 % policies", "B1 no policy")
  const b2 = pair("B2 1 % policies", "B2 no policy")
  const forget = pair("forget", "retain")
  return [
    {
      id: "P1",
      figure: `B1 (notifyRetain, ${fmtInt(notifies)} notifies over ${BANKS} banks, hot path) with 10 banks (1 %) holding a policy`,
      value: `${mps(b1[0])} (${err("B1 1 % policies")}); ${pct(b1[2])} of no policies (median of ${rounds} alternating rounds)`,
      baseline: `no policies ${mps(b1[1])} (${err("B1 no policy")})`,
      target: "within 5 % of no policies",
      met: b1[2] >= 0.95,
      data: { policies: b1[0], none: b1[1], ratio: b1[2] }
    },
    {
      id: "P2",
      figure: "B2 (unsafeNotifyRetain, same workload, hot path) with 1 % policies",
      value: `${mps(b2[0])} (${err("B2 1 % policies")}); ${pct(b2[2])} of no policies (median of ${rounds} rounds)`,
      baseline: `no policies ${mps(b2[1])} (${err("B2 no policy")})`,
      target: "within 5 % of no policies",
      met: b2[2] >= 0.95,
      data: { policies: b2[0], none: b2[1], ratio: b2[2] }
    },
    {
      id: "P3",
      figure: "unsafeNotifyForget, same workload (forgetThreshold 50), hot path",
      value: `${mps(forget[0])} (${err("forget")}): a forget takes ${(1 / forget[2]).toFixed(2)}× the time of a retain (median of ${rounds} rounds)`,
      baseline: `unsafeNotifyRetain ${mps(forget[1])} (${err("retain")})`,
      target: "forget ≤ 1.5× the time of a retain",
      met: 1 / forget[2] <= 1.5,
      data: { forget: forget[0], retain: forget[1], ratio: forget[2] }
    }
  ]
}

/** Bytes per bank after one retain each, for a fresh queue; `policies` of every 100 banks hold one first. */
const bytesPerBank = async (ids: ReadonlyArray<string>, policies: boolean): Promise<number> => {
  const { close, queue } = await openQueue({ config: { sizeThreshold: THRESHOLD } })
  const before = await liveBytes()
  if (policies) await withPolicies(queue, ids)
  for (const id of ids) queue.unsafeNotifyRetain(id)
  const bytes = (await liveBytes()) - before
  const banks = Effect.runSync(queue.stats).banks
  await close()
  if (banks !== ids.length) throw new Error(`P4: the queue holds ${banks} banks, expected ${ids.length}`)
  return bytes / ids.length
}

const memoryRows = async (scale: Scale): Promise<Array<Row>> => {
  const ids = bankIds(1_000_000 / scale.divisor, "memory-bank-")
  new Set(ids).clear() // flatten the id strings first (see bench/memory.ts)
  const none = await bytesPerBank(ids, false)
  const some = await bytesPerBank(ids, true)
  return [{
    id: "P4",
    figure: `B3 (memory per bank, ${fmtInt(ids.length)} banks, one retain each) with 1 % of them holding a policy`,
    value: `${some.toFixed(1)} B/bank`,
    baseline: `no policies ${none.toFixed(1)} B/bank (same run)`,
    target: "≤ 100 B/bank",
    met: some <= 100,
    data: { bytesPerBank: some, withoutPolicies: none, banks: ids.length }
  }]
}

export const policyRows = async (scale: Scale): Promise<Array<Row>> => [
  ...await memoryRows(scale),
  ...await throughputRows(scale)
]
