/**
 * Order statistics without a sort: the value a sort would put at an index, found by partitioning in place (the
 * tuner's percentiles of a month's delays, the queue's freshness percentiles across banks).
 *
 * @internal
 */

/** Partition rounds after which `select` sorts what is left (inputs that defeat a median-of-three pivot). */
const SELECT_ROUNDS = 64

/**
 * The value a sort would put at index `k`, found by reordering `data[from, to)` around it (Hoare's FIND): nothing
 * greater before it, nothing smaller after — so a later call for a higher index may start at `k + 1`.
 */
export const select = (data: Float64Array, k: number, from: number, to: number): number => {
  let lo = from
  let hi = to - 1
  for (let round = 0; lo < hi; round++) {
    if (round === SELECT_ROUNDS) {
      data.subarray(lo, hi + 1).sort()
      break
    }
    const a = data[lo]!
    const b = data[(lo + hi) >>> 1]!
    const c = data[hi]!
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b
    let i = lo
    let j = hi
    while (i <= j) {
      while (data[i]! < pivot) i++
      while (data[j]! > pivot) j--
      if (i <= j) {
        const t = data[i]!
        data[i++] = data[j]!
        data[j--] = t
      }
    }
    // Now data[lo..j] <= pivot <= data[i..hi], and everything strictly between j and i equals the pivot.
    if (k <= j) hi = j
    else if (k >= i) lo = i
    else break
  }
  return data[k]!
}
