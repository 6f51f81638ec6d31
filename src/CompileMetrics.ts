/**
 * The queue's metrics, as named constants so applications can read or export them (e.g. as Prometheus text).
 * Effect metrics live in one registry per process: several queues in one process add to the same series.
 *
 * @since 0.1.0
 */
import { Metric, MetricBoundaries } from "effect"
import { WeightedHistogram } from "./internal/runtime/weightedHistogram.js"

/** Memories counted by `notifyRetain` (the sum of the counts, not the number of calls). */
export const retains = Metric.counter("compile_trigger_retains_total", {
  description: "Memories counted by notifyRetain",
  incremental: true
})

/** Retains, forgets and compiles ignored: an invalid bank id or count, or a new bank past `maxBanks`. */
export const retainsRejected = Metric.counter("compile_trigger_retains_rejected_total", {
  description: "retains, forgets and compiles ignored: an invalid bank id or count, or a new bank past maxBanks",
  incremental: true
})

/** Banks put in the queue (by a retain, compileNow, the sweep, a retry or a re-check after a compile). */
export const enqueued = Metric.counter("compile_trigger_enqueued_total", {
  description: "Banks put in the compile queue",
  incremental: true
})

/** Banks that should have been queued but the queue was full; the sweep offers them again. */
export const dropped = Metric.counter("compile_trigger_dropped_total", {
  description: "Banks not queued because the compile queue was full",
  incremental: true
})

/** Engine runs that failed and were scheduled for another attempt. */
export const retries = Metric.counter("compile_trigger_retries_total", {
  description: "Failed compiles scheduled for a retry",
  incremental: true
})

/** Finished engine runs, tagged `outcome`: `success`, `reported_error` (result with `error`) or `failure`. */
export const compiles = Metric.counter("compile_trigger_compiles_total", {
  description: "Finished compiles by outcome",
  incremental: true
})

/** @internal */
export const compilesSucceeded: Metric.Metric.Counter<number> = compiles.pipe(Metric.tagged("outcome", "success"))
/** @internal */
export const compilesReportedError: Metric.Metric.Counter<number> = compiles.pipe(Metric.tagged("outcome", "reported_error"))
/** @internal */
export const compilesFailed: Metric.Metric.Counter<number> = compiles.pipe(Metric.tagged("outcome", "failure"))

/** Engine run time in seconds, successful or not. */
export const compileDuration = Metric.histogram(
  "compile_trigger_compile_duration_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 18 }),
  "Engine run time in seconds"
)

/** Banks waiting in the queue now. */
export const queueSize = Metric.gauge("compile_trigger_queue_size", {
  description: "Banks waiting in the compile queue"
})

/** Compiles running now. */
export const running = Metric.gauge("compile_trigger_running", {
  description: "Compiles running now"
})

/** Write-behind flushes of bank state that failed (the banks are kept and retried). */
export const storeFlushFailures = Metric.counter("compile_trigger_store_flush_failures_total", {
  description: "Failed flushes of bank state to the store",
  incremental: true
})

/** Banks changed in memory and not yet stored, over every queue of the process: what a crash now would lose. */
export const storeUnflushed = Metric.gauge("compile_trigger_store_unflushed_changes", {
  description: "Banks changed in memory and not yet written to the store"
})

/** The oldest unflushed change is at most this old, in seconds (the maximum over the process's queues). */
export const storeOldestUnflushed = Metric.gauge("compile_trigger_store_oldest_unflushed_seconds", {
  description: "Upper bound on the age of the oldest change not yet written to the store, in seconds"
})

/** When a flush last committed, in Unix seconds (the oldest over the process's queues). */
export const storeLastFlushSuccess = Metric.gauge("compile_trigger_store_last_flush_success_timestamp_seconds", {
  description: "When a flush of bank state to the store last committed, in Unix seconds"
})

/** 1 while every flush commits; 0 from a failed flush until the next one that commits. */
export const storeHealthy = Metric.gauge("compile_trigger_store_healthy", {
  description: "1 while flushes of bank state to the store succeed, 0 while they fail"
})

/** LLM tokens compiles reported using (`CompileResult.tokensUsed`, successful or with `error`). */
export const tokensUsed = Metric.counter("compile_trigger_tokens_used_total", {
  description: "LLM tokens used by compiles (CompileResult.tokensUsed)",
  incremental: true
})

/**
 * Banks waiting for budget now: held for the global budget (while it is spent, every queued bank) or deferred (their
 * own budget spent). Exact at every read through the queue (`stats`, `budget`, …), as a scrape makes first.
 */
export const budgetWaiting = Metric.gauge("compile_trigger_budget_waiting", {
  description: "Banks waiting for budget: held for the spent global budget, or deferred by their own"
})

/** How long a compile waited for budget before it started, in seconds (only compiles that waited). */
export const budgetWait = Metric.histogram(
  "compile_trigger_budget_wait_seconds",
  MetricBoundaries.exponential({ start: 0.1, factor: 2, count: 20 }),
  "Time compiles waited for budget, in seconds"
)

/**
 * How long memories waited for the compile that consumed them, from their retain to the compile's start, in seconds:
 * one observation per memory (each compile adds its memories at their exact mean wait, so `_sum / _count` is the
 * exact mean wait of every memory compiled). Rendered by `PrometheusMetrics`; Effect histograms count one observation
 * per update, and one update per memory would be one per retain.
 *
 * @since 0.1.0
 */
export const memoryWait: WeightedHistogram = new WeightedHistogram(
  "compile_trigger_memory_wait_seconds",
  "Time memories waited from their retain to the compile that consumed them, in seconds (one count per memory)",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 22 }).values
)

/**
 * Freshness now, across the banks with an uncompiled memory: the age of the oldest one (the largest over banks), the
 * 50th and 95th percentiles of each bank's oldest-memory age, and the banks past their `maxWaitSeconds`. Computed
 * when the queue's freshness is read (the service's `/metrics` reads it first), never on the retain path.
 *
 * @since 0.1.0
 */
export const oldestMemoryAge = Metric.gauge("compile_trigger_oldest_memory_age_seconds", {
  description: "Age of the oldest uncompiled memory of any bank, in seconds (0: none waits)"
})

/** @since 0.1.0 */
export const memoryAgeP50 = Metric.gauge("compile_trigger_memory_age_p50_seconds", {
  description: "Median over banks of the age of each bank's oldest uncompiled memory, in seconds"
})

/** @since 0.1.0 */
export const memoryAgeP95 = Metric.gauge("compile_trigger_memory_age_p95_seconds", {
  description: "95th percentile over banks of the age of each bank's oldest uncompiled memory, in seconds"
})

/** @since 0.1.0 */
export const banksOverdue = Metric.gauge("compile_trigger_banks_overdue", {
  description: "Banks whose oldest uncompiled memory waited longer than their maxWaitSeconds"
})
