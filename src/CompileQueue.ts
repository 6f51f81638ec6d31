/**
 * The compile queue: counts retains per bank, queues a bank once when it needs a compile, and runs the
 * `CompileEngine` for it on a pool of supervised worker fibers.
 *
 * @since 0.1.0
 */
import { type Cause, Context, type Duration, type Effect, Layer, type Option, type Scope } from "effect"
import type { BankCompileState, BankStatus } from "./BankCompileState.js"
import type { BankLimitError } from "./BankLimit.js"
import type { BankPolicy, BankPolicyError, BankPolicyInput } from "./BankPolicy.js"
import type { BankStoreError } from "./BankStateStore.js"
import type { CompileBudgetState } from "./CompileBudget.js"
import type { CompileEngine } from "./CompileEngine.js"
import type { CompileRecord, RecentCompilesOptions, RunningCompile } from "./CompileHistory.js"
import type { CompileQueueOptions } from "./CompileQueueOptions.js"
import type { CompileTriggerConfig } from "./CompileTriggerConfig.js"
import type { NextCompile, QueueFreshness } from "./Freshness.js"
import type { CompileNowOptions, WriteOptions } from "./DirtyScopes.js"
import type { StoreHealth } from "./StoreHealth.js"
import * as internal from "./internal/runtime/compileQueue.js"

/**
 * Counts of the queue right now.
 *
 * @since 0.1.0
 */
export interface CompileQueueStats {
  /** Banks the queue knows. */
  readonly banks: number
  /** Banks waiting in the queue or for a retry. */
  readonly pending: number
  /** Compiles running now. */
  readonly running: number
  /** Banks waiting in the queue (a subset of `pending`). */
  readonly queued: number
  /** `maxQueueSize`; `Infinity` when unbounded. */
  readonly capacity: number
  /** The cost budget now (`Infinity` where unlimited); `CompileQueue.budget` has the details. */
  readonly budget: CompileQueueBudgetStats
  /** The write-behind to the `BankStateStore`; absent without a store. */
  readonly store?: StoreHealth | undefined
  /** True when the counts are a whole cluster's (`ClusterCompileQueue`: every partition asked); absent otherwise. */
  readonly cluster?: boolean | undefined
}

/**
 * @since 0.1.0
 */
export interface CompileQueueBudgetStats {
  /** Tokens left in the global bucket (continuous; negative after a compile used more than was left). */
  readonly tokensAvailable: number
  /** Compiles left in the global bucket (continuous: a compile needs at least 1). */
  readonly compilesAvailable: number
  /** Banks deferred because their own token bucket is spent (pending, holding no worker and no queue slot). */
  readonly deferred: number
}

/**
 * One page of `listBanks`, in the order banks were first seen.
 *
 * @since 0.1.0
 */
export interface BankPage {
  readonly banks: ReadonlyArray<BankCompileState>
  /** Pass as `cursor` to get the next page; `None` on the last page. */
  readonly nextCursor: Option.Option<string>
}

/**
 * @since 0.1.0
 */
export interface ListBanksOptions {
  readonly status?: BankStatus | undefined
  /** Page size, 1 to 1,000 (default 100). */
  readonly limit?: number | undefined
  /** From the previous page's `nextCursor`; an unreadable cursor starts from the beginning. */
  readonly cursor?: string | undefined
}

/**
 * @since 0.1.0
 */
