/**
 * The user's compile engine: the service the queue calls to compile one bank.
 *
 * @since 0.1.0
 */
import { Context, type Effect, Layer, Schema } from "effect"
import { JobScopes } from "./DirtyScopes.js"
import { FencingToken } from "./FencingToken.js"

const Count = Schema.optionalWith(Schema.NonNegativeInt, { default: () => 0 })

/**
 * What one compile produced. Counts default to 0. A result with `error` set still counts as a compile: the memories
 * it consumed stay consumed, and the error is logged and kept as the bank's `lastError`. `scopesCompiled`: the scopes
 * it rebuilt; empty (the default) means everything the job named. The job's scopes it leaves out stay dirty for the
 * next compile (an `"all"` job is consumed either way).
 *
 * @since 0.1.0
 */
export class CompileResult extends Schema.Class<CompileResult>("CompileResult")({
  bankId: Schema.String,
  scopesCompiled: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
  pagesCreated: Count,
  pagesUpdated: Count,
  noiseMemories: Count,
  tokensUsed: Count,
  elapsedMs: Count,
  error: Schema.optional(Schema.String)
}) {}

/**
 * The engine could not compile the bank. The compile does not count: the bank is retried with backoff.
 *
 * @since 0.1.0
 */
export class CompileError extends Schema.TaggedError<CompileError>()("CompileError", {
  bankId: Schema.String,
  message: Schema.String
}) {}

/**
 * Why a bank was queued: the rule that held (`"size"`, `"staleness"`, `"deadline"`, `"forget"`, the first in that
 * order), `"manual"` (`compileNow`) or `"restored"` (queued again after a restart).
 *
 * @since 0.1.0
 */
export const CompileReason = Schema.Literal("size", "staleness", "forget", "manual", "restored", "deadline")

/** @since 0.1.0 */
export type CompileReason = typeof CompileReason.Type

/**
 * How long the memories a compile consumes waited for it, from the retain that counted each to the compile's start:
 * their mean and the oldest one's, in seconds. Exact: kept per bank as a sum of retain times, not sampled.
 *
 * @since 0.1.0
 */
export const MemoryWait = Schema.Struct({
  meanSeconds: Schema.NonNegative,
  oldestSeconds: Schema.NonNegative
}).annotations({ identifier: "MemoryWait" })

/** @since 0.1.0 */
export interface MemoryWait extends Schema.Schema.Type<typeof MemoryWait> {}

/**
 * What the engine is asked to do: compile `bankId`, queued for `reason`, consuming `memories` new and `forgets`
 * forgotten memories (the counters when this run started). `attempt` is 1 for the first engine run of the trigger
 * and grows on retries. `fencingToken` is higher than that of every earlier engine run of the bank, across retries,
 * restarts and cluster nodes: make your page writes conditional on it, and refuse a token lower than the highest you
 * have seen for the bank (see `FencingToken`). `memoryWait` says how long those memories waited (absent when the run
 * consumes none).
 *
 * `scopes`, present when writes the compile consumes named scopes, says what to rebuild: those scopes, or `"all"`
 * (past `maxScopesPerBank`, or some write named none). Absent: no write named a scope; compile as you always do.
 *
 * @since 0.1.0
 */
export const CompileJob = Schema.Struct({
  bankId: Schema.String,
  reason: CompileReason,
  memories: Schema.NonNegativeInt,
  forgets: Schema.NonNegativeInt,
  attempt: Schema.Int.pipe(Schema.greaterThanOrEqualTo(1)),
  fencingToken: FencingToken,
  memoryWait: Schema.optional(MemoryWait),
  scopes: Schema.optional(JobScopes)
}).annotations({ identifier: "CompileJob" })

/** @since 0.1.0 */
export interface CompileJob extends Schema.Schema.Type<typeof CompileJob> {}

/**
 * @since 0.1.0
 */
export interface CompileEngineService {
  /**
   * Compiles one bank; `job` says why and what it consumes (an engine may ignore it: `run: (bankId) => …`).
   *
   * A compile cut off — the compile timeout, the bank's partition handed to another node, shutdown — is an
   * interruption of this effect: stop the work there (`Effect.onInterrupt`, or the `AbortSignal` that
   * `Effect.tryPromise(signal => …)` hands a promise), since the bank is compiled again later, under a higher
   * `job.fencingToken`.
   */
  readonly run: (bankId: string, job: CompileJob) => Effect.Effect<CompileResult, CompileError>
}

/**
 * Supply it as a `Layer`: `Layer.succeed(CompileEngine, { run: (bankId, job) => ... })`, or `CompileEngine.layer(run)`.
 *
 * @since 0.1.0
 */
export class CompileEngine extends Context.Tag("effect-compile-trigger/CompileEngine")<CompileEngine, CompileEngineService>() {
  /** A layer from a plain `run` function. */
  static layer = (run: CompileEngineService["run"]): Layer.Layer<CompileEngine> => Layer.succeed(CompileEngine, { run })
}
