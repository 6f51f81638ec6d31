/**
 * `/metrics`: every Effect metric of this process (the `CompileMetrics` included) and the process basics, in the
 * Prometheus text format. prom-client writes the format and collects the process metrics
 * (`process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_start_time_seconds`,
 * `nodejs_heap_size_used_bytes`, event-loop lag, GC, …); Effect's metric registry is read with `Metric.unsafeSnapshot`.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Metric, type MetricPair, MetricState, Option } from "effect"
import * as Prometheus from "prom-client"
import * as CompileMetrics from "./CompileMetrics.js"

/** The content type of the Prometheus text format, version 0.0.4. */
export const contentType = Prometheus.Registry.PROMETHEUS_CONTENT_TYPE

/**
 * @since 0.1.0
 */
export interface PrometheusMetricsService {
  /** The exposition text of every metric now. */
  readonly render: Effect.Effect<string>
}

type Sample = { readonly value: number; readonly labels: Record<string, string>; readonly metricName?: string }

type Family = {
  readonly name: string
  readonly help: string
  readonly type: "counter" | "gauge" | "histogram" | "summary"
  readonly values: Array<Sample>
}

/** A family whose samples are fixed at render time, in the shape prom-client's registry formats. */
const staticMetric = (family: Family): Prometheus.Metric =>
  ({
    name: family.name,
    help: family.help,
    type: family.type,
    aggregator: "sum",
    collect: () => undefined,
    get: () => Promise.resolve({ ...family, aggregator: "sum" })
  }) as unknown as Prometheus.Metric

const toNumber = (value: number | bigint): number => typeof value === "bigint" ? Number(value) : value

/**
 * Groups Effect metric pairs by name into Prometheus families. Metric kinds map one to one; a frequency becomes a
 * counter with one series per occurrence (label `key`).
 *
 * @since 0.1.0
 */
export const families = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): Array<Family> => {
  const byName = new Map<string, Family>()
  for (const pair of pairs) {
    const key = pair.metricKey
    const state: unknown = pair.metricState
    const labels: Record<string, string> = {}
    for (const tag of key.tags) labels[tag.key] = tag.value
    const type = MetricState.isCounterState(state) || MetricState.isFrequencyState(state)
      ? "counter"
      : MetricState.isGaugeState(state)
      ? "gauge"
      : MetricState.isHistogramState(state)
      ? "histogram"
      : "summary"
    let family = byName.get(key.name)
    if (family === undefined) {
      family = { name: key.name, help: Option.getOrElse(key.description, () => key.name), type, values: [] }
      byName.set(key.name, family)
    }
    if (family.type !== type) continue // one name, one type: the first kind seen wins
    const values = family.values
    if (MetricState.isCounterState(state)) {
      values.push({ value: toNumber(state.count), labels })
    } else if (MetricState.isGaugeState(state)) {
      values.push({ value: toNumber(state.value), labels })
    } else if (MetricState.isFrequencyState(state)) {
      for (const [occurrence, count] of state.occurrences) values.push({ value: count, labels: { ...labels, key: occurrence } })
    } else if (MetricState.isHistogramState(state)) {
      for (const [boundary, count] of state.buckets) {
        values.push({
          metricName: `${key.name}_bucket`,
          value: count,
          labels: { ...labels, le: boundary === Infinity ? "+Inf" : String(boundary) }
        })
      }
      if (state.buckets.at(-1)?.[0] !== Infinity) {
        values.push({ metricName: `${key.name}_bucket`, value: state.count, labels: { ...labels, le: "+Inf" } })
      }
      values.push({ metricName: `${key.name}_sum`, value: state.sum, labels })
      values.push({ metricName: `${key.name}_count`, value: state.count, labels })
    } else if (MetricState.isSummaryState(state)) {
      for (const [quantile, value] of state.quantiles) {
        if (Option.isSome(value)) values.push({ value: value.value, labels: { ...labels, quantile: String(quantile) } })
      }
      values.push({ metricName: `${key.name}_sum`, value: state.sum, labels })
      values.push({ metricName: `${key.name}_count`, value: state.count, labels })
    }
  }
  return [...byName.values()]
}

/** `CompileMetrics.memoryWait` (weighted, so not in Effect's registry) as a Prometheus histogram family. */
const memoryWaitFamily = (): Family => {
  const histogram = CompileMetrics.memoryWait
  const { buckets, count, sum } = histogram.snapshot()
  const name = histogram.name
  const values: Array<Sample> = buckets.map(([boundary, cumulative]) => ({
    metricName: `${name}_bucket`,
    value: cumulative,
    labels: { le: boundary === Infinity ? "+Inf" : String(boundary) }
  }))
  values.push({ metricName: `${name}_sum`, value: sum, labels: {} })
  values.push({ metricName: `${name}_count`, value: count, labels: {} })
  return { name, help: histogram.help, type: "histogram", values }
}

/**
 * Every series of `CompileMetrics` (the budget's included, whether a budget is set or not), created at zero so a
 * scrape lists them before anything happened. The store gauges are not: a queue with a store publishes them at its
 * first read (the service's `/metrics` reads the queue first), and a process without a store has none to report.
 */
const compileMetricSeries = [
  CompileMetrics.retains,
  CompileMetrics.retainsRejected,
  CompileMetrics.enqueued,
  CompileMetrics.dropped,
  CompileMetrics.retries,
  CompileMetrics.compiles.pipe(Metric.tagged("outcome", "success")),
  CompileMetrics.compiles.pipe(Metric.tagged("outcome", "reported_error")),
  CompileMetrics.compiles.pipe(Metric.tagged("outcome", "failure")),
  CompileMetrics.compileDuration,
  CompileMetrics.queueSize,
  CompileMetrics.running,
  CompileMetrics.storeFlushFailures,
  CompileMetrics.tokensUsed,
  CompileMetrics.budgetWaiting,
  CompileMetrics.budgetWait,
  CompileMetrics.oldestMemoryAge,
  CompileMetrics.memoryAgeP50,
  CompileMetrics.memoryAgeP95,
  CompileMetrics.banksOverdue
] as const

/**
 * @since 0.1.0
 */
export class PrometheusMetrics extends Context.Tag("effect-compile-trigger/PrometheusMetrics")<PrometheusMetrics, PrometheusMetricsService>() {
  /** Starts collecting the process metrics (prom-client's default collectors) in a registry of its own. */
  static make: Effect.Effect<PrometheusMetricsService> = Effect.gen(function*() {
    for (const metric of compileMetricSeries) yield* Metric.value(metric as Metric.Metric<unknown, unknown, unknown>)
    const processRegistry = new Prometheus.Registry()
    Prometheus.collectDefaultMetrics({ register: processRegistry })
    return {
      render: Effect.promise(() => {
        const effectRegistry = new Prometheus.Registry()
        for (const family of [...families(Metric.unsafeSnapshot()), memoryWaitFamily()]) {
          if (processRegistry.getSingleMetric(family.name) === undefined) {
            effectRegistry.registerMetric(staticMetric(family))
          }
        }
        return Prometheus.Registry.merge([effectRegistry, processRegistry]).metrics()
      })
    }
  })

  static layer: Layer.Layer<PrometheusMetrics> = Layer.effect(PrometheusMetrics, PrometheusMetrics.make)
}
