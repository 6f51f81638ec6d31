/**
 * The dirty scopes of the banks whose writes name scopes, kept beside the bank table (a sparse map by bank number):
 * a bank whose writes never name one holds nothing here and its retains never look here.
 *
 * The consume rule is the counters': a compile's start takes the bank's set (writes during the compile start a fresh
 * one), its success consumes what it took — except the scopes a non-empty `scopesCompiled` leaves out, which go back —
 * and a failure or a cut-off puts everything back. Past `maxScopesPerBank` distinct scopes a set forgets its names and
 * says "all".
 *
 * @internal
 */
import type { DirtyScope, DirtyScopesRow, DirtyScopesState, JobScopes } from "../../DirtyScopes.js"

/** Memories and forgets of the writes that named one scope; dirty while `gen` is its set's generation. */
interface ScopeCount {
  memories: number
  forgets: number
  gen: number
}

/**
 * One bank's dirty scopes. A compile that consumes them all leaves the set with its bank, clean (`recycle`: its
 * generation moves on), so the next cycle's writes name those scopes again without allocating or being checked again;
 * its names are kept up to twice the bound.
 */
export class DirtyScopes {
  /** Every scope named since the set was made or last trimmed; those of the current generation are the dirty ones. */
  private counts = new Map<string, ScopeCount>()
  private gen = 0
  /** How many scopes are dirty. */
  private live = 0
  /** Past the bound: the names are dropped, every scope is dirty. */
  all = false
  /**
   * Memories and forgets of the writes that named scopes (once per write): a compile that takes more than these
   * consumed writes that named no scope, which may have touched any, so it is told "all".
   */
  namedMemories = 0
  namedForgets = 0
  /** Set when a compile took this set and consumed writes that named no scope. */
  unnamed = false

  /** Nothing is dirty (a set a compile consumed, before the next write names a scope). */
  get isClean(): boolean {
    return this.live === 0 && !this.all
  }

  /** Adds `memories` and `forgets` to `scope`; a new scope past `max` turns the set into "all". */
  add(scope: string, memories: number, forgets: number, max: number): void {
    if (this.all) return
    const count = this.counts.get(scope)
    if (count !== undefined && count.gen === this.gen) {
      count.memories += memories
      count.forgets += forgets
    } else if (this.live >= max) {
      this.all = true
      this.live = 0
      this.counts = new Map()
    } else {
      this.live++
      if (count === undefined) this.counts.set(scope, { memories, forgets, gen: this.gen })
      else {
        count.gen = this.gen
        count.memories = memories
        count.forgets = forgets
      }
    }
  }

  /**
   * A write naming only scopes this set knows (dirty, or clean but named in an earlier cycle, within the bound): added
   * (true); else nothing changes (false). Allocates nothing.
   */
  addKnown(scopes: ReadonlyArray<string>, memories: number, forgets: number, max: number): boolean {
    if (this.all) return false
    const counts = this.counts
    if (scopes.length === 1) { // the common write, in one lookup
      const count = counts.get(scopes[0]!)
      if (count === undefined) return false
      if (count.gen === this.gen) {
        count.memories += memories
        count.forgets += forgets
      } else if (this.live >= max) return false
      else {
        this.live++
        count.gen = this.gen
        count.memories = memories
        count.forgets = forgets
      }
      this.namedMemories += memories
      this.namedForgets += forgets
      return true
    }
    let revived = 0
    for (let n = 0; n < scopes.length; n++) {
      const count = counts.get(scopes[n]!)
      if (count === undefined) return false
      if (count.gen !== this.gen) revived++
    }
    if (this.live + revived > max) return false
    for (let n = 0; n < scopes.length; n++) this.add(scopes[n]!, memories, forgets, max)
    this.namedMemories += memories
    this.namedForgets += forgets
    return true
  }

  /** The dirty scopes with their counts. */
  entries(): Array<readonly [string, number, number]> {
    const entries: Array<readonly [string, number, number]> = []
    for (const [scope, count] of this.counts) {
      if (count.gen === this.gen) entries.push([scope, count.memories, count.forgets])
    }
    return entries
  }

