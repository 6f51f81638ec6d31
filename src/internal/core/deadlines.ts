/**
 * The freshness deadlines of a core (`maxWaitSeconds`): each bank's max wait (its policy's or the queue's), its
 * deadline, the timeline of deadlines the runtime's one watcher sleeps on, and the wait a compile's memories report.
 * The retain path only stamps times into the table's columns (`bankTable.ts`); this keeps what follows from them.
 *
 * @internal
 */
import { isOverdueAt } from "../../BankCompileState.js"
import type { MemoryWait } from "../../CompileEngine.js"
import { type BankTable, IDLE, ON_TIMELINE, OVERDUE, PARKED, POLICY, STATUS } from "./bankTable.js"
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
    this.timeline = new DeadlineTimeline((i) => this.keeps(i))
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

  /**
   * Bank `i`'s memories started waiting (from `oldestAt`, the memories no compile took): its deadline goes on the
   * timeline, when it has one — unless an entry of the bank's is there already (ON_TIMELINE). That entry is due no
   * later than this deadline (an earlier cycle's oldest memory, or this one's), and re-arms it when it comes due
   * (`due`). So a bank that compiles every few minutes pushes one entry per max wait, not one per compile cycle:
   * pushes, compactions and the timeline's memory cost a busy bank that much less.
   */
  schedule(i: number): void {
    if ((this.table.state[i]! & ON_TIMELINE) === 0) this.push(i)
  }

  /** Puts bank `i`'s deadline on the timeline, when it has one. */
  private push(i: number): void {
    const table = this.table
    const maxWait = this.maxWaitMillisOf(i)
    const oldest = table.oldestAt[i]!
    if (maxWait === 0 || oldest !== oldest) return
    table.state[i]! |= ON_TIMELINE
    if (this.timeline.push(i, oldest + maxWait, maxWait)) this.onEarlier()
  }

  /**
   * Whether a timeline entry of bank `i` is worth keeping when the timeline compacts: while memories of the bank
   * wait, any of its entries is due no later than their deadline. One dropped clears ON_TIMELINE: the next memories
   * to wait push their own.
   */
  private keeps(i: number): boolean {
    const oldest = this.table.oldestAt[i]!
    if (oldest === oldest) return true
    this.table.state[i]! &= ~ON_TIMELINE
    return false
  }

  /**
   * Bank `i`'s max wait changed (a policy): its deadline is judged again at `now` — marked when it passed, else put
   * on the timeline even if the bank has an entry there (a shorter wait's deadline may come before it; an entry out
   * of its lane's order costs a heap push).
   */
  redo(i: number, now: number): void {
    const table = this.table
    table.state[i]! &= ~OVERDUE
    if (isOverdueAt(table.oldestAt[i]!, now, this.maxWaitMillisOf(i))) table.state[i]! |= OVERDUE
    else this.push(i)
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
   * Marks every bank whose deadline came by `now`. An entry that came due before its bank's deadline (an earlier
   * compile cycle's) puts that deadline on instead; one whose bank has no memory waiting is dropped. Returns the
   * idle, unparked banks marked: the runtime re-checks each (`recheck(i, now)`: queued for `deadline` unless another
   * rule holds first).
   */
  due(now: number): Array<number> {
    const table = this.table
    const idle: Array<number> = []
    this.timeline.popDue(now, (i) => {
      const state = table.state[i]! & ~ON_TIMELINE
      table.state[i] = state
      const maxWait = this.maxWaitMillisOf(i)
      const oldest = table.oldestAt[i]!
      if (maxWait === 0 || oldest !== oldest) return
      if (!isOverdueAt(oldest, now, maxWait)) return this.push(i)
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
