/**
 * Banks in the order their freshness deadline (`maxWaitSeconds`) comes due, so one timer fires each on time with no
 * retain, no sweep and no clock read on the retain path.
 *
 * Why one FIFO per distinct max wait, not one heap: a deadline is "oldest uncompiled memory + max wait", and the
 * oldest memory's time is the time of the retain that made the bank non-empty — times that arrive in order. So for
 * one max wait the due times arrive sorted and a ring buffer of typed arrays takes them in O(1), 8 bytes an entry,
 * no object per entry; the earliest deadline is the smallest of a few heads (one FIFO per value in use: the queue's,
 * and each distinct value policies give). A heap would cost O(log n) swaps per compile cycle of every bank and an
 * object or two arrays' moves per entry. The few entries that arrive out of order — a policy changing a bank's max
 * wait, a failed compile's memories waiting again, a restore, a clock stepping back, an entry re-armed — go to a
 * small heap beside the FIFOs instead. What an entry that comes due means is its owner's to judge (`deadlines.ts`).
 *
 * @internal
 */
import { StalenessTimeline } from "./stalenessTimeline.js"

interface Lane {
  readonly fifo: StalenessTimeline
  /** The latest due time pushed: an earlier one would break the FIFO's order, so it goes to the heap. */
  tail: number
}

export class DeadlineTimeline {
  private readonly lanes = new Map<number, Lane>()
  /** The lane pushed to last (most pushes are the queue's own max wait): no map lookup for it. */
  private lastLane: Lane | undefined
  private lastWait = NaN
  /** Out-of-order entries: a binary min-heap of (due, bank) pairs in two parallel arrays. */
  private readonly heapDue: Array<number> = []
  private readonly heapBank: Array<number> = []

  /** @param keeps whether an entry is worth keeping when a full lane compacts. */
  constructor(private readonly keeps: (bank: number, dueAt: number) => boolean) {}

  /** Entries held, outdated ones included. */
  get size(): number {
    let size = this.heapDue.length
    for (const lane of this.lanes.values()) size += lane.fifo.size
    return size
  }

  /** Due time of the earliest entry; NaN when empty. */
  get nextDue(): number {
    let next = this.heapDue.length === 0 ? NaN : this.heapDue[0]!
    for (const lane of this.lanes.values()) {
      const due = lane.fifo.nextDue
      if (!(due >= next)) next = due === due ? due : next
    }
    return next
  }

  /** Adds bank `bank`'s deadline `dueAt` under max wait `maxWait` (its lane). True when it is the earliest now. */
  push(bank: number, dueAt: number, maxWait: number): boolean {
    let lane = maxWait === this.lastWait ? this.lastLane : this.lanes.get(maxWait)
    if (lane === undefined) this.lanes.set(maxWait, lane = { fifo: new StalenessTimeline(this.keeps), tail: -Infinity })
    this.lastLane = lane
    this.lastWait = maxWait
    if (dueAt >= lane.tail && lane.fifo.size !== 0) { // the common case: behind an earlier entry of its lane
      lane.fifo.push(bank, dueAt)
      lane.tail = dueAt
      return false
    }
    const earliest = !(this.nextDue <= dueAt)
    if (dueAt >= lane.tail) {
      lane.fifo.push(bank, dueAt)
      lane.tail = dueAt
    } else this.heapPush(bank, dueAt)
    return earliest
  }

  /** Removes every entry due at or before `now`, handing each to `onDue` (lanes, then the heap). */
  popDue(now: number, onDue: (bank: number, dueAt: number) => void): void {
    for (const [maxWait, lane] of this.lanes) {
      lane.fifo.popDue(now, onDue)
      if (lane.fifo.size !== 0) continue
      this.lanes.delete(maxWait) // a value no bank uses any more leaves no lane behind
      if (lane === this.lastLane) this.lastWait = NaN
    }
    while (this.heapDue.length > 0 && this.heapDue[0]! <= now) {
      const bank = this.heapBank[0]!
      const due = this.heapDue[0]!
      this.heapPop()
      onDue(bank, due)
    }
  }

  private heapPush(bank: number, dueAt: number): void {
    const { heapBank: banks, heapDue: due } = this
    let n = due.length
    due.push(dueAt)
    banks.push(bank)
    while (n > 0) {
      const parent = (n - 1) >> 1
      if (due[parent]! <= dueAt) break
      due[n] = due[parent]!
      banks[n] = banks[parent]!
      n = parent
    }
    due[n] = dueAt
    banks[n] = bank
  }

  private heapPop(): void {
    const { heapBank: banks, heapDue: due } = this
    const lastDue = due.pop()!
    const lastBank = banks.pop()!
    const size = due.length
    if (size === 0) return
    let n = 0
    for (;;) {
      const left = 2 * n + 1
      if (left >= size) break
      const right = left + 1
      const child = right < size && due[right]! < due[left]! ? right : left
      if (due[child]! >= lastDue) break
      due[n] = due[child]!
      banks[n] = banks[child]!
      n = child
    }
    due[n] = lastDue
    banks[n] = lastBank
  }
}