export interface CompileQueueService {
  /**
   * Counts `count` (default 1) new memories for the bank and queues it if it now needs a compile. Never fails or
   * suspends: invalid input, or a new bank past `maxBanks`, is ignored with a warning (`unsafeCheckRoom` tells first).
   * The options form `{ count?, scopes? }` also names the scopes the memories touched (see `DirtyScopes`): they join
   * the bank's dirty scopes, which its next compile's job names; an invalid scope counts nothing.
   */
  readonly notifyRetain: (bankId: string, count?: number | WriteOptions) => Effect.Effect<void>
  /** `notifyRetain` for synchronous, non-Effect callers; uses the runtime and clock the layer was built with. */
  readonly unsafeNotifyRetain: (bankId: string, count?: number | WriteOptions) => void
  /**
   * Counts `count` (default 1) forgotten memories for the bank. Once `forgetsSinceLastCompile` reaches the bank's
   * `forgetThreshold` it is queued `forgetDelaySeconds` later (0: before this returns); forgets in between join that
   * compile. Never fails or suspends; invalid input, or a new bank past `maxBanks`, is ignored with a warning. Takes
   * `{ count?, scopes? }` like `notifyRetain`.
   */
  readonly notifyForget: (bankId: string, count?: number | WriteOptions) => Effect.Effect<void>
  /** `notifyForget` for synchronous, non-Effect callers; uses the runtime and clock the layer was built with. */
  readonly unsafeNotifyForget: (bankId: string, count?: number | WriteOptions) => void
  /**
   * Replaces the bank's policy (creating the bank if new, with nothing counted) and re-checks it at once: an idle bank
   * whose new rule holds is queued before this returns. An invalid bank id or field fails with `BankPolicyError`, a
   * new bank past `maxBanks` with `BankLimitError`; either changes nothing.
   */
  readonly setPolicy: (bankId: string, policy: BankPolicyInput) => Effect.Effect<void, BankPolicyError | BankLimitError>
  /** Drops the bank's policy (it follows the queue's config again) and re-checks it like `setPolicy`. */
  readonly clearPolicy: (bankId: string) => Effect.Effect<void>
  readonly policyOf: (bankId: string) => Effect.Effect<Option.Option<BankPolicy>>
  /** The bank's effective config: its policy's fields over the queue's `config`. */
  readonly configFor: (bankId: string) => Effect.Effect<CompileTriggerConfig>
  /**
   * Queues the bank regardless of thresholds; a running bank is queued again when its compile ends. A new bank past
   * `maxBanks` is ignored with a warning. `scopes` join the bank's dirty scopes, so the compile is told to rebuild them
   * (invalid ones: ignored with a warning, nothing queued).
   */
  readonly compileNow: (bankId: string, options?: CompileNowOptions) => Effect.Effect<void>
  /**
   * Whether writes naming `bankIds` would all be counted: `undefined` when every bank is known or fits under
   * `maxBanks` (the new ones counted together), else a `BankLimitError` for the first that does not. Synchronous:
   * checked and written in one step (as the HTTP routes do), the answer holds, so a batch is counted whole or not at
   * all. In cluster mode only the partitions this runner runs are checked here; the owner of any other refuses a
   * new bank itself (the HTTP routes learn it from the write's acknowledgement).
   */
  readonly unsafeCheckRoom: (bankIds: ReadonlyArray<string>) => BankLimitError | undefined
  /**
   * Waits until every change made before the call is stored: the next flush of the write-behind takes it, and runs at
   * once (callers that wait together share one flush). Fails with `BankStoreError` when that flush fails (the changes
   * stay in memory, and later flushes retry them). Succeeds at once without a store.
   */
  readonly flush: Effect.Effect<void, BankStoreError>
  /** Waits until no bank is pending or running (default timeout 5 seconds). */
  readonly drain: (options?: { readonly timeout?: Duration.DurationInput }) => Effect.Effect<
    void,
    Cause.TimeoutException
  >
  readonly pendingBanks: Effect.Effect<ReadonlySet<string>>
  readonly runningBanks: Effect.Effect<ReadonlySet<string>>
  /** A snapshot of every bank. */
  readonly state: Effect.Effect<ReadonlyMap<string, BankCompileState>>
  /** A snapshot of one bank; `None` for a bank the queue never saw. */
  readonly bankState: (bankId: string) => Effect.Effect<Option.Option<BankCompileState>>
  /** Runs the staleness sweep now (it also runs every `sweepInterval`); returns how many banks it queued. */
  readonly sweepNow: Effect.Effect<number>
  /** Banks page by page, optionally only those with one status. */
  readonly listBanks: (options?: ListBanksOptions) => Effect.Effect<BankPage>
  readonly stats: Effect.Effect<CompileQueueStats>
  /**
   * Freshness now: the age of each bank's oldest uncompiled memory (largest, p50, p95), the banks past or closest to
   * their `maxWaitSeconds` deadline, and the queue's lanes. One pass over every bank (read it per scrape, not per
   * retain); it also sets the freshness gauges. Absent on a cluster router.
   */
  readonly freshness?: Effect.Effect<QueueFreshness>
  /**
   * When the bank compiles next and why: which rule fires when, or what holds it. `None` for a bank the queue never
   * saw. Absent on a cluster router.
   */
  readonly nextCompile?: (bankId: string) => Effect.Effect<Option.Option<NextCompile>>
  /**
   * The last finished engine runs, newest first (at most `historyCapacity`, default 1,000), optionally only one
   * bank's or one outcome's. Kept in a fixed-size ring written once per engine run, never on the retain path.
   */
  readonly recentCompiles: (options?: RecentCompilesOptions) => Effect.Effect<ReadonlyArray<CompileRecord>>
  /** The compiles running now, in the order they started, optionally only one bank's. */
  readonly runningCompiles: (bankId?: string) => Effect.Effect<ReadonlyArray<RunningCompile>>
  /** The cost budget in full: bucket levels, when they next let a compile start and refill, the deferred banks. */
  readonly budget: Effect.Effect<CompileBudgetState>
  readonly config: CompileTriggerConfig
}

/**
 * The service tag. Build it with `CompileQueue.layer(options)` (or `CompileQueue.make(options)` inside a scope);
 * closing the scope shuts it down gracefully.
 *
 * @since 0.1.0
 */
export class CompileQueue extends Context.Tag("effect-compile-trigger/CompileQueue")<CompileQueue, CompileQueueService>() {
  /**
   * Builds the service in the current scope, restoring the state of a `BankStateStore` in context first (failing with
   * `BankStoreError` when it cannot be read). Invalid options are a defect naming the option.
   */
  static make: (
    options?: CompileQueueOptions
  ) => Effect.Effect<CompileQueueService, BankStoreError, CompileEngine | Scope.Scope> = internal.make

  /** The service as a layer; its scope is the queue's lifetime. */
  static layer = (options?: CompileQueueOptions): Layer.Layer<CompileQueue, BankStoreError, CompileEngine> =>
    Layer.scoped(CompileQueue, internal.make(options))
}
