/**
 * The banks deferred because their own token bucket is spent, in the order they become due: a binary heap keyed by
 * due time, so the runtime's one timer always waits for the earliest.
 *
 * @internal
 */

/**
 * Banks whose own bucket is spent, in the order they become due (then the order they were deferred): a binary heap,
 * with stale entries (the bank was re-keyed or left) skipped when they surface.
 */
export class DeferredBanks {
  private readonly heap: Array<{ readonly i: number; readonly due: number; readonly seq: number }> = []
  /** The current due time of each deferred bank. */
  readonly dueOf = new Map<number, number>()
  private seq = 0

  get size(): number {
    return this.dueOf.size
  }

  has(i: number): boolean {
    return this.dueOf.has(i)
  }

  /** Defers bank `i` until `due` (or re-keys it). */
  set(i: number, due: number): void {
    this.dueOf.set(i, due)
    this.push({ i, due, seq: this.seq++ })
  }

  delete(i: number): void {
    this.dueOf.delete(i)
  }

  /** Earliest due time; NaN when none. */
  get nextDue(): number {
    this.dropStale()
    return this.heap.length === 0 ? NaN : this.heap[0]!.due
  }

  /** Removes and returns the banks due by `now`, in due order. */
  popDue(now: number): Array<number> {
    const due: Array<number> = []
    for (;;) {
      this.dropStale()
      const top = this.heap[0]
      if (top === undefined || top.due > now) return due
      this.pop()
      this.dueOf.delete(top.i)
      due.push(top.i)
    }
  }

  /** Deferred banks in due order (for reports). */
  ordered(limit: number): Array<{ readonly i: number; readonly due: number }> {
    return Array.from(this.dueOf, ([i, due]) => ({ i, due })).sort((a, b) => a.due - b.due).slice(0, limit)
  }

  clear(): void {
    this.heap.length = 0
    this.dueOf.clear()
  }

  private dropStale(): void {
    for (;;) {
      const top = this.heap[0]
      if (top === undefined || this.dueOf.get(top.i) === top.due) return
      this.pop()
    }
  }

  private less(a: number, b: number): boolean {
    const x = this.heap[a]!
    const y = this.heap[b]!
    return x.due < y.due || (x.due === y.due && x.seq < y.seq)
  }

  private swap(a: number, b: number): void {
    const heap = this.heap
    const t = heap[a]!
    heap[a] = heap[b]!
    heap[b] = t
  }

  private push(entry: { readonly i: number; readonly due: number; readonly seq: number }): void {
    const heap = this.heap
    heap.push(entry)
    let n = heap.length - 1
    while (n > 0) {
      const parent = (n - 1) >> 1
      if (!this.less(n, parent)) break
      this.swap(n, parent)
      n = parent
    }
  }

  private pop(): void {
    const heap = this.heap
    const last = heap.pop()!
    if (heap.length === 0) return
    heap[0] = last
    let n = 0
    for (;;) {
      const left = 2 * n + 1
      const right = left + 1
      let smallest = n
      if (left < heap.length && this.less(left, smallest)) smallest = left
      if (right < heap.length && this.less(right, smallest)) smallest = right
      if (smallest === n) return
      this.swap(n, smallest)
      n = smallest
    }
  }
}
