/**
 * The log line of a partition move: one, at INFO, by the runner that takes the partition over — from whom, to whom,
 * and why (`partition 12 moved: 10.0.0.5:34431 → 10.0.0.6:34431 (10.0.0.5:34431 did not hand it over: …)`). The
 * lease row says it: a take reads who held the partition before and how that holder left it (`partitionLeases.ts`).
 *
 * @internal
 */
import { Effect } from "effect"

/** Why a runner left a partition: it was stopping, the cluster gave the partition to another, or its lease went. */
export type LeaveReason = "stopping" | "reassigned" | "lease lost"

/** The partition's last holder, and how it left (null: it did not hand the partition over; its lease expired). */
export interface PreviousOwner {
  readonly runner: string
  readonly left: LeaveReason | null
}

/** Why the partition came here, in words. */
const because = (previous: PreviousOwner): string => {
  switch (previous.left) {
    case null:
      return `${previous.runner} did not hand it over: its lease expired (it died, froze, or lost Postgres)`
    case "stopping":
      return `${previous.runner} stopped`
    case "reassigned":
      return "the cluster reassigned it: a runner joined or left"
    case "lease lost":
      return `${previous.runner} lost the partition's lease`
  }
}

/**
 * The log line of a partition taken over by `to`: INFO for a move (or a runner taking back what it had before it
 * restarted), DEBUG for a partition's first holder.
 */
export const describeMove = (
  partition: number,
  previous: PreviousOwner | undefined,
  to: string
): { readonly level: "info" | "debug"; readonly message: string } =>
  previous === undefined
    ? { level: "debug", message: `partition ${partition}: first owned by ${to}` }
    : { level: "info", message: `partition ${partition} moved: ${previous.runner} → ${to} (${because(previous)})` }

/** Logs the move of a partition just taken over by `to`. */
export const logMove = (partition: number, previous: PreviousOwner | undefined, to: string): Effect.Effect<void> => {
  const { level, message } = describeMove(partition, previous, to)
  return level === "info" ? Effect.logInfo(message) : Effect.logDebug(message)
}
