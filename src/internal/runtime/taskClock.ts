/**
 * The time of the current task, read once per task: what the retain path stamps memories with (their wait is exact
 * to the task, and a clock read costs about as much as the whole rest of a retain).
 *
 * @internal
 */
import { Clock } from "effect"

/** The live clock's class: only its reads (`Date.now()`) are worth keeping for the rest of the task. */
const LiveClock = Clock.make().constructor

const nothing = (): void => {}

/** An arming of `run` for the end of the current task: the first call of a task queues it, later ones do nothing. */
export const atEndOfTask = (run: () => void): () => void => {
  let armed = false
  const end = (): void => {
    armed = false
    run()
  }
  return () => {
    if (armed) return
    armed = true
    queueMicrotask(end)
  }
}

/**
 * `read`, called at most once per synchronous task: later calls in the same task get that value back (a field load),
 * and a microtask forgets it, then runs `atTaskEnd`. For reads that cost more than what they serve and that a task
 * may share: the clock on the retain path (retains a task counts arrive within microseconds of each other), a lease's
 * validity asked for every write a runner counts. A task that starts after a pause — or a freeze — reads anew.
 */
export const oncePerTask = (read: () => number, atTaskEnd: () => void = nothing): () => number => {
  let inTask = NaN
  const end = (): void => {
    inTask = NaN
    atTaskEnd()
  }
  return () => {
    if (inTask !== inTask) {
      inTask = read()
      queueMicrotask(end)
    }
    return inTask
  }
}

/**
 * A reader of `clock` for the retain path, and the end of each task that read it. The live clock is read once per
 * task (`oncePerTask`). Any other clock — `TestClock`, the tuner's virtual clock — moves between reads without a task
 * boundary, so it is read every time (exact; those runs do not time the hot path). Either way `atTaskEnd` runs once
 * after each task that read it: what the retain path defers to there (the retains metric) costs nothing per retain.
 */
export const taskClock = (clock: Clock.Clock, atTaskEnd: () => void): () => number => {
  if (clock.constructor === LiveClock) return oncePerTask(() => clock.unsafeCurrentTimeMillis(), atTaskEnd)
  const arm = atEndOfTask(atTaskEnd)
  return () => {
    arm()
    return clock.unsafeCurrentTimeMillis()
  }
}
