/**
 * A histogram that counts each observation with a weight (a compile's memories at their mean wait): one update per
 * compile, never per memory. Kept per process like Effect's metric registry; `PrometheusMetrics` renders it.
 *
 * @internal
 */

export class WeightedHistogram {
  /** Cumulative-free counts: `counts[n]` observations ≤ `boundaries[n]` and > the one before; the last: above all. */
  private readonly counts: Float64Array
  private total = 0
  private weightedSum = 0

  constructor(readonly name: string, readonly help: string, readonly boundaries: ReadonlyArray<number>) {
    this.counts = new Float64Array(boundaries.length + 1)
  }

  /** Adds `weight` observations of `value` (a non-positive weight adds none). */
  observe(value: number, weight: number): void {
    if (!(weight > 0)) return
    const bounds = this.boundaries
    let n = 0
    while (n < bounds.length && value > bounds[n]!) n++
    this.counts[n]! += weight
    this.total += weight
    this.weightedSum += value * weight
  }

  /** The state in Prometheus' terms: cumulative buckets (`le`, +Inf last), the sum and the count. */
  snapshot(): { readonly buckets: ReadonlyArray<readonly [number, number]>; readonly sum: number; readonly count: number } {
    const buckets: Array<readonly [number, number]> = []
    let cumulative = 0
    for (let n = 0; n < this.boundaries.length; n++) {
      cumulative += this.counts[n]!
      buckets.push([this.boundaries[n]!, cumulative])
    }
    buckets.push([Infinity, this.total])
    return { buckets, sum: this.weightedSum, count: this.total }
  }
}
