/**
 * The queue the workers take banks from: bank numbers in FIFO order up to a capacity, and the workers waiting for
 * one. It stands in for Effect's `Queue`, whose `take` on an empty queue builds a Deferred (a spread of its
 * prototype), an `onInterrupt` and an `asyncInterrupt` each time — and a worker finds the queue empty before most
 * compiles. Here a waiting worker costs one `Effect.async` and a callback in a list.
 *
 * @internal
 */
import { Effect } from "effect"

/** Taken slots at the front are dropped once there are this many and they are over half the array. */
const COMPACT_AT = 1024

export class BankQueue {
  /** Queued banks are `items[head..]`. */
  private items: Array<number> = []
  private head = 0
  /** The waiting workers' resumptions, first come first served. */
  private readonly waiters: Array<(taken: Effect.Effect<number>) => void> = []
  private closed = false

  /** @param capacity banks that may wait at once; `Infinity`: unbounded. */
  constructor(readonly capacity: number) {}

  get size(): number {
    return this.items.length - this.head
  }

  /** Hands `bank` to the first waiting worker, else queues it if there is room; false when full or shut down. */
  unsafeOffer(bank: number): boolean {
    if (this.closed) return false
    const waiter = this.waiters.shift()
    if (waiter !== undefined) {
      waiter(Effect.succeed(bank))
      return true
    }
    if (this.size >= this.capacity) return false
    this.items.push(bank)
    return true
  }

  /** The oldest queued bank, or waits for one; interrupted once the queue is shut down. */
  readonly take: Effect.Effect<number> = Effect.suspend(() => {
    if (this.head < this.items.length) return Effect.succeed(this.poll())
    if (this.closed) return Effect.interrupt
    return Effect.async<number>((resume) => {
      this.waiters.push(resume)
      // An interrupted worker must not be handed a bank: it would be lost.
      return Effect.sync(() => {
        const at = this.waiters.indexOf(resume)
        if (at !== -1) this.waiters.splice(at, 1)
      })
    })
  })

  private poll(): number {
    const bank = this.items[this.head++]!
    if (this.head === this.items.length) {
      this.items.length = 0
      this.head = 0
    } else if (this.head >= COMPACT_AT && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return bank
  }

  /** Discards the queued banks (they stay pending in the core) and interrupts the waiting workers; offers fail from now. */
  readonly shutdown: Effect.Effect<void> = Effect.sync(() => {
    this.closed = true
    this.items = []
    this.head = 0
    for (const waiter of this.waiters.splice(0)) waiter(Effect.interrupt)
  })
}
