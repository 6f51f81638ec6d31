/**
 * The cost of naming a scope: same-process rounds of 1M `unsafeNotifyRetain(id)` and 1M
 * `unsafeNotifyRetain(id, { scopes: [scope] })` (the options object and its array made per call, as a caller would),
 * alternating chunk by chunk, over two sets of 1,000 banks, threshold 50, instant engine — so every 50th retain of a
 * bank queues a compile that takes and consumes its dirty scopes. Only the 10,000-notify chunks are timed (CPU time with `CPU=1`); prints the
 * median and interquartile range of the per-round ratio scoped / plain. Processes differ more than rounds (each
 * JIT-compiles its own way): run several.
 *
 *   node --import tsx bench/scopedRetain.ts [rounds=20] [scopes per bank=8]
 *
 * @internal
 */
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as Lib from "../src/index.js"
import { alternating } from "./common.js"

const rounds = Number(process.argv[2] ?? 20)
const scopesPerBank = Number(process.argv[3] ?? 8)
const BANKS = 1000
const CHUNK = 10_000
const NOTIFIES = 1_000_000
const plainIds = Array.from({ length: BANKS }, (_, n) => `plain-${n}`)
const scopedIds = Array.from({ length: BANKS }, (_, n) => `scoped-${n}`)
const scopeNames = Array.from({ length: scopesPerBank }, (_, n) => `page-${n}`)

const result = new Lib.CompileResult({ bankId: "bench" }, true)
const engine = Layer.succeed(Lib.CompileEngine, { run: () => Effect.succeed(result) })
const scope = Effect.runSync(Scope.make())
const context = await Effect.runPromise(
  Layer.buildWithScope(
    Lib.CompileQueue.layer({ config: { sizeThreshold: 50 }, maxQueueSize: 2 * BANKS + 1 }).pipe(Layer.provide(engine)),
    scope
  )
)
const queue = Context.get(context, Lib.CompileQueue)

const plain = (from: number) => {
  for (let n = from; n < from + CHUNK; n++) queue.unsafeNotifyRetain(plainIds[n % BANKS]!)
}
const scoped = (from: number) => {
  for (let n = from; n < from + CHUNK; n++) {
    queue.unsafeNotifyRetain(scopedIds[n % BANKS]!, { scopes: [scopeNames[(n / BANKS | 0) % scopesPerBank]!] })
  }
}

/** One round: the two loops alternating chunk by chunk; scoped / plain. */
const round = async (): Promise<number> => {
  const spent = await alternating(NOTIFIES / CHUNK, (k) => plain(k * CHUNK), (k) => scoped(k * CHUNK))
  return spent.b / spent.a
}

const ratios: Array<number> = []
for (let n = -2; n < rounds; n++) { // two warm-up rounds
  const ratio = await round()
  if (n >= 0) ratios.push(ratio)
}
const quantile = (xs: Array<number>, q: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * q)]!
console.log(
  `a retain naming one scope costs ${quantile(ratios, 0.5).toFixed(2)}× a plain retain (IQR ${
    quantile(ratios, 0.25).toFixed(2)
  }–${quantile(ratios, 0.75).toFixed(2)}, ${rounds} rounds, ${scopesPerBank} scopes per bank, ${
    process.env.CPU === "1" ? "CPU" : "wall"
  } time)`
)
await Effect.runPromise(Scope.close(scope, Exit.void))
