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

/** Memories and forgets of the writes that named one scope. */
interface ScopeCount {
  memories: number
  forgets: number
}

/** One bank's dirty scopes. */
export class DirtyScopes {
  readonly counts = new Map<string, ScopeCount>()
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

  /** Adds `memories` and `forgets` to `scope`; a new scope past `max` turns the set into "all". */
  add(scope: string, memories: number, forgets: number, max: number): void {
    if (this.all) return
    const count = this.counts.get(scope)
    if (count !== undefined) {
      count.memories += memories
      count.forgets += forgets
    } else if (this.counts.size >= max) {
      this.all = true
      this.counts.clear()
    } else {
      this.counts.set(scope, { memories, forgets })
    }
  }

  /** Everything `other` holds added in (its named counts too when `named`). */
  merge(other: DirtyScopes, max: number, named: boolean): void {
    if (other.all) {
      this.all = true
      this.counts.clear()
    }
    for (const [scope, count] of other.counts) this.add(scope, count.memories, count.forgets, max)
    if (!named) return
    this.namedMemories += other.namedMemories
    this.namedForgets += other.namedForgets
  }
}

/** Every bank's dirty scopes: those waiting for a compile, and those a running compile took. */
export class ScopeSets {
  readonly dirty = new Map<number, DirtyScopes>()
  readonly taken = new Map<number, DirtyScopes>()

  private setOf(i: number): DirtyScopes {
    let set = this.dirty.get(i)
    if (set === undefined) this.dirty.set(i, set = new DirtyScopes())
    return set
  }

  /**
   * A write of `memories` and `forgets` to bank `i` named `scopes` (checked by the caller). On every scoped write: two
   * lookups (the bank's set, the scope's count) and no allocation once the scope is known.
   */
  note(i: number, scopes: ReadonlyArray<string>, memories: number, forgets: number, max: number): void {
    let set = this.dirty.get(i)
    if (set === undefined) this.dirty.set(i, set = new DirtyScopes())
    set.namedMemories += memories
    set.namedForgets += forgets
    if (set.all) return
    const counts = set.counts
    for (let n = 0; n < scopes.length; n++) {
      const scope = scopes[n]!
      const count = counts.get(scope)
      if (count === undefined) set.add(scope, memories, forgets, max)
      else {
        count.memories += memories
        count.forgets += forgets
      }
    }
  }

  /** A compile of bank `i` starts and consumes `memories` and `forgets`: it takes the bank's set. */
  take(i: number, memories: number, forgets: number): void {
    if (this.dirty.size === 0) return
    const set = this.dirty.get(i)
    if (set === undefined) return
    this.dirty.delete(i)
    set.unnamed = memories > set.namedMemories || forgets > set.namedForgets
    this.taken.set(i, set)
  }

  /** What the running compile of bank `i` is told: undefined when no write it consumes named a scope. */
  jobScopes(i: number): JobScopes | undefined {
    if (this.taken.size === 0) return undefined
    const set = this.taken.get(i)
    if (set === undefined) return undefined
    return set.all || set.unnamed ? "all" : Array.from(set.counts.keys())
  }

  /**
   * The compile of bank `i` succeeded, having rebuilt `compiled` (empty: all it was told). "All" is consumed either
   * way (the names past the bound were not kept); a named scope left out goes back to the dirty set.
   */
  consumed(i: number, compiled: ReadonlyArray<string>, max: number): void {
    if (this.taken.size === 0) return
    const set = this.taken.get(i)
    if (set === undefined) return
    this.taken.delete(i)
    if (compiled.length === 0 || set.counts.size === 0) return
    const rebuilt = new Set(compiled)
    for (const [scope, count] of set.counts) {
      if (!rebuilt.has(scope)) this.setOf(i).add(scope, count.memories, count.forgets, max)
    }
  }

  /** The compile of bank `i` failed or was cut off: it consumed nothing, so its set goes back whole. */
  putBack(i: number, max: number): void {
    if (this.taken.size === 0) return
    const set = this.taken.get(i)
    if (set === undefined) return
    this.taken.delete(i)
    set.unnamed = false
    const now = this.dirty.get(i)
    if (now === undefined) this.dirty.set(i, set)
    else {
      set.merge(now, max, true)
      this.dirty.set(i, set) // the taken scopes were named first: they keep their place
    }
  }

  /** Bank `i`'s sets together (taken and waiting), or undefined when it has none. */
  private combined(i: number): DirtyScopes | undefined {
    const taken = this.taken.size === 0 ? undefined : this.taken.get(i)
    const dirty = this.dirty.get(i)
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
    const scopes: Array<DirtyScope> = []
    for (const [scope, count] of set.counts) scopes.push({ scope, memories: count.memories, forgets: count.forgets })
    return { all: set.all, scopes }
  }

  /** Bank `i`'s dirty scopes as stored (a running compile's too: a crash consumes nothing); null for none. */
  row(i: number): DirtyScopesRow | null {
    const set = this.combined(i)
    if (set === undefined) return null
    const scopes: Array<readonly [string, number, number]> = []
    for (const [scope, count] of set.counts) scopes.push([scope, count.memories, count.forgets])
    return { all: set.all, namedMemories: set.namedMemories, namedForgets: set.namedForgets, scopes }
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
