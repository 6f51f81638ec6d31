/**
 * Same-run A/B of the bank queue alone: this checkout's (three lanes) against another checkout's, in one process —
 *
 *   git worktree add --detach /tmp/base <commit> && ln -s "$PWD/node_modules" /tmp/base/node_modules
 *   CPU=1 node --import tsx bench/bankQueueAB.ts /tmp/base [rounds=20]
 *
 * Each round offers and takes 1M banks through one queue of each build, in bursts of 1 to 64 (as the queue sees them:
 * a compile's end or a sweep queues several, a worker takes one at a time); this checkout's queue gets 5 % urgent and
 * 5 % deadline banks, the rest ordinary. Rounds alternate the order; each is timed in CPU time with `CPU=1`. Prints
 * the median and interquartile range of this checkout's per-round time as a ratio of the other's.
 *
 * @internal
 */
import { Effect } from "effect"
import { join, resolve } from "node:path"
import * as Here from "../src/internal/runtime/bankQueue.js"
import { benchClock } from "./common.js"

const positional = process.argv.slice(2).filter((arg) => !arg.startsWith("--"))
const basePath = positional[0]
if (basePath === undefined) throw new Error("usage: bench/bankQueueAB.ts <other checkout> [rounds]")
const rounds = Number(positional[1] ?? 20)
const Base = (await import(join(resolve(basePath), "src", "internal", "runtime", "bankQueue.ts"))) as typeof Here

const BANKS = 1_000_000

/** Bursts of 1..64 offers, then as many takes; the same pseudo-random sizes for both builds. */
const run = (queue: Here.BankQueue): number => {
  const { take } = queue.taker()
  let seed = 7
  let checksum = 0
  const started = benchClock()
  Effect.runSync(Effect.suspend(() => {
    for (let bank = 0; bank < BANKS;) {
      seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff
      const burst = 1 + (seed & 63)
      for (let n = 0; n < burst && bank < BANKS; n++) queue.unsafeOffer(bank++)
      while (queue.size > 0) checksum += Effect.runSync(take)
    }
    return Effect.void
  }))
  if (checksum !== (BANKS * (BANKS - 1)) / 2) throw new Error("a bank was lost")
  return benchClock() - started
}

const mixed: Here.Priorities = {
  laneOf: (bank) => bank % 20 === 0 ? Here.URGENT : bank % 20 === 1 ? Here.DEADLINE : Here.ORDINARY,
  deadlineOf: (bank) => bank % 1000
}
const here = () => {
  const queue = new Here.BankQueue(Infinity)
  queue.priorities = mixed
  return run(queue)
}
const base = () => run(new Base.BankQueue(Infinity) as unknown as Here.BankQueue)

here()
base()
const ratios: Array<number> = []
const times: Array<number> = []
for (let round = 0; round < rounds; round++) {
  const [a, b] = round % 2 === 0 ? [here(), base()] : [base(), here()].reverse() as [number, number]
  ratios.push(a / b)
  times.push(a)
}
times.sort((x, y) => x - y)
ratios.sort((x, y) => x - y)
const at = (q: number) => ratios[Math.min(ratios.length - 1, Math.floor(q * ratios.length))]!
process.stdout.write(
  `bank queue, this checkout / other: median ${(100 * at(0.5)).toFixed(1)} % (IQR ${(100 * at(0.25)).toFixed(1)}–${
    (100 * at(0.75)).toFixed(1)
  } %) over ${rounds} rounds of ${BANKS.toLocaleString("en-US")} offers and takes; this checkout's round: ${
    times[times.length >> 1]!.toFixed(0)
  } ms\n`
)
