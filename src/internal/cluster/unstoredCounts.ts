/**
 * What a partition counted here that no flush has stored yet, bank by bank, so that a runner that loses the partition
 * (another runner took its lease while it was frozen or cut off: its flushes are refused from then on) can send those
 * counts on to the new owner instead of losing acknowledged writes. Merged, never overwritten: the new owner adds them
 * to what it restored.
 *
 * Exactly what is sent on, per bank: the retains (and forgets) counted here since the last flush known to have stored
 * the bank — a flush that failed counts as stored when the store's record says it landed (its COMMIT reached Postgres
 * but the answer was lost: the new owner restored those counts, so sending them would count them twice) — capped at
 * what the bank still counts here — a retain that a successful compile of this runner consumed was compiled
 * (the engine accepted it), so it is not sent again; one that a failed, refused or cut-off compile consumed is still
 * counted here, so it is. A bank this runner never admitted (a new bank past the partition's maximum) counts nothing
 * and sends nothing.
 *
 * The partition's queue notes what it counts in a tally by bank number (two array writes a retain), read by bank id
 * when a flush takes the counts of the banks whose rows it writes.
 *
 * @internal
 */
import { Effect, Option } from "effect"
import type { CompileQueueService } from "../../CompileQueue.js"
import { type BankIds, RetainTally } from "../workloadLog/tally.js"

interface Counts {
  retains: number
  forgets: number
}

/**
 * The counts one flush took (those of the banks whose rows it writes), and its number: flushes are numbered from 1 in
 * the order they take their rows.
 */
export interface Flight {
  readonly number: number
  readonly counts: ReadonlyMap<string, Counts>
}

const addTo = (into: Map<string, Counts>, bankId: string, retains: number, forgets: number): void => {
  const counts = into.get(bankId)
  if (counts === undefined) into.set(bankId, { retains, forgets })
  else {
    counts.retains += retains
    counts.forgets += forgets
  }
}

/**
 * The counts per bank not yet stored. A flush takes those of the banks whose rows it writes, as it builds them. A flush
 * that failed before its COMMIT stored nothing: its counts are unstored again. One that failed at its COMMIT may still
 * have been stored — the COMMIT reached Postgres and the answer was lost — so its counts are kept apart, as in doubt,
 * under its number, until a later flush is stored or the store's record says which flush last landed (`landed`).
 *
 * Either settles every flush numbered before it: the write-behind takes a flush's rows only once every earlier flush
 * ended or outlived its timeout, and either way the banks of one that did not commit were listed as changed again —
 * the later flush's rows hold them, newer.
 */
export class UnstoredCounts {
  /** What the queue counted since the last take or read, by bank number (empty until the queue registers). */
  private tally: RetainTally | undefined
  private current = new Map<string, Counts>()
  private flights = 0
  /** Every flight numbered up to this one is stored. */
  private storedUpTo = 0
  private readonly underWay = new Set<Flight>()
  private inDoubt: Array<Flight> = []

  /** The queue's tally over its bank table (`InternalOptions.tally`): what it counts from now on is noted here. */
  readonly register = (table: BankIds): RetainTally => (this.tally = new RetainTally(table))

  /** The tally's counts, by bank id, into `current`. */
  private collect(): void {
    this.tally?.drain((bankId, retains, forgets) => addTo(this.current, bankId, retains, forgets))
  }

  /** A flush builds the rows of `bankIds` now: what was counted for them up to now is in those rows. */
  take(bankIds: Iterable<string>): Flight {
    this.collect()
    const counts = new Map<string, Counts>()
    for (const bankId of bankIds) {
      const taken = this.current.get(bankId)
      if (taken === undefined) continue
      counts.set(bankId, taken)
      this.current.delete(bankId)
    }
    const flight = { number: ++this.flights, counts }
    this.underWay.add(flight)
    return flight
  }

  /** The flush of `flight` stored it, and with it every earlier flight's counts (see the class). */
  stored(flight: Flight): void {
    this.landed(flight.number)
  }

  /**
   * The flush of `flight` failed: before its COMMIT, its counts are unstored again; at its COMMIT (`atCommit`), they
   * are in doubt until a later flush, or `landed`, settles them.
   */
  failed(flight: Flight, atCommit: boolean): void {
    // Settled already (a later flush stored, or the record named one): `landed` took it off the flushes under way.
    if (!this.underWay.delete(flight)) return
    if (atCommit) this.inDoubt.push(flight)
    else for (const [bankId, { forgets, retains }] of flight.counts) addTo(this.current, bankId, retains, forgets)
  }

  /**
   * Whether a flush may have been stored unbeknown to this runner (one failed at its COMMIT, or one still under way):
   * only the store's record of the flushes that landed can tell.
   */
  get doubtful(): boolean {
    return this.inDoubt.length > 0 || this.underWay.size > 0
  }

  /** The store says flight `number` was stored (0: none was): every flight numbered up to it is (see the class). */
  landed(number: number): void {
    if (number <= this.storedUpTo) return
    this.storedUpTo = number
    this.inDoubt = this.inDoubt.filter((flight) => flight.number > number)
    for (const flight of this.underWay) if (flight.number <= number) this.underWay.delete(flight)
  }

  /** Every count not known to be stored (the flushes under way and in doubt included), by bank. */
  all(): Map<string, Counts> {
    this.collect()
    const all = new Map<string, Counts>()
    for (const { counts } of [...this.underWay, ...this.inDoubt, { counts: this.current }]) {
      for (const [bankId, { forgets, retains }] of counts) addTo(all, bankId, retains, forgets)
    }
    return all
  }
}

/** What to send on: the unstored counts, each capped at what the bank still counts in `queue` (see the top). */
export const toSendOn = (
  queue: CompileQueueService,
  unstored: UnstoredCounts
): Effect.Effect<{ readonly retains: Map<string, number>; readonly forgets: Map<string, number> }> =>
  Effect.gen(function*() {
    const retains = new Map<string, number>()
    const forgets = new Map<string, number>()
    for (const [bankId, counts] of unstored.all()) {
      const state = yield* queue.bankState(bankId)
      if (Option.isNone(state)) continue
      const memories = Math.min(counts.retains, state.value.memoriesSinceLastCompile)
      const forgotten = Math.min(counts.forgets, state.value.forgetsSinceLastCompile)
      if (memories > 0) retains.set(bankId, memories)
      if (forgotten > 0) forgets.set(bankId, forgotten)
    }
    return { retains, forgets }
  })
