/**
 * Scopes: the names (tags, page keys) a retain or forget may give for what it touched, so that a compile can rebuild
 * only those. The rule for a scope name, the options a write takes, and how a bank's dirty scopes are shown.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { mustBe, quote } from "./internal/core/inputRules.js"

/**
 * Longest scope name, in UTF-16 code units.
 *
 * @since 0.1.0
 */
export const MAX_SCOPE_LENGTH = 128

/**
 * Most scopes one write (a retain, a forget, a batch item, a `compileNow`) may name.
 *
 * @since 0.1.0
 */
export const MAX_SCOPES_PER_WRITE = 32

/**
 * `maxScopesPerBank` by default: past this many distinct dirty scopes a bank is marked "all scopes".
 *
 * @since 0.1.0
 */
export const DEFAULT_MAX_SCOPES_PER_BANK = 64

/** Whether `scope` has a control character (C0, DEL, C1): a scope name is printed in logs, JSON and the dashboard. */
const hasControl = (scope: string): boolean => {
  // A loop, not a regex: it runs on every scoped write, and scope names are short.
  for (let k = 0; k < scope.length; k++) {
    const code = scope.charCodeAt(k)
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return true
  }
  return false
}

/**
 * Whether `scopes` is a valid list for one write (`invalidScopes` says why not). Allocates nothing: the scoped
 * write path checks with it and builds a message only for a list it refuses.
 *
 * @since 0.1.0
 */
export const areScopeNames = (scopes: unknown): scopes is ReadonlyArray<string> => {
  if (!Array.isArray(scopes) || scopes.length > MAX_SCOPES_PER_WRITE) return false
  for (let n = 0; n < scopes.length; n++) {
    const scope: unknown = scopes[n]
    if (typeof scope !== "string" || scope.length === 0 || scope.length > MAX_SCOPE_LENGTH || hasControl(scope)) {
      return false
    }
  }
  return true
}

/**
 * Why `scope` is not a scope name, or undefined when it is one: a string of 1 to 128 characters without control
 * characters.
 *
 * @since 0.1.0
 */
export const invalidScope = (scope: unknown): string | undefined =>
  typeof scope !== "string"
    ? `a scope must be a string, got ${quote(scope)}`
    : scope.length === 0 || scope.length > MAX_SCOPE_LENGTH
    ? `a scope must have 1 to ${MAX_SCOPE_LENGTH} characters, got ${quote(scope)}`
    : hasControl(scope)
    ? `a scope must not contain control characters, got ${quote(scope)}`
    : undefined

/**
 * Why `scopes` is not a list of scopes one write may name, or undefined when it is: an array of at most 32 scope
 * names. The message names every invalid one (up to five).
 *
 * @since 0.1.0
 */
export const invalidScopes = (scopes: unknown): string | undefined => {
  if (areScopeNames(scopes)) return undefined
  if (!Array.isArray(scopes)) return `scopes must be an array of scope names, got ${quote(scopes)}`
  if (scopes.length > MAX_SCOPES_PER_WRITE) {
    return `scopes must name at most ${MAX_SCOPES_PER_WRITE} scopes, got ${scopes.length}`
  }
  const bad: Array<string> = []
  for (const scope of scopes) if (invalidScope(scope) !== undefined) bad.push(quote(scope))
  if (bad.length === 0) return undefined
  const named = bad.length > 5 ? `${bad.slice(0, 5).join(", ")} and ${bad.length - 5} more` : bad.join(", ")
  return `invalid scopes ${named}: a scope is 1 to ${MAX_SCOPE_LENGTH} characters without control characters`
}

/**
 * The scopes one write names: an array of at most 32 scope names. The message of an invalid one names every bad
 * scope (`invalidScopes`).
 *
 * @since 0.1.0
 */
export const WriteScopes = Schema.Array(Schema.String).annotations({
  message: mustBe("scopes", "an array of scope names (strings)")
}).pipe(
  Schema.filter((scopes) => invalidScopes(scopes) ?? true),
  Schema.annotations({ identifier: "WriteScopes" })
)

/**
 * The options form of a retain or forget: `count` (default 1) and the scopes it touched.
 *
 * @since 0.1.0
 */
export interface WriteOptions {
  readonly count?: number | undefined
  readonly scopes?: ReadonlyArray<string> | undefined
}

/**
 * `compileNow`'s options: scopes to rebuild in the compile it asks for (they join the bank's dirty scopes).
 *
 * @since 0.1.0
 */
export interface CompileNowOptions {
  readonly scopes?: ReadonlyArray<string> | undefined
}

/**
 * What a compile job says about scopes: the names to rebuild, or `"all"` when the bank went past
 * `maxScopesPerBank` or some write since the last compile named no scope (it may have touched any).
 *
 * @since 0.1.0
 */
export const JobScopes = Schema.Union(Schema.Literal("all"), Schema.Array(Schema.String))

/** @since 0.1.0 */
export type JobScopes = typeof JobScopes.Type

/**
 * One dirty scope: memories and forgets of the writes that named it since a compile last consumed it.
 *
 * @since 0.1.0
 */
export const DirtyScope = Schema.Struct({
  scope: Schema.String,
  memories: Schema.NonNegativeInt,
  forgets: Schema.NonNegativeInt
}).annotations({ identifier: "DirtyScope" })

/** @since 0.1.0 */
export interface DirtyScope extends Schema.Schema.Type<typeof DirtyScope> {}

/**
 * A bank's dirty scopes: `all` true past `maxScopesPerBank` distinct scopes (the names are then no longer kept), else
 * the scopes in the order they were first named. Includes the scopes a running compile took (they are consumed when
 * it succeeds).
 *
 * @since 0.1.0
 */
export const DirtyScopesState = Schema.Struct({
  all: Schema.Boolean,
  scopes: Schema.Array(DirtyScope)
}).annotations({ identifier: "DirtyScopesState" })

/** @since 0.1.0 */
export interface DirtyScopesState extends Schema.Schema.Type<typeof DirtyScopesState> {}

/**
 * A bank's dirty scopes as a `BankStateStore` keeps them (`PersistedBank.scopes`; `null`: none). `namedMemories` and
 * `namedForgets` are what the writes that named scopes counted, so that a restart still tells whether some write
 * named none.
 *
 * @since 0.1.0
 */
export interface DirtyScopesRow {
  readonly all: boolean
  readonly namedMemories: number
  readonly namedForgets: number
  /** `[scope, memories, forgets]`, in the order first named (an array: a scope may be called `__proto__`). */
  readonly scopes: ReadonlyArray<readonly [string, number, number]>
}
