/**
 * A loop for the queue's long-lived fibers that suspend on every round anyway (a worker waits on the queue and the
 * engine, the staleness watcher on a timer or a signal).
 *
 * @internal
 */
import { Cause, Effect } from "effect"

/**
 * Runs `round` again and again, like `Effect.forever` without its `yieldNow` after every round. That yield is one
 * extra scheduler task per compile. The runtime still yields a fiber that runs a long time without suspending (every
 * 2,048 operations), so an instant engine cannot starve other fibers.
 */
export const loopForever = <E, R>(round: Effect.Effect<unknown, E, R>): Effect.Effect<never, E, R> => {
  const loop: Effect.Effect<never, E, R> = Effect.flatMap(round, () => loop)
  return loop
}

/**
 * Runs a long-lived loop that must never end but by interruption: if it ends anyway (a defect, a bug), logs at ERROR
 * what ended it and starts it again.
 */
export const supervised = <R>(name: string, loop: Effect.Effect<never, unknown, R>): Effect.Effect<never, never, R> => {
  // The fiber's own interruption never reaches the handler: only an end from within the loop does.
  const run: Effect.Effect<never, never, R> = Effect.catchAllCause(
    loop,
    (cause: Cause.Cause<unknown>) =>
      Effect.zipRight(Effect.logError(`${name} stopped unexpectedly; starting it again`, cause), run)
  )
  return run
}