  /** The dirty scopes' names. */
  names(): Array<string> {
    const names: Array<string> = []
    for (const [scope, count] of this.counts) if (count.gen === this.gen) names.push(scope)
    return names
  }

  /** Everything `other` holds added in (its named counts too when `named`). */
  merge(other: DirtyScopes, max: number, named: boolean): void {
    if (other.all) {
      this.all = true
      this.live = 0
      this.counts = new Map()
    }
    for (const [scope, memories, forgets] of other.entries()) this.add(scope, memories, forgets, max)
    if (!named) return
    this.namedMemories += other.namedMemories
    this.namedForgets += other.namedForgets
  }

  /** Consumed: nothing is dirty any more; the names stay for the next cycle unless past `max` (trimmed). */
  recycle(max: number): void {
    this.gen++
    this.live = 0
    this.all = false
    this.namedMemories = 0
    this.namedForgets = 0
    this.unnamed = false
    if (this.counts.size > max) this.counts = new Map()
  }
}

/**
 * Per bank that named scopes, its waiting set, by bank number: an array (an element load where banks with scopes are
 * dense; V8 keeps a sparse one as a dictionary, no bigger than a map). Banks that never name a scope add nothing.
 */
class WaitingSets {
  private readonly sets: Array<DirtyScopes | undefined> = []
  size = 0

  get(i: number): DirtyScopes | undefined {
    return this.sets[i]
  }

  set(i: number, set: DirtyScopes): void {
    if (this.sets[i] === undefined) this.size++
    this.sets[i] = set
  }

  delete(i: number): void {
    if (this.sets[i] === undefined) return
    this.size--
    this.sets[i] = undefined
  }
}

/** Every bank's dirty scopes: those waiting for a compile, and those a running compile took. */
export class ScopeSets {
  /** Per bank that named scopes: its set, which may be clean (`DirtyScopes.isClean`). */
  readonly dirty = new WaitingSets()
  readonly taken = new Map<number, DirtyScopes>()

  private setOf(i: number): DirtyScopes {
    let set = this.dirty.get(i)
    if (set === undefined) this.dirty.set(i, set = new DirtyScopes())
    return set
  }

  /** A write of `memories` and `forgets` to bank `i` named `scopes` (checked by the caller). */
  note(i: number, scopes: ReadonlyArray<string>, memories: number, forgets: number, max: number): void {
    const set = this.setOf(i)
    set.namedMemories += memories
    set.namedForgets += forgets
    for (let n = 0; n < scopes.length; n++) set.add(scopes[n]!, memories, forgets, max)
  }

  /**
   * A write to bank `i` that names only scopes its set already knows (each checked when first named, so valid):
   * noted, and true. False, with nothing noted, when the bank has no set, its set says "all", a scope is new to it, or
   * the bound would be passed — the caller then checks the write whole and `note`s it. The common scoped write: a
   * bank's pages are named again and again. An element load and a lookup, no allocation.
   */
  noteKnown(i: number, scopes: ReadonlyArray<string>, memories: number, forgets: number, max: number): boolean {
    const set = this.dirty.get(i)
    return set !== undefined && set.addKnown(scopes, memories, forgets, max)
  }

  /** A compile of bank `i` starts and consumes `memories` and `forgets`: it takes the bank's set (if dirty). */
  take(i: number, memories: number, forgets: number): void {
    if (this.dirty.size === 0) return
    const set = this.dirty.get(i)
    if (set === undefined || set.isClean) return
    this.dirty.delete(i)
    set.unnamed = memories > set.namedMemories || forgets > set.namedForgets
    this.taken.set(i, set)
  }

  /** What the running compile of bank `i` is told: undefined when no write it consumes named a scope. */
  jobScopes(i: number): JobScopes | undefined {
    if (this.taken.size === 0) return undefined
    const set = this.taken.get(i)
    if (set === undefined) return undefined
    return set.all || set.unnamed ? "all" : set.names()
  }

