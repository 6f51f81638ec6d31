/**
 * What a queue's stop left behind, as the one line every stop ends with: the banks left pending (and how many of them
 * wait for budget), the compiles cut off at the deadline, and whether the final flush stored the state. Cluster mode
 * adds up its partitions' into one line for the node.
 *
 * @internal
 */
import { Effect } from "effect"

export interface StopSummary {
  /**
   * Banks still pending that were not cut off: queued and not reached, held for the global budget, deferred by their
   * own, waiting for room or for a retry. They stay pending (and in a store, so a restart compiles them).
   */
  readonly leftPending: number
  /** Of those, the banks waiting for budget when the stop gave up on them (held for the global budget, or deferred). */
  readonly forBudget: number
  /** Compiles still running at the deadline, interrupted: their banks stay pending too. */
  readonly cutOff: number
  /** Changed banks the final flush could not store; undefined without a store. */
  readonly unstored: number | undefined
}

export const NO_STOP: StopSummary = { leftPending: 0, forBudget: 0, cutOff: 0, unstored: undefined }

/** Two stops' figures added up (a node's partitions); "no store" only when neither had one. */
export const addStops = (a: StopSummary, b: StopSummary): StopSummary => ({
  leftPending: a.leftPending + b.leftPending,
  forBudget: a.forBudget + b.forBudget,
  cutOff: a.cutOff + b.cutOff,
  unstored: a.unstored === undefined && b.unstored === undefined ? undefined : (a.unstored ?? 0) + (b.unstored ?? 0)
})

const banks = (n: number) => `${n} ${n === 1 ? "bank" : "banks"}`

/** Why the banks left pending wait: "(budget)" when the budget holds all of them, else how many it holds. */
const pendingReason = ({ forBudget, leftPending }: StopSummary): string =>
  forBudget === 0 ? "" : forBudget >= leftPending ? " (budget)" : ` (${forBudget} for the budget)`

const flushOutcome = (unstored: number | undefined): string =>
  unstored === undefined
    ? "state in memory only (no store)"
    : unstored === 0
    ? "state flushed"
    : `state not flushed: ${unstored} changed banks not stored (the final flush kept failing)`

/**
 * The line, e.g. `stopped: 44 banks left pending (budget), 0 cut off, state flushed`; `suffix` ends it (a node's
 * partition count).
 */
export const describeStop = (summary: StopSummary, suffix = ""): string =>
  `stopped: ${banks(summary.leftPending)} left pending${pendingReason(summary)}, ${summary.cutOff} cut off, ${
    flushOutcome(summary.unstored)
  }${suffix}`

/** Logs the line: at error level when the final flush left changes unstored, else at info level. */
export const logStop = (summary: StopSummary, suffix = ""): Effect.Effect<void> =>
  summary.unstored !== undefined && summary.unstored > 0
    ? Effect.logError(describeStop(summary, suffix))
    : Effect.logInfo(describeStop(summary, suffix))
