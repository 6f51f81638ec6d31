/**
 * The time of the current task, read once per task: what the retain path stamps memories with (their wait is exact
 * to the task, and a clock read costs about as much as the whole rest of a retain).
 *
 * @internal
 */
import { Clock } from "effect"

/** The live clock's class: only its reads (`Date.now()`) are worth keeping for the rest of the task. */
const LiveClock = Clock.make().constructor

/**
 * A reader of `clock` for the retain path. On the live clock: the first read of a task reads it and a microtask
 * forgets it, so every later read in the same synchronous task is a field load (retains a task counts arrive within
 * microseconds of each other; a task that starts after a pause reads anew). Any other clock — `TestClock`, the
 * tuner's virtual clock — moves between reads without a task boundary, so it is read every time (exact; those runs do
 * not time the hot path).
 */
export const taskClock = (clock: Clock.Clock): () => number => {
  if (clock.constructor !== LiveClock) return () => clock.unsafeCurrentTimeMillis()
  let nowInTask = NaN
  const forget = (): void => {
    nowInTask = NaN
  }
  return () => {
    if (nowInTask !== nowInTask) {
      nowInTask = clock.unsafeCurrentTimeMillis()
      queueMicrotask(forget)
    }
    return nowInTask
  }
}
