/**
 * The queue the workers take banks from: bank numbers in three lanes up to a capacity — urgent (forget and manual
 * compiles, FIFO), deadline (in deadline order) and ordinary (size, staleness, restored, FIFO) — and the workers
 * waiting for one. A lane a worker passes over `fairness` times running goes next, so no bank waits forever behind a
 * steady stream of more urgent ones (decision 0011).
 *
 * It stands in for Effect's `Queue`, whose `take` on an empty queue builds a Deferred (a spread of its prototype), an
 * `onInterrupt` and an `asyncInterrupt` each time — and a worker finds the queue empty before most compiles. Here a
 * waiting worker costs one `Effect.async`; each worker has a `Taker`, released once when it stops, instead of a
 * canceller on every wait (an `onInterrupt` per wait also kept the wait's objects alive long enough to be promoted
 * out of the young generation: a fifth of a replay went to the scavenger).
 *
 * @internal
 */
import { Effect } from "effect"

/** Taken slots at the front of a FIFO lane are dropped once there are this many and they are over half the array. */
const COMPACT_AT = 1024

/** The lanes, most urgent first (`Priorities.laneOf`). */
export const URGENT = 0
export const DEADLINE = 1
export const ORDINARY = 2
const LANES = 3

/** Default `fairness`: a waiting lane goes next after this many starts from more urgent lanes. */
export const DEFAULT_FAIRNESS = 8

/**
 * What the queue asks about a bank when a worker next takes (by then the core has recorded why it was queued, which
 * it does just after the offer): its lane, and for the deadline lane, its deadline (epoch millis).
 */
export interface Priorities {
  readonly laneOf: (bank: number) => number
  readonly deadlineOf: (bank: number) => number
}

/** Everything in one lane, first come first served: the queue as it was before lanes (and for tests). */
export const FIFO: Priorities = { laneOf: () => ORDINARY, deadlineOf: () => 0 }

/** One worker's end of the queue: it waits for at most one bank at a time. */
export class Taker {
  /** The resumption of the worker's wait, while it waits. */
  waiting: ((taken: Effect.Effect<number>) => void) | undefined = undefined

  constructor(private readonly queue: BankQueue) {}

  /** The next bank in lane order, or waits for one; interrupted once the queue is shut down. */
  readonly take: Effect.Effect<number> = Effect.suspend(() => this.queue.takeFor(this))

  /** The worker stopped (interrupted at close, or failed): it is never handed a bank from now on. */
  readonly release: Effect.Effect<void> = Effect.sync(() => this.queue.release(this))
}

/** A first-come-first-served lane: `items[head..]`. */
export class FifoLane {
  items: Array<number> = []
  head = 0

  get size(): number {
    return this.items.length - this.head
  }

  push(bank: number): void {
    this.items.push(bank)
  }

  shift(): number {
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

  /** Takes `bank` out wherever it is; false when it is not here. */
  remove(bank: number): boolean {
    const at = this.items.indexOf(bank, this.head)
    if (at === -1) return false
    this.items.splice(at, 1)
    return true
  }

  /** The banks in taking order. */
  list(): Array<number> {
    return this.items.slice(this.head)
  }

  clear(): void {
    this.items = []
    this.head = 0
  }
}

/** The deadline lane: a binary min-heap on (deadline, arrival), in parallel arrays (no object per entry). */
export class DeadlineLane {
  private banks: Array<number> = []
  private dues: Array<number> = []
  private arrivals: Array<number> = []
  private arrived = 0

  get size(): number {
    return this.banks.length
  }

  push(bank: number, due: number): void {
    this.banks.push(bank)
    this.dues.push(due)
    this.arrivals.push(this.arrived++)
    this.up(this.banks.length - 1)
  }

  /** The bank with the earliest deadline (the first to arrive among equal ones). */
  shift(): number {
    return this.removeAt(0)
  }

  remove(bank: number): boolean {
    const at = this.banks.indexOf(bank)
    if (at === -1) return false
    this.removeAt(at)
    return true
  }

  /** The banks in taking order. */
  list(): Array<number> {
    const order = this.banks.map((_, n) => n).sort((a, b) => this.before(a, b) ? -1 : 1)
    return order.map((n) => this.banks[n]!)
  }

  clear(): void {
    this.banks = []
    this.dues = []
    this.arrivals = []
  }

  private removeAt(at: number): number {
    const bank = this.banks[at]!
    const last = this.banks.length - 1
    if (at !== last) {
      this.move(last, at)
      this.truncate(last)
      this.down(at)
      this.up(at)
    } else {
      this.truncate(last)
    }
    return bank
  }

  private truncate(length: number): void {
    this.banks.length = length
    this.dues.length = length
    this.arrivals.length = length
  }

  private before(a: number, b: number): boolean {
    const dues = this.dues
    return dues[a]! < dues[b]! || (dues[a] === dues[b] && this.arrivals[a]! < this.arrivals[b]!)
  }

  private move(from: number, to: number): void {
    this.banks[to] = this.banks[from]!
    this.dues[to] = this.dues[from]!
    this.arrivals[to] = this.arrivals[from]!
  }

  private swap(a: number, b: number): void {
    const { arrivals, banks, dues } = this
    ;[banks[a], banks[b]] = [banks[b]!, banks[a]!]
    ;[dues[a], dues[b]] = [dues[b]!, dues[a]!]
    ;[arrivals[a], arrivals[b]] = [arrivals[b]!, arrivals[a]!]
  }

  private up(at: number): void {
    while (at > 0) {
      const parent = (at - 1) >> 1
      if (!this.before(at, parent)) return
      this.swap(at, parent)
      at = parent
    }
  }

