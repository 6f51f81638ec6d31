import { type Clock, Duration, Effect } from "effect"

/** JS timers fire at once beyond ~24.8 days and Effect's live clock then never fires: sleep in steps of a day. */
const MAX_STEP_MILLIS = 86_400_000

/**
 * Sleeps `millis` on the Effect clock, however long; `Infinity` never wakes. With `clock`, on that one (it saves
 * looking the fiber's clock up, for a fiber that sleeps once per compile). @internal
 */
export const sleepMillis = (millis: number, clock?: Clock.Clock): Effect.Effect<void> => {
  if (!Number.isFinite(millis)) return Effect.never
  const sleep = (step: number) =>
    clock === undefined ? Effect.sleep(Duration.millis(step)) : clock.sleep(Duration.millis(step))
  if (millis <= MAX_STEP_MILLIS) return sleep(Math.max(0, millis))
  return Effect.zipRight(sleep(MAX_STEP_MILLIS), Effect.suspend(() => sleepMillis(millis - MAX_STEP_MILLIS, clock)))
}
