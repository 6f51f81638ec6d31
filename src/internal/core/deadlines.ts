/**
 * The freshness deadlines of a core (`maxWaitSeconds`): each bank's max wait (its policy's or the queue's), its
 * deadline, the timeline of deadlines the runtime's one watcher sleeps on, and the wait a compile's memories report.
 * The retain path only stamps times into the table's columns (`bankTable.ts`); this keeps what follows from them.
 *
 * @internal
 */
import { isOverdueAt } from "../../BankCompileState.js"
import type { MemoryWait } from "../../CompileEngine.js"
import { type BankTable, IDLE, OVERDUE, PARKED, POLICY, STATUS } from "./bankTable.js"
import { DeadlineTimeline } from "./deadlineTimeline.js"

export class Deadlines {
  /** Freshness deadlines in due order. */
  readonly timeline: DeadlineTimeline
  /**
   * Called when a new deadline is the earliest: the runtime's deadline watcher wakes to sleep less. Plain code, run
   * synchronously on the retain path (rarely: the timeline was empty, or a shorter max wait came in).
   */
  onEarlier: () => void = () => {}

  /** @param maxWaitMillis the queue's `maxWaitSeconds` in millis (0: off); a policy bank's own is in its config. */
  constructor(private readonly table: BankTable, readonly maxWaitMillis: number) {
    this.timeline = new DeadlineTimeline((i, due) => table.oldestAt[i]! + this.maxWaitMillisOf(i) === due)
  }

  /** Bank `i`'s `maxWaitSeconds` in millis, its policy's or the queue's; 0: the rule is off for it. */
  maxWaitMillisOf(i: number): number {
    const table = this.table
    return (table.state[i]! & POLICY) === 0 ? this.maxWaitMillis : table.policies.get(i)!.config.maxWaitMillis
  }

  /** When bank `i`'s oldest uncompiled memory reaches its max wait (epoch millis); NaN: no memory waits, or no rule. */
  deadlineAt(i: number): number {
    const maxWait = this.maxWaitMillisOf(i)
    return maxWait === 0 ? NaN : this.table.oldestUncompiledAt(i) + maxWait
  }

  /** Puts bank `i`'s deadline (from `oldestAt`, the memories no compile took) on the timeline, when it has one. */
  schedule(i: number): void {
    const maxWait = this.maxWaitMillisOf(i)
    const oldest = this.table.oldestAt[i]!
    if (maxWait === 0 || oldest !== oldest) return
    if (this.timeline.push(i, oldest + maxWait, maxWait)) this.onEarlier()
  }

  /**
   * Bank `i`'s max wait changed (a policy): its deadline is judged again at `now` — marked when it passed, else put
   * on the timeline (an entry out of its lane's order costs a heap push).
   */
  redo(i: number, now: number): void {
    const table = this.table
    table.state[i]! &= ~OVERDUE
    if (isOverdueAt(table.oldestAt[i]!, now, this.maxWaitMillisOf(i))) table.state[i]! |= OVERDUE
    else this.schedule(i)
  }

  /** The running compile of bank `i` consumed nothing: its memories wait again, their earlier deadline back on. */
  waitAgain(i: number): void {
    if (!this.table.taken.has(i)) return
    this.table.untakeMemories(i)
    this.schedule(i)
  }

  /** When the timeline's next entry is due (epoch millis); NaN when it is empty. */
  get nextDue(): number {
    return this.timeline.nextDue
  }

  /**
   * Marks every bank whose deadline came by `now` (outdated entries are skipped). Returns the idle, unparked ones:
   * the runtime re-checks each (`recheck(i, now)`: queued for `deadline` unless another rule holds first).
   */
  due(now: number): Array<number> {
    const table = this.table
    const idle: Array<number> = []
    this.timeline.popDue(now, (i, due) => {
      if (table.oldestAt[i]! + this.maxWaitMillisOf(i) !== due) return
      const state = table.state[i]!
      table.state[i] = state | OVERDUE
      if ((state & (STATUS | PARKED)) === IDLE) idle.push(i)
    })
    return idle
  }
}

/** The wait of `memories` whose oldest arrived at `oldestAt` with offsets summing to `waitSum`, at `now` (≥ 0). */
export const memoryWaitAt = (oldestAt: number, waitSum: number, memories: number, now: number): MemoryWait => {
  const oldest = Math.max(0, now - oldestAt)
  return { meanSeconds: Math.max(0, oldest - waitSum / memories) / 1000, oldestSeconds: oldest / 1000 }
}

/** A job's `memoryWait` field, left out when it took no memories (`exactOptionalPropertyTypes`). */
export const withMemoryWait = (memoryWait: MemoryWait | undefined): { memoryWait?: MemoryWait } =>
  memoryWait === undefined ? {} : { memoryWait }
