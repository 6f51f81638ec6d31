/**
 * What the runtime gives the core when it builds it: the settings, whether changes are listed for a store, the
 * queue's synchronous offer and the budget.
 *
 * @internal
 */
import type { CompileTriggerConfig } from "../../CompileTriggerConfig.js"
import type { BudgetLimits, GlobalBuckets } from "./tokenBucket.js"

export interface CoreOptions {
  readonly config: CompileTriggerConfig
  /** Engine runs per trigger, the first included. */
  readonly maxAttempts: number
  readonly baseDelayMillis: number
  /** `Infinity` when unbounded (only reported: `offer` is what enforces it). */
  readonly maxQueueSize: number
  /** New banks past this many are refused (`add` answers -1); at most HARD_MAX_BANKS. Default HARD_MAX_BANKS. */
  readonly maxBanks?: number | undefined
  /** Keep the change list for a store. */
  readonly persistent: boolean
  /** The queue's synchronous offer: true when the bank got a slot. */
  readonly offer: (bank: number) => boolean
  /** The cost budget (absent: no global or default per-bank limit; a policy's `bankTokens` still applies). */
  readonly budget?: BudgetLimits | undefined
  /** Global buckets shared with other queues (cluster mode); absent: this queue's own, from `budget`. */
  readonly sharedBudget?: GlobalBuckets | undefined
}
