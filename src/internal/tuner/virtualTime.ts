/**
 * Virtual time for the tuner's replay: a `Clock` whose time is a plain number set by the replay driver, whose sleeps
 * are kept in a heap and fired by the driver in deadline order, and a `Scheduler` that runs fibers only when the
 * driver flushes it. Together they make a whole `CompileQueue` (workers, sweep, staleness watcher, forget delays) a
 * synchronous, deterministic machine the driver steps through a month of events.
 *
 * Why not `TestClock`: every `TestClock.adjust` is an Effect run through the runtime that sorts its sleeps and
 * yields, microseconds per step; a replay moves time at every compile start and end, sweep and staleness wake-up
 * (tens of thousands of steps per combination) and reads it at every retain. Here moving time is an assignment and
 * firing a timer is a heap pop.
 *
 * @internal
 */
import { Clock, Duration, Effect, type Scheduler } from "effect"

interface Timer {
  readonly due: number
  /** Creation order: timers due at the same millisecond fire in the order they were set. */
  readonly seq: number
  readonly fire: () => void
}

const before = (a: Timer, b: Timer): boolean => a.due < b.due || (a.due === b.due && a.seq < b.seq)

/** A binary min-heap of timers by (due, seq). */
class TimerHeap {
  private readonly items: Array<Timer> = []

  get size(): number {
    return this.items.length
  }

  peek(): Timer | undefined {
    return this.items[0]
  }

  push(timer: Timer): void {
    const items = this.items
    let n = items.push(timer) - 1
    while (n > 0) {
      const parent = (n - 1) >> 1
      if (!before(timer, items[parent]!)) break
      items[n] = items[parent]!
      n = parent
    }
    items[n] = timer
  }

  pop(): Timer | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    let n = 0
    for (;;) {
      const left = 2 * n + 1
      if (left >= items.length) break
      const right = left + 1
      const child = right < items.length && before(items[right]!, items[left]!) ? right : left
      if (!before(items[child]!, last)) break
      items[n] = items[child]!
      n = child
    }
    items[n] = last
    return top
  }
}

/** Runs fiber tasks only when flushed: nothing happens between two steps of the driver. */
export class VirtualScheduler implements Scheduler.Scheduler {
  private tasks: Array<Scheduler.Task> = []

  get idle(): boolean {
    return this.tasks.length === 0
  }

  scheduleTask(task: Scheduler.Task): void {
    this.tasks.push(task)
  }

  shouldYield(): number | false {
    return false // nothing else shares this scheduler; a fiber runs until it suspends
  }

  /** Runs every task, including those the tasks schedule, until none is left. */
  flush(): void {
    while (this.tasks.length > 0) {
      const tasks = this.tasks
      this.tasks = []
      for (let n = 0; n < tasks.length; n++) tasks[n]!()
    }
  }
}

/** A clock at a time the driver sets; sleeps end when the driver reaches their deadline. */
export class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  /** Epoch milliseconds. */
  now: number
  private readonly timers = new TimerHeap()
  private seq = 0
  private readonly scheduler: VirtualScheduler

  constructor(start: number, scheduler: VirtualScheduler) {
    this.now = start
    this.scheduler = scheduler
  }

  unsafeCurrentTimeMillis(): number {
    return this.now
  }

  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.now)) * 1_000_000n
  }

  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.now)
  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())

  /**
   * No canceller: `Effect.async` wraps one in `onInterrupt`, four more fiber operations on every sleep (the engine
   * model's and the staleness watcher's, one each per compile). An interrupted sleep's timer stays in the heap and
   * fires into nothing: the fiber runtime ignores a resume once the fiber was interrupted out of that wait.
   */
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    const millis = Duration.toMillis(duration)
    if (!Number.isFinite(millis)) return Effect.never
    return Effect.async<void>((resume) => this.after(millis, () => resume(Effect.void)))
  }

  /** Calls `fire` when the driver reaches `millis` from now (a timer without a fiber of its own). */
  after(millis: number, fire: () => void): void {
    this.timers.push({ due: this.now + Math.max(0, millis), seq: this.seq++, fire })
  }

  /** When the earliest timer is due; `Infinity` when none is set. */
  get nextDue(): number {
    const top = this.timers.peek()
    return top === undefined ? Infinity : top.due
  }

  /**
   * Moves time to `time`, firing every timer due by then in deadline order, each at its own deadline, and running
   * the fibers each one wakes before the next.
   */
  advanceTo(time: number): void {
    this.scheduler.flush()
    for (;;) {
      const top = this.timers.peek()
      if (top === undefined || top.due > time) break
      this.timers.pop()
      if (top.due > this.now) this.now = top.due
      top.fire()
      this.scheduler.flush()
    }
    if (time > this.now) this.now = time
  }
}
