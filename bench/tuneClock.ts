/**
 * Why the tuner has its own virtual clock: the cost of one time step that wakes one sleeping fiber, with TestClock
 * (TestClock.adjust, run through the runtime) and with the tuner's VirtualClock.advanceTo, in the same run.
 * `node --import tsx bench/tuneClock.ts`
 */
import { Duration, Effect, Runtime, TestClock, TestContext } from "effect"
import { VirtualClock, VirtualScheduler } from "../src/internal/tuner/virtualTime.js"
const N = 20_000
// TestClock: one fiber sleeping 1 ms in a loop; each step is one adjust, run as users run it (runPromise).
const rt = await Effect.runPromise(Effect.runtime<never>().pipe(Effect.provide(TestContext.TestContext)))
let wakes = 0
Runtime.runFork(rt)(Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(1)), Effect.sync(() => { wakes++ }))))
await Runtime.runPromise(rt)(TestClock.adjust(0))
let t0 = performance.now()
for (let i = 0; i < N; i++) await Runtime.runPromise(rt)(TestClock.adjust(Duration.millis(1)))
const tc = (performance.now() - t0) * 1000 / N
console.log("TestClock.adjust per step (one sleeper woken):", tc.toFixed(1), "us", "wakes", wakes)
// Virtual clock
const scheduler = new VirtualScheduler()
const clock = new VirtualClock(0, scheduler)
let vw = 0
Effect.runFork(Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(1)), Effect.sync(() => { vw++ }))).pipe(Effect.withClock(clock), Effect.withScheduler(scheduler)), { scheduler })
scheduler.flush()
t0 = performance.now()
for (let i = 1; i <= N; i++) clock.advanceTo(i)
const vc = (performance.now() - t0) * 1000 / N
console.log("VirtualClock.advanceTo per step (one sleeper woken):", vc.toFixed(2), "us", "wakes", vw)
t0 = performance.now()
for (let i = 0; i < 1_000_000; i++) clock.now = N + (i >> 20)
console.log("VirtualClock time set without a timer due:", ((performance.now() - t0) * 1000 / 1e6).toFixed(4), "us")
process.exit(0)
