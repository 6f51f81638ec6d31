/**
 * Per-bank state in columns (struct of arrays) indexed by a dense bank number.
 *
 * Why columns: a retain must cost a map lookup and a few array writes — no object or Option per bank, no copy of an
 * immutable map per retain — and a million banks must fit in well under 100 bytes each. Only the service that owns
 * a table mutates it, always synchronously, so every read-decide-write is atomic on the JS thread.
 *
 * @internal
 */
import type { TriggerReason } from "../../BankCompileState.js"
import type { BankPolicy } from "../../BankPolicy.js"
import type { MemoryWait } from "../../CompileEngine.js"
import type { CompileTriggerConfig } from "../../CompileTriggerConfig.js"
import { ScopeSets } from "./dirtyScopes.js"

/**
 * One 16-bit word per bank holds its status and flags, so the retain path reads a single word to decide.
 * Bits 0-1: status. Bits 2-10: flags.
 */
export const STATUS = 0b11
export const IDLE = 0
export const PENDING = 1
export const RUNNING = 2
/** The bank's reference time is at least `stalenessDays` old (kept by the staleness timeline and the sweep). */
export const STALE = 1 << 2
/** `compileNow` asked for a compile that has not started yet. */
export const REQUESTED = 1 << 3
/** A "queue full" warning was logged for this bank; cleared when it is queued. */
export const DROP_WARNED = 1 << 4
/** Retries are spent: retains do not queue the bank again until the next sweep (or `compileNow`). */
export const PARKED = 1 << 5
/** The bank has had a counted retain (`firstRetainAt` is set). */
export const COUNTED = 1 << 6
/** Changed since the last flush to a store. */
export const DIRTY = 1 << 7
/**
 * The bank has a policy (in `policies`): its effective config is not the queue's, so the retain path leaves the
 * fast rule for the policy check. Banks without one never look anything up.
 */
export const POLICY = 1 << 8
/**
 * The bank's oldest memory no compile has taken reached its `maxWaitSeconds` (set by the deadline timeline, cleared
 * when a compile takes the memories): the retain path queues the bank for reason `deadline` like a stale one.
 */
export const OVERDUE = 1 << 9
/**
 * The bank has an entry on the deadline timeline due no later than its deadline (an earlier compile cycle's, or its
 * own): a new cycle's first memory pushes none, and the entry, when it comes due early, re-arms the bank's deadline.
 * Never stored.
 */
export const ON_TIMELINE = 1 << 10
/** A retain to a bank with none of these bits set only counts, below the size threshold (the retain path's fast rule). */
export const FAST_RULE_BITS = STATUS | PARKED | POLICY | STALE | OVERDUE

/** Why a bank is queued, kept while it is pending or running (see `CompileReason`). */
export const REASON_NAMES = ["size", "staleness", "forget", "manual", "restored", "deadline"] as const
export const SIZE = 0
export const STALENESS = 1
export const FORGET = 2
export const MANUAL = 3
export const RESTORED = 4
export const DEADLINE = 5

/** A trigger reason as an index into REASON_NAMES; -1 for none. */
export const reasonCode = (reason: TriggerReason | undefined): number =>
  reason === undefined ? -1 : REASON_NAMES.indexOf(reason)

const INITIAL_CAPACITY = 1024

/** The most banks a table holds: 2^24, the most entries V8 lets a `Map` (the id index) hold. */
export const HARD_MAX_BANKS = 16_777_216

/** `waitSum` of a bank whose sum is kept in `wideWaitSums`. */
const WIDE_WAIT_SUM = -0x8000_0000

/** The most `consecutiveFailures` a bank counts (it was a 32-bit column; the stored value stays in that range). */
export const MAX_FAILURES = 0xffff_ffff

