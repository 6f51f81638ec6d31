/**
 * Which runner owns each partition, and how the last one left it, so that a move is logged once, at INFO, by the
 * runner that takes the partition over: from whom, to whom, and why (`partition 12 moved: 10.0.0.5:34431 → 10.0.0.6:34431
 * (10.0.0.5:34431 did not hand it over: it died or lost Postgres)`). The owner writes a row when it takes a partition
 * (in the same statement reading who had it) and marks it when it leaves, before it lets the partition's lock go.
 *
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"

/** Why a runner left a partition: it was stopping, the cluster gave the partition to another, or its lock went. */
export type LeaveReason = "stopping" | "reassigned" | "lock lost"

/** The partition's last owner, and how it left (null: it did not hand the partition over). */
export interface PreviousOwner {
  readonly runner: string
  readonly left: LeaveReason | null
}

export interface PartitionMoves {
  /** This runner: the address its log names. */
  readonly runner: string
  /** Records this runner as the partition's owner (it holds the partition's lock): the owner before, if any. */
  readonly taken: (partition: number) => Effect.Effect<PreviousOwner | undefined, SqlError>
  /** Records that this runner leaves the partition (before it lets the lock go), unless another took it already. */
  readonly left: (partition: number, why: LeaveReason) => Effect.Effect<void, SqlError>
}

export const OWNERS_TABLE = "compile_trigger_partition_owners"

const isReason = (value: unknown): value is LeaveReason =>
  value === "stopping" || value === "reassigned" || value === "lock lost"

/** The partition owners' table, for `runner`. */
export const pgPartitionMoves = (sql: SqlClient.SqlClient, runner: string): PartitionMoves => ({
  runner,
  // One statement: the CTE reads the row as it was before the upsert replaced it.
  taken: (partition) =>
    Effect.map(
      sql.unsafe<{ runner: string; left_because: string | null }>(
        `WITH previous AS (SELECT runner, left_because FROM ${OWNERS_TABLE} WHERE partition = $1),
          mine AS (
            INSERT INTO ${OWNERS_TABLE} (partition, runner, since, left_because) VALUES ($1, $2, $3, NULL)
            ON CONFLICT (partition) DO UPDATE SET runner = excluded.runner, since = excluded.since, left_because = NULL
          )
        SELECT runner, left_because FROM previous`,
        [partition, runner, Date.now()]
      ),
      (rows) => {
        const row = rows[0]
        return row === undefined ? undefined : { runner: row.runner, left: isReason(row.left_because) ? row.left_because : null }
      }
    ),
  left: (partition, why) =>
    Effect.asVoid(
      sql.unsafe(`UPDATE ${OWNERS_TABLE} SET left_because = $1 WHERE partition = $2 AND runner = $3`, [why, partition, runner])
    )
})

/** Why the partition came here, in words. */
const because = (previous: PreviousOwner): string => {
  switch (previous.left) {
    case null:
      return `${previous.runner} did not hand it over: it died or lost Postgres`
    case "stopping":
      return `${previous.runner} stopped`
    case "reassigned":
      return "the cluster reassigned it: a runner joined or left"
    case "lock lost":
      return `${previous.runner} lost the partition's lock`
  }
}

/**
 * The log line of a partition taken over by `to`: INFO for a move (or a runner taking back what it had before it
 * restarted), DEBUG for a partition's first owner.
 */
export const describeMove = (
  partition: number,
  previous: PreviousOwner | undefined,
  to: string
): { readonly level: "info" | "debug"; readonly message: string } =>
  previous === undefined
    ? { level: "debug", message: `partition ${partition}: first owned by ${to}` }
    : { level: "info", message: `partition ${partition} moved: ${previous.runner} → ${to} (${because(previous)})` }

/** Logs the move of a partition just taken over here; when Postgres could not say who had it, says so (once). */
export const logMove = (moves: PartitionMoves, partition: number) =>
  moves.taken(partition).pipe(
    Effect.timeout("5 seconds"),
    Effect.matchEffect({
      onFailure: () => Effect.logInfo(`partition ${partition} moved to ${moves.runner} (its previous owner could not be read)`),
      onSuccess: (previous) => {
        const { level, message } = describeMove(partition, previous, moves.runner)
        return level === "info" ? Effect.logInfo(message) : Effect.logDebug(message)
      }
    })
  )

/** Marks the partition left (bounded: a hand-over never waits long on Postgres for a log line). */
export const markLeft = (moves: PartitionMoves, partition: number, why: LeaveReason) =>
  moves.left(partition, why).pipe(Effect.timeout("2 seconds"), Effect.ignore)
