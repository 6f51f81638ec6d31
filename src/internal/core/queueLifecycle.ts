/**
 * The queue's side of the bank lifecycle: pending banks waiting for room in the full queue going in as workers free
 * slots, closing (nothing is queued once it begins), and the queue's counts. `CompileCore` builds on it.
 *
 * @internal
 */
import type { QueueCounts } from "./answers.js"
import { BankLifecycle } from "./bankLifecycle.js"
import * as ReadViews from "./readViews.js"

export class QueueLifecycle extends BankLifecycle {
  // ---- the queue's room ----

  /**
   * A pending bank (retry delay over, restored, no longer deferred) back into the queue: at once when it has room
   * (and nobody waits for room before it), else when a worker frees a slot (`fillRoom`). True when it is queued now.
   */
  requeue(i: number): boolean {
    if (!this.accepting || !this.room.requeue(i)) return false
    this.inQueue++
    return true
  }

  /** A worker took a bank, so the queue has room: banks waiting for it go in, in order. Returns how many. */
  fillRoom(): number {
    if (!this.accepting) return 0
    const moved = this.room.fill()
    this.inQueue += moved
    return moved
  }

  // ---- closing ----

  /** Closing begins: nothing is queued from now on. */
  close(): void {
    this.accepting = false
  }

  /** The queue was shut down (its banks stay pending): returns how many it held. */
  queueShutDown(): number {
    const held = this.inQueue
    this.inQueue = 0
    this.gate.clear()
    this.room.clear()
    return held
  }

  // ---- reads ----

  /** The ids of a set of banks (`pending`, `running`). */
  idsOf(banks: ReadonlySet<number>): ReadonlySet<string> {
    return ReadViews.idsOf(this.table, banks)
  }

  counts(): QueueCounts {
    const { pending, running, table } = this
    const capacity = this.options.maxQueueSize
    return { banks: table.size, pending: pending.size, running: running.size, queued: this.inQueue, capacity }
  }
}