export class BankTable {
  readonly index = new Map<string, number>()
  size = 0
  /** New banks past this many are refused (`add`); at most HARD_MAX_BANKS. */
  maxBanks = HARD_MAX_BANKS
  ids: Array<string> = []
  /** memoriesSinceLastCompile. Float64 keeps exact integers up to 2^53. */
  memories = new Float64Array(INITIAL_CAPACITY)
  /** Epoch millis; NaN = none. */
  lastCompileAt = new Float64Array(INITIAL_CAPACITY).fill(NaN)
  /** Epoch millis; NaN = none. */
  firstRetainAt = new Float64Array(INITIAL_CAPACITY).fill(NaN)
  /**
   * Epoch millis of the oldest memory no compile has taken yet; NaN = none. For idle and pending banks it is the
   * oldest uncompiled memory; for a running bank the oldest retain after the compile's snapshot (what the compile
   * took is in `taken`; `oldestUncompiledAt` covers both). Kept from the time of the retain's task, no clock read.
   */
  oldestAt = new Float64Array(INITIAL_CAPACITY).fill(NaN)
  /**
   * The memories counted in `oldestAt`'s span: the sum over them of (retain time − `oldestAt`), in millis. Offsets,
   * not epoch times: integers of a few hours' millis add up exactly far past any count a bank holds. Read and written
   * through `waitSumOf` / `addWaitSum` / `setWaitSum`: a sum that is a 32-bit integer (50 memories an hour apart sum
   * to 1.8·10^8) is kept here, 4 bytes a bank; WIDE_WAIT_SUM marks one kept exactly in `wideWaitSums` (larger, or a
   * fraction of a millisecond).
   */
  waitSum = new Int32Array(INITIAL_CAPACITY)
  /** Sparse: the wait sums no 32-bit integer holds (their `waitSum` is WIDE_WAIT_SUM). */
  private readonly wideWaitSums = new Map<number, number>()
  /** Status and flags, see above. */
  state = new Uint16Array(INITIAL_CAPACITY)
  /**
   * Sparse: forgetsSinceLastCompile, only while non-zero. Forgets are rare, so a column (8 bytes for every bank) would
   * cost more than this map for the few banks that have them; the retain path never reads it.
   */
  private readonly forgetCounts = new Map<number, number>()
  /** Sparse: consecutiveFailures, only while a bank is failing (a column would cost 4 bytes for every bank). */
  private readonly failureCounts = new Map<number, number>()
  /** Sparse: only banks whose last compile left an error message. */
  readonly lastError = new Map<number, string>()
  /** Sparse: engine runs spent on the current trigger, only while a bank is being retried. */
  readonly attempts = new Map<number, number>()
  /**
   * Sparse: the banks with the POLICY flag, with their policy and the effective config it yields. `policy` is
   * undefined for a bank whose policy was cleared but whose staleness is still computed exactly (until it compiles).
   */
  readonly policies = new Map<number, { readonly policy: BankPolicy | undefined; readonly config: CompileTriggerConfig }>()
  /** Sparse: why each pending or running bank was queued (an index into REASON_NAMES). */
  readonly reasons = new Map<number, number>()
  /**
   * Sparse: what the running compile of a bank took, split off `oldestAt` / `waitSum` at its snapshot (absent: it
   * took no memories). Merged back when the compile fails or is cut off; dropped when it succeeds.
   */
  readonly taken = new Map<number, TakenMemories>()
  /** Sparse: forgets the running compile of a bank took (absent: none). */
  readonly forgetsTaken = new Map<number, number>()
  /** Sparse: when the forget-delayed compile of an idle bank is due (epoch millis). */
  readonly forgetDue = new Map<number, number>()
  /** Sparse, beside the columns: the dirty scopes of banks whose writes named scopes (`dirtyScopes.ts`). */
  readonly scopes = new ScopeSets()
  /** Banks whose DIRTY bit is set, in the order they changed (kept only when the queue persists its state). */
  private dirty = new Int32Array(INITIAL_CAPACITY)
  private dirtyCount = 0

  /** How many banks are marked changed. */
  get dirtyBanks(): number {
    return this.dirtyCount
  }

  /** Marks a bank changed since the last flush; a bank is listed once however often it changes. */
  markDirty(i: number): void {
    const state = this.state[i]!
    if ((state & DIRTY) !== 0) return
    this.state[i] = state | DIRTY
    if (this.dirtyCount === this.dirty.length) this.dirty = copy(new Int32Array(this.dirty.length * 2), this.dirty)
    this.dirty[this.dirtyCount++] = i
  }

  /** The changed banks, oldest change first; clears their DIRTY bits (a later change lists them again). */
  takeDirty(): Int32Array {
    const taken = this.dirty.slice(0, this.dirtyCount)
    this.dirtyCount = 0
    for (let n = 0; n < taken.length; n++) this.state[taken[n]!]! &= ~DIRTY
    return taken
  }

  /**
   * Adds a bank with default state and returns its number; -1, changing nothing, when the table holds `limit` banks
   * (default `maxBanks`; a restore passes HARD_MAX_BANKS: stored banks are all loaded). The caller checked the id.
   */
  add(bankId: string, limit: number = this.maxBanks): number {
    const i = this.size
    if (i >= limit || i >= HARD_MAX_BANKS) return -1
    if (i === this.memories.length) this.grow()
    this.index.set(bankId, i)
    this.ids.push(bankId)
    this.size = i + 1
    return i
  }

  /**
   * The first bank of `bankIds` that `add` would refuse (a new one past `maxBanks`, counting the new ones before
   * it), or undefined when every one is known or fits.
   */
  firstRefused(bankIds: ReadonlyArray<string>): string | undefined {
    let room = this.maxBanks - this.size
    if (bankIds.length <= room) return undefined // they fit even if all are new: no lookup
    let seen: Set<string> | undefined
    for (const bankId of bankIds) {
      if (this.index.has(bankId) || seen?.has(bankId) === true) continue
      if (room <= 0) return bankId
      room--
      ;(seen ??= new Set()).add(bankId)
    }
    return undefined
  }

  /** The oldest memory of bank `i` no compile has consumed (a running compile's included); NaN = none. */
  oldestUncompiledAt(i: number): number {
    const taken = this.taken.get(i)
    return taken === undefined ? this.oldestAt[i]! : taken.oldestAt
  }

