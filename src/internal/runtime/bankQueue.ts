/**
 * The queue the workers take banks from: bank numbers in FIFO order up to a capacity, and the workers waiting for
 * one. It stands in for Effect's `Queue`, whose `take` on an empty queue builds a Deferred (a spread of its
 * prototype), an `onInterrupt` and an `asyncInterrupt` each time — and a worker finds the queue empty before most
 * compiles. Here a waiting worker costs one `Effect.async`; each worker has a `Taker`, released once when it stops,
 * instead of a canceller on every wait (an `onInterrupt` per wait also kept the wait's objects alive long enough to
 * be promoted out of the young generation: a fifth of a replay went to the scavenger).
 *
 * @internal
 */
import { Effect } from "effect"

/** Taken slots at the front are dropped once there are this many and they are over half the array. */
const COMPACT_AT = 1024

/** One worker's end of the queue: it waits for at most one bank at a time. */
export class Taker {
  /** The resumption of the worker's wait, while it waits. */
  waiting: ((taken: Effect.Effect<number>) => void) | undefined = undefined

  constructor(private readonly queue: BankQueue) {}

  /** The oldest queued bank, or waits for one; interrupted once the queue is shut down. */
  readonly take: Effect.Effect<number> = Effect.suspend(() => this.queue.takeFor(this))

  /** The worker stopped (interrupted at close, or failed): it is never handed a bank from now on. */
  readonly release: Effect.Effect<void> = Effect.sync(() => this.queue.release(this))
}

export class BankQueue {
  /** Queued banks are `items[head..]`. */
  private items: Array<number> = []
  private head = 0
  /** The waiting workers, first come first served. */
  private readonly waiters: Array<Taker> = []
  private closed = false

  /** @param capacity banks that may wait at once; `Infinity`: unbounded. */
  constructor(readonly capacity: number) {}

  get size(): number {
    return this.items.length - this.head
  }

  /** A worker's end of the queue; the worker runs its `release` when it stops. */
  taker(): Taker {
    return new Taker(this)
  }

  /** Hands `bank` to the first waiting worker, else queues it if there is room; false when full or shut down. */
  unsafeOffer(bank: number): boolean {
    if (this.closed) return false
    const waiter = this.waiters.shift()
    if (waiter !== undefined) {
      const resume = waiter.waiting!
      waiter.waiting = undefined
      resume(Effect.succeed(bank))
      return true
    }
    if (this.size >= this.capacity) return false
    this.items.push(bank)
    return true
  }

  /** @internal `Taker.take`. */
  takeFor(taker: Taker): Effect.Effect<number> {
    if (this.head < this.items.length) return Effect.succeed(this.poll())
    if (this.closed) return Effect.interrupt
    return Effect.async<number>((resume) => {
      taker.waiting = resume
      this.waiters.push(taker)
    })
  }

  /**
   * @internal `Taker.release`. It runs in the interrupted worker's own exit, synchronously after the interruption
   * ended its wait, so no offer can come in between.
   */
  release(taker: Taker): void {
    taker.waiting = undefined
    const at = this.waiters.indexOf(taker)
    if (at !== -1) this.waiters.splice(at, 1)
  }

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
    for (const waiter of this.waiters.splice(0)) {
      const resume = waiter.waiting
      waiter.waiting = undefined
      resume?.(Effect.interrupt)
    }
  })
}