  /**
   * The compile of bank `i` succeeded, having rebuilt `compiled` (empty: all it was told). "All" is consumed either
   * way (the names past the bound were not kept); a named scope left out goes back to the dirty set. The set it took
   * goes back to the bank clean, when no write made it a new one meanwhile.
   */
  consumed(i: number, compiled: ReadonlyArray<string>, max: number): void {
    if (this.taken.size === 0) return
    const set = this.taken.get(i)
    if (set === undefined) return
    this.taken.delete(i)
    const leftOut = compiled.length === 0 || set.isClean ? undefined : notIn(set.entries(), compiled)
    let now = this.dirty.get(i)
    if (now === undefined) {
      set.recycle(max)
      this.dirty.set(i, now = set)
    }
    for (const [scope, memories, forgets] of leftOut ?? []) now.add(scope, memories, forgets, max)
  }

  /** The compile of bank `i` failed or was cut off: it consumed nothing, so its set goes back whole. */
  putBack(i: number, max: number): void {
    if (this.taken.size === 0) return
    const set = this.taken.get(i)
    if (set === undefined) return
    this.taken.delete(i)
    set.unnamed = false
    const now = this.dirty.get(i)
    if (now !== undefined) set.merge(now, max, true) // the taken scopes were named first: they keep their place
    this.dirty.set(i, set)
  }

  /** Bank `i`'s dirty sets together (taken and waiting), or undefined when nothing is dirty. */
  private combined(i: number): DirtyScopes | undefined {
    const taken = this.taken.size === 0 ? undefined : this.taken.get(i)
    const waiting = this.dirty.get(i)
    const dirty = waiting === undefined || waiting.isClean ? undefined : waiting
    if (taken === undefined || dirty === undefined) return taken ?? dirty
    const both = new DirtyScopes()
    both.merge(taken, Infinity, true)
    both.merge(dirty, Infinity, true)
    return both
  }

  /** Bank `i`'s dirty scopes for a read view; undefined when it has none. */
  state(i: number): DirtyScopesState | undefined {
    const set = this.combined(i)
    if (set === undefined) return undefined
    const scopes: Array<DirtyScope> = set.entries().map(([scope, memories, forgets]) => ({ scope, memories, forgets }))
    return { all: set.all, scopes }
  }

  /** Bank `i`'s dirty scopes as stored (a running compile's too: a crash consumes nothing); null for none. */
  row(i: number): DirtyScopesRow | null {
    const set = this.combined(i)
    if (set === undefined) return null
    return { all: set.all, namedMemories: set.namedMemories, namedForgets: set.namedForgets, scopes: set.entries() }
  }

  /** Loads a stored row as bank `i`'s dirty scopes (replacing any). */
  restore(i: number, row: DirtyScopesRow, max: number): void {
    const set = new DirtyScopes()
    set.all = row.all
    set.namedMemories = row.namedMemories
    set.namedForgets = row.namedForgets
    for (const [scope, memories, forgets] of row.scopes) set.add(scope, memories, forgets, max)
    this.taken.delete(i)
    this.dirty.set(i, set)
  }
}

/** The entries whose scope `compiled` does not name. */
const notIn = (
  entries: ReadonlyArray<readonly [string, number, number]>,
  compiled: ReadonlyArray<string>
): ReadonlyArray<readonly [string, number, number]> => {
  const rebuilt = new Set(compiled)
  return entries.filter(([scope]) => !rebuilt.has(scope))
}

/** A row as the stores' `scopes` column keeps it: JSON text, or null for none. */
export const scopesColumn = (row: DirtyScopesRow | null | undefined): string | null =>
  row === null || row === undefined ? null : JSON.stringify(row)

const isCount = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0

const isEntry = (entry: unknown): entry is readonly [string, number, number] =>
  Array.isArray(entry) && entry.length === 3 && typeof entry[0] === "string" && isCount(entry[1]) && isCount(entry[2])

/** The `scopes` column read back: null for none, and for text that is not such a row (edited by hand?). */
export const scopesFromColumn = (value: unknown): DirtyScopesRow | null => {
  if (typeof value !== "string") return null
  let row: unknown
  try {
    row = JSON.parse(value)
  } catch {
    return null
  }
  if (typeof row !== "object" || row === null) return null
  const { all, namedForgets, namedMemories, scopes } = row as Record<string, unknown>
  return typeof all === "boolean" && isCount(namedMemories) && isCount(namedForgets) && Array.isArray(scopes) &&
      scopes.every(isEntry)
    ? { all, namedMemories, namedForgets, scopes }
    : null
}