  /**
   * Splits bank `i`'s memories at a compile's snapshot: what it takes (returned, and kept in `taken`) and what
   * arrives from now on (the columns start empty). Undefined when it has no memory waiting.
   */
  takeMemories(i: number, memories: number): TakenMemories | undefined {
    const oldestAt = this.oldestAt[i]!
    if (oldestAt !== oldestAt) return undefined
    const taken: TakenMemories = { oldestAt, waitSum: this.waitSumOf(i), memories, memoryWait: undefined }
    this.taken.set(i, taken)
    this.oldestAt[i] = NaN
    this.setWaitSum(i, 0)
    return taken
  }

  /** The running compile of bank `i` consumed nothing (failed, cut off): its memories wait again, oldest first. */
  untakeMemories(i: number): void {
    const taken = this.taken.get(i)
    if (taken === undefined) return
    this.setWaitSum(i, this.uncompiledWaitSum(i))
    this.oldestAt[i] = taken.oldestAt
    this.taken.delete(i)
  }

  /** `waitSum` over every uncompiled memory of bank `i` (a running compile's included), from `oldestUncompiledAt`. */
  uncompiledWaitSum(i: number): number {
    const taken = this.taken.get(i)
    if (taken === undefined) return this.waitSumOf(i)
    const later = this.oldestAt[i]!
    if (later !== later) return taken.waitSum
    // The later memories' offsets move from their own oldest to the taken one's.
    return taken.waitSum + this.waitSumOf(i) + (this.memories[i]! - taken.memories) * (later - taken.oldestAt)
  }

  /** forgetsSinceLastCompile of bank `i`. */
  forgets(i: number): number {
    return this.forgetCounts.size === 0 ? 0 : this.forgetCounts.get(i) ?? 0
  }

  /** Sets bank `i`'s forgetsSinceLastCompile (0 drops its entry). */
  setForgets(i: number, forgets: number): void {
    if (forgets === 0) this.forgetCounts.delete(i)
    else this.forgetCounts.set(i, forgets)
  }

  /** The banks with forgets counted, in bank order. */
  banksWithForgets(): Array<number> {
    return Array.from(this.forgetCounts.keys()).sort((a, b) => a - b)
  }

  /** consecutiveFailures of bank `i`. */
  consecutiveFailures(i: number): number {
    return this.failureCounts.size === 0 ? 0 : this.failureCounts.get(i) ?? 0
  }

  /** Sets bank `i`'s consecutiveFailures, at most MAX_FAILURES (0 drops its entry). */
  setConsecutiveFailures(i: number, failures: number): void {
    if (failures === 0) this.failureCounts.delete(i)
    else this.failureCounts.set(i, Math.min(failures, MAX_FAILURES))
  }

  /** Bank `i`'s `waitSum`. */
  waitSumOf(i: number): number {
    const sum = this.waitSum[i]!
    return sum !== WIDE_WAIT_SUM ? sum : this.wideWaitSums.get(i)!
  }

  /** Adds `wait` to bank `i`'s `waitSum` (the retain path: a compare more than a Float64 column in the common case). */
  addWaitSum(i: number, wait: number): void {
    const old = this.waitSum[i]!
    const sum = old + wait
    if (old !== WIDE_WAIT_SUM && (sum | 0) === sum && sum !== WIDE_WAIT_SUM) this.waitSum[i] = sum
    else this.setWaitSum(i, this.waitSumOf(i) + wait)
  }

  /** Sets bank `i`'s `waitSum`, in the column when a 32-bit integer holds it, else in `wideWaitSums`. */
  setWaitSum(i: number, sum: number): void {
    if ((sum | 0) === sum && sum !== WIDE_WAIT_SUM) {
      this.waitSum[i] = sum
      if (this.wideWaitSums.size !== 0) this.wideWaitSums.delete(i)
    } else {
      this.waitSum[i] = WIDE_WAIT_SUM
      this.wideWaitSums.set(i, sum)
    }
  }

  /** The reference time for staleness: the last compile, else the first retain; NaN when neither exists. */
  referenceTime(i: number): number {
    const last = this.lastCompileAt[i]!
    return last === last ? last : this.firstRetainAt[i]!
  }

  private grow(): void {
    const capacity = this.memories.length * 2
    this.memories = copy(new Float64Array(capacity), this.memories)
    this.lastCompileAt = copy(new Float64Array(capacity).fill(NaN), this.lastCompileAt)
    this.firstRetainAt = copy(new Float64Array(capacity).fill(NaN), this.firstRetainAt)
    this.oldestAt = copy(new Float64Array(capacity).fill(NaN), this.oldestAt)
    this.waitSum = copy(new Int32Array(capacity), this.waitSum)
    this.state = copy(new Uint16Array(capacity), this.state)
  }
}

/** The memories a running compile took at its snapshot: their oldest retain time, offset sum and count. */
export interface TakenMemories {
  readonly oldestAt: number
  readonly waitSum: number
  readonly memories: number
  /** Their wait at the compile's start (for its job). */
  memoryWait: MemoryWait | undefined
}

const copy = <A extends Float64Array | Uint16Array | Uint32Array | Int32Array>(into: A, from: A): A => {
  into.set(from)
  return into
}
