/**
 * Read views of the bank table: a bank's snapshot (`BankCompileState`), pages of banks in first-seen order, the ids
 * of a set of banks. Built on demand from the columns, never on the retain path.
 *
 * @internal
 */
import { DateTime, Option } from "effect"
import { BankCompileState, type BankStatus } from "../../BankCompileState.js"
import { STATUS_NAMES } from "./answers.js"
import { type BankTable, STATUS } from "./bankTable.js"

/** Which banks a page lists: from `cursor` (a position), at most `limit` (1 to 1,000; default 100), one status or all. */
export interface PageOptions {
  readonly status?: BankStatus | undefined
  readonly limit?: number | undefined
  readonly cursor?: string | undefined
}

export interface Page {
  readonly banks: ReadonlyArray<BankCompileState>
  /** Where the next page starts; none on the last page. */
  readonly nextCursor: Option.Option<string>
}

const optionalTime = (millis: number): Option.Option<DateTime.Utc> =>
  millis === millis ? Option.some(DateTime.unsafeMake(millis)) : Option.none()

/** `deadlineAt`: the bank's freshness deadline (epoch millis, NaN: none; `BankLifecycle.deadlineAt`). */
export const snapshot = (table: BankTable, i: number, deadlineAt = NaN): BankCompileState => {
  const dirtyScopes = table.scopes.state(i)
  return new BankCompileState({
    bankId: table.ids[i]!,
    memoriesSinceLastCompile: table.memories[i]!,
    forgetsSinceLastCompile: table.forgets(i),
    lastCompileAt: optionalTime(table.lastCompileAt[i]!),
    firstRetainAt: optionalTime(table.firstRetainAt[i]!),
    status: STATUS_NAMES[table.state[i]! & STATUS]!,
    consecutiveFailures: table.consecutiveFailures(i),
    lastError: Option.fromNullable(table.lastError.get(i)),
    policy: Option.fromNullable(table.policies.get(i)?.policy),
    oldestMemoryAt: optionalTime(table.oldestUncompiledAt(i)),
    deadlineAt: optionalTime(deadlineAt),
    ...(dirtyScopes === undefined ? undefined : { dirtyScopes })
  }, true) // built from checked state: skip validation
}

export const statusOf = (table: BankTable, i: number): BankStatus => STATUS_NAMES[table.state[i]! & STATUS]!

/** Banks in first-seen order from `cursor`, optionally only those with one status. */
export const page = (table: BankTable, options?: PageOptions, deadlineOf?: (i: number) => number): Page => {
  const limit = Math.min(1000, Math.max(1, Math.trunc(options?.limit ?? 100)))
  const wanted = options?.status === undefined ? -1 : STATUS_NAMES.indexOf(options.status)
  const from = Number(options?.cursor ?? 0)
  const banks: Array<BankCompileState> = []
  let i = Number.isSafeInteger(from) && from > 0 ? from : 0
  for (; i < table.size && banks.length < limit; i++) {
    if (wanted === -1 || (table.state[i]! & STATUS) === wanted) banks.push(snapshot(table, i, deadlineOf?.(i)))
  }
  return { banks, nextCursor: i < table.size ? Option.some(String(i)) : Option.none() }
}

/** The ids of a set of banks (`pending`, `running`). */
export const idsOf = (table: BankTable, banks: ReadonlySet<number>): ReadonlySet<string> =>
  new Set(Array.from(banks, (i) => table.ids[i]!))