  private down(at: number): void {
    const size = this.banks.length
    for (;;) {
      const left = 2 * at + 1
      if (left >= size) return
      const right = left + 1
      const child = right < size && this.before(right, left) ? right : left
      if (!this.before(child, at)) return
      this.swap(at, child)
      at = child
    }
  }
}

export class BankQueue {
  /** Offered since the last take, not yet put in a lane (the core records why a bank was queued after the offer). */
  private arrivals: Array<number> = []
  private readonly urgent = new FifoLane()
  private readonly deadline = new DeadlineLane()
  private readonly ordinary = new FifoLane()
  /** Per lane: starts from other lanes in a row while it waited (`fairness` of them and it goes next). */
  private readonly passedOver = [0, 0, 0]
  /** The waiting workers, first come first served. */
  private readonly waiters: Array<Taker> = []
  private closed = false
  /** Banks waiting, in every lane and among the arrivals. */
  private queued = 0
  /** Set once the core exists (it is built after the queue it offers to). */
  priorities: Priorities = FIFO

  /**
   * @param capacity banks that may wait at once; `Infinity`: unbounded.
   * @param fairness a waiting lane goes next after this many starts from other lanes (at least 1).
   */
  constructor(readonly capacity: number, readonly fairness: number = DEFAULT_FAIRNESS) {
    if (!(fairness >= 1)) throw new RangeError(`fairness must be at least 1, got ${fairness}`)
  }

  get size(): number {
    return this.queued
  }

  /** Banks waiting in each lane: urgent, deadline, ordinary. */
  lanes(): { readonly urgent: number; readonly deadline: number; readonly ordinary: number } {
    this.classify()
    return { urgent: this.urgent.size, deadline: this.deadline.size, ordinary: this.ordinary.size }
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
    if (this.queued >= this.capacity) return false
    this.arrivals.push(bank)
    this.queued++
    return true
  }

  /**
   * A queued bank became urgent (compileNow asked for a pending one): it moves to the back of the urgent lane.
   * False when it is not waiting in a less urgent lane (already urgent, held for the budget, or not queued).
   */
  promote(bank: number): boolean {
    this.classify()
    if (!this.ordinary.remove(bank) && !this.deadline.remove(bank)) return false
    this.urgent.push(bank)
    return true
  }

  /** Where `bank` stands in the taking order if nothing else arrives: 1 for next; 0 when it is not queued. */
  placeOf(bank: number): number {
    this.classify()
    const lanes = [this.urgent.list(), this.deadline.list(), this.ordinary.list()]
    const passedOver = this.passedOver.slice()
    const heads = [0, 0, 0]
    for (let place = 1; place <= lanes[0]!.length + lanes[1]!.length + lanes[2]!.length; place++) {
      const lane = this.choose((n) => heads[n]! < lanes[n]!.length, passedOver)
      if (lanes[lane]![heads[lane]!++] === bank) return place
    }
    return 0
  }

  /** @internal `Taker.take`. */
  takeFor(taker: Taker): Effect.Effect<number> {
    if (this.queued > 0) return Effect.succeed(this.poll())
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

  /** Puts the banks offered since the last take in their lanes, in the order they came. */
  private classify(): void {
    const arrivals = this.arrivals
    if (arrivals.length === 0) return
    const { deadlineOf, laneOf } = this.priorities
    for (let n = 0; n < arrivals.length; n++) {
      const bank = arrivals[n]!
      const lane = laneOf(bank)
      if (lane === URGENT) this.urgent.push(bank)
      else if (lane === DEADLINE) this.deadline.push(bank, deadlineOf(bank))
      else this.ordinary.push(bank)
    }
    arrivals.length = 0
  }

  /**
   * The lane to take from: one passed over `fairness` times running (the least urgent such first), else the most
   * urgent with a bank. Counts the passing-over into `passedOver`. Some lane has a bank.
   */
  private choose(waiting: (lane: number) => boolean, passedOver: Array<number>): number {
    let chosen = -1
    for (let lane = LANES - 1; lane >= 0 && chosen === -1; lane--) {
      if (waiting(lane) && passedOver[lane]! >= this.fairness) chosen = lane
    }
    for (let lane = 0; chosen === -1; lane++) if (waiting(lane)) chosen = lane
    for (let lane = 0; lane < LANES; lane++) {
      passedOver[lane] = lane !== chosen && waiting(lane) ? passedOver[lane]! + 1 : 0
    }
    return chosen
  }

  private readonly hasBank = (lane: number): boolean =>
    (lane === URGENT ? this.urgent.size : lane === DEADLINE ? this.deadline.size : this.ordinary.size) > 0

  private poll(): number {
    this.queued--
    this.classify()
    if (this.urgent.size === 0 && this.deadline.size === 0) { // one lane waits: nothing is passed over
      this.passedOver[URGENT] = this.passedOver[DEADLINE] = this.passedOver[ORDINARY] = 0
      return this.ordinary.shift()
    }
    const lane = this.choose(this.hasBank, this.passedOver)
    return lane === URGENT ? this.urgent.shift() : lane === DEADLINE ? this.deadline.shift() : this.ordinary.shift()
  }

  /** Discards the queued banks (they stay pending in the core) and interrupts the waiting workers; offers fail from now. */
  readonly shutdown: Effect.Effect<void> = Effect.sync(() => {
    this.closed = true
    this.queued = 0
    this.arrivals = []
    this.urgent.clear()
    this.deadline.clear()
    this.ordinary.clear()
    for (const waiter of this.waiters.splice(0)) {
      const resume = waiter.waiting
      waiter.waiting = undefined
      resume?.(Effect.interrupt)
    }
  })
}
