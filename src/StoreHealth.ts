/**
 * How the write-behind to the `BankStateStore` is doing: whether flushes succeed, and what a crash right now would
 * lose. Read through `CompileQueue.stats` (`store`), served in `GET /v1/queue` and `/readyz`, and exported as metrics.
 *
 * @since 0.1.0
 */
import { DateTime, Schema } from "effect"

/**
 * The write-behind's state. "Unflushed" changes are banks changed in memory since the last flush that committed:
 * acknowledged in `memory` ack mode, they are what a crash now would lose.
 *
 * @since 0.1.0
 */
export class StoreHealth extends Schema.Class<StoreHealth>("StoreHealth")({
  /** False from the first failed flush until the next flush that commits. */
  healthy: Schema.Boolean,
  /** When the current run of failed flushes began; `null` while healthy. */
  unhealthySince: Schema.NullOr(Schema.DateTimeUtc),
  /** Banks changed in memory and not stored yet (in a flush under way included). */
  unflushed: Schema.NonNegativeInt,
  /**
   * The oldest unflushed change is at most this old, in seconds (0 when nothing is unflushed): the time since the
   * last committed flush took its changes.
   */
  oldestUnflushedSeconds: Schema.NonNegative,
  /** When a flush last committed (or the state was restored); `null` before either. */
  lastFlushAt: Schema.NullOr(Schema.DateTimeUtc),
  /** Failed flushes in a row (0 while healthy). */
  consecutiveFailures: Schema.NonNegativeInt,
  /** Failed flushes since the queue started. */
  failures: Schema.NonNegativeInt,
  /** The last failure's message; `null` while healthy. */
  lastError: Schema.NullOr(Schema.String)
}) {}

/**
 * One line for logs and `/readyz`: "store healthy" or "store unhealthy since …: n changes unflushed (…)".
 *
 * @since 0.1.0
 */
export const describe = (health: StoreHealth): string => {
  const unflushed = `${health.unflushed} change${health.unflushed === 1 ? "" : "s"} unflushed`
  if (health.healthy) return `store healthy, ${unflushed}`
  const since = health.unhealthySince === null ? "" : ` since ${DateTime.formatIso(health.unhealthySince)}`
  return `store unhealthy${since}: ${unflushed}, ${health.consecutiveFailures} failed flushes in a row (${
    health.lastError ?? "unknown error"
  })`
}

const earliest = (a: DateTime.Utc | null, b: DateTime.Utc | null): DateTime.Utc | null =>
  a === null ? b : b === null ? a : DateTime.lessThan(a, b) ? a : b

/**
 * Several write-behinds (cluster mode: one per partition) as one: unhealthy when any is, the sums of their changes
 * and failures, the oldest of their times. `undefined` for none.
 *
 * @since 0.1.0
 */
export const combine = (all: ReadonlyArray<StoreHealth>): StoreHealth | undefined => {
  if (all.length === 0) return undefined
  let unhealthySince: DateTime.Utc | null = null
  let lastFlushAt: DateTime.Utc | null = null
  let lastError: string | null = null
  let unflushed = 0, oldest = 0, consecutiveFailures = 0, failures = 0, healthy = true
  for (const health of all) {
    healthy &&= health.healthy
    unhealthySince = earliest(unhealthySince, health.unhealthySince)
    lastFlushAt = earliest(lastFlushAt, health.lastFlushAt)
    lastError ??= health.lastError
    unflushed += health.unflushed
    oldest = Math.max(oldest, health.oldestUnflushedSeconds)
    consecutiveFailures = Math.max(consecutiveFailures, health.consecutiveFailures)
    failures += health.failures
  }
  return new StoreHealth({
    healthy,
    unhealthySince,
    unflushed,
    oldestUnflushedSeconds: oldest,
    lastFlushAt,
    consecutiveFailures,
    failures,
    lastError
  }, true)
}
