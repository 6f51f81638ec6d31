import { Duration, Effect } from "effect"

/** JS timers fire at once beyond ~24.8 days and Effect's live clock then never fires: sleep in steps of a day. */
const MAX_STEP_MILLIS = 86_400_000

/** Sleeps `millis` on the Effect clock, however long; `Infinity` never wakes. @internal */
export const sleepMillis = (millis: number): Effect.Effect<void> => {
  if (!Number.isFinite(millis)) return Effect.never
  if (millis <= MAX_STEP_MILLIS) return Effect.sleep(Duration.millis(Math.max(0, millis)))
  return Effect.zipRight(Effect.sleep(Duration.millis(MAX_STEP_MILLIS)), Effect.suspend(() => sleepMillis(millis - MAX_STEP_MILLIS)))
}
