/**
 * What the cost budget looks like right now: the levels of its buckets, when they next let a compile start and when
 * they are full again, and the banks deferred until their own bucket refills. Returned by `CompileQueue.budget` and
 * served as `GET /v1/budget`.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * One global bucket (tokens or compiles). `available` is continuous (fractional), and the tokens bucket may be
 * negative after a compile used more than was left.
 *
 * @since 0.1.0
 */
export class BudgetBucketState extends Schema.Class<BudgetBucketState>("BudgetBucketState")({
  /** The limit per period (the bucket's size). */
  capacity: Schema.Number,
  available: Schema.Number,
  /** When this bucket next lets a compile start: now, when it does already (tokens above 0; compiles at least 1). */
  nextStartAt: Schema.DateTimeUtc,
  /** When the bucket is full again (now, when it is). */
  fullAt: Schema.DateTimeUtc
}) {}

/**
 * A bank deferred because its own token bucket is spent: queued again at `dueAt`.
 *
 * @since 0.1.0
 */
export class DeferredBank extends Schema.Class<DeferredBank>("DeferredBank")({
  bankId: Schema.String,
  /** The bank's own limit per period (its policy's `bankTokens`, else the queue's). */
  capacity: Schema.Number,
  tokensAvailable: Schema.Number,
  dueAt: Schema.DateTimeUtc
}) {}

/**
 * @since 0.1.0
 */
export class CompileBudgetState extends Schema.Class<CompileBudgetState>("CompileBudgetState")({
  /** The refill period, in seconds. */
  periodSeconds: Schema.Number,
  /** The global tokens bucket; `null` when unlimited. */
  tokens: Schema.NullOr(BudgetBucketState),
  /** The global compiles bucket; `null` when unlimited. */
  compiles: Schema.NullOr(BudgetBucketState),
  /** The default per-bank limit; `null` when unlimited (a policy's `bankTokens` still applies). */
  bankTokens: Schema.NullOr(Schema.Number),
  /**
   * Banks held for the global budget: while it is spent, every bank queued or waiting for a slot in the queue (no
   * worker takes one before it opens); 0 while it lets compiles start.
   */
  waiting: Schema.NonNegativeInt,
  /** How many banks are deferred. */
  deferredCount: Schema.NonNegativeInt,
  /** The deferred banks in the order they come due (the first 1,000). */
  deferred: Schema.Array(DeferredBank)
}) {}
