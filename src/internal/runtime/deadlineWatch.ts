/**
 * The deadline watcher: the one timer of the freshness deadlines (`maxWaitSeconds`). It sleeps until the earliest
 * deadline, queues the idle banks whose deadline came (reason `deadline`, unless another rule holds first) and sleeps
 * again; a deadline earlier than the one it sleeps for (the timeline was empty, or a shorter max wait came in) wakes
 * it. No retain and no sweep is needed for a deadline to fire on time.
 *
 * @internal
 */
import { Deferred, Effect, Exit, FiberId } from "effect"
import { NOTHING } from "../core/compileCore.js"
import { loopForever } from "./loop.js"
import type { QueueRuntime } from "./queueRuntime.js"
import { sleepMillis } from "./sleep.js"

/** Queues the banks whose deadline came by `now`. */
const fireDue = (rt: QueueRuntime, now: number): void => {
  const core = rt.core
  if (!(core.freshness.nextDue <= now)) return
  for (const i of core.freshness.due(now)) {
    const answer = core.recheck(i, now)
    rt.fireSignals()
    if (answer !== NOTHING) rt.answered(i, answer)
  }
}

/** The watcher's loop, on the clock the queue was built with (a `TestClock` or the tuner's virtual clock too). */
export const watchDeadlines = (rt: QueueRuntime): Effect.Effect<never> => {
  let wake: Deferred.Deferred<void> | undefined
  rt.core.freshness.onEarlier = () => {
    if (wake === undefined) return
    Deferred.unsafeDone(wake, Exit.void)
    wake = undefined
  }
  return loopForever(Effect.suspend(() => {
    const now = rt.now()
    fireDue(rt, now)
    const due = rt.core.freshness.nextDue
    const woken = Deferred.unsafeMake<void>(FiberId.none)
    wake = woken
    if (due !== due) return Deferred.await(woken)
    return Effect.raceFirst(sleepMillis(due - now, rt.clock), Deferred.await(woken))
  }))
}
