/**
 * Hand-written fast paths for the busiest routes. Each one is exactly equivalent to the Schema it stands for (tests
 * check that on valid and invalid inputs); the Schema stays the source of truth for the OpenAPI document, the typed
 * client and every error message.
 *
 * @internal
 */
import { DateTime, Option } from "effect"
import type { BankCompileState } from "../../BankCompileState.js"
import type { BankPolicy } from "../../BankPolicy.js"
import { invalidScopes } from "../../DirtyScopes.js"

/** The API's bank id rule, once: 1 to 200 characters of `A–Z a–z 0–9 . _ : -` (the `BankId` Schema uses it too). */
export const BANK_ID_PATTERN = "^[A-Za-z0-9._:-]{1,200}$"

const BANK_ID = new RegExp(BANK_ID_PATTERN)

/** Whether `value` is a plain JSON object whose keys are all in `allowed`. */
const isStrictObject = (value: unknown, allowed: ReadonlySet<string>): value is Record<string, unknown> => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false
  for (const key in value) if (!allowed.has(key)) return false
  return true
}

const isCount = (value: unknown, max: number): boolean =>
  value === undefined || (typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= max)

const ITEM_KEYS: ReadonlySet<string> = new Set(["bankId", "count", "scopes"])
const RETAIN_KEYS: ReadonlySet<string> = new Set(["count", "scopes"])

/** Absent, or a valid list of scopes (`WriteScopes`). */
const isScopes = (value: unknown): boolean => value === undefined || invalidScopes(value) === undefined

/**
 * True when `body` is a valid retain body (the `RetainPayload` schema): `undefined` (an empty body) or an object with
 * an optional integer `count` from 1 to `maxCount`, optional valid `scopes`, and no other key. A JSON `null` is not one.
 */
export const isValidRetain = (
  body: unknown,
  maxCount: number
): body is { readonly count?: number; readonly scopes?: ReadonlyArray<string> } | undefined =>
  body === undefined ||
  (isStrictObject(body, RETAIN_KEYS) && isCount(body.count, maxCount) && isScopes(body.scopes))

/**
 * True when `body` is a valid batch of retains (the `BatchRetainRequest` schema): an array of 1 to `maxItems` objects
 * with a valid `bankId`, an optional integer `count` from 1 to `maxCount`, optional valid `scopes`, and no other key. About 50× faster than
 * the Schema decode on 1,000 items; anything it rejects goes through the Schema for the precise error.
 */
export const isValidBatch = (body: unknown, maxItems: number, maxCount: number): boolean => {
  if (!Array.isArray(body) || body.length < 1 || body.length > maxItems) return false
  for (let i = 0; i < body.length; i++) {
    const item: unknown = body[i]
    if (!isStrictObject(item, ITEM_KEYS)) return false
    const bankId = item.bankId
    if (typeof bankId !== "string" || !BANK_ID.test(bankId) || !isCount(item.count, maxCount)) return false
    if (!isScopes(item.scopes)) return false
  }
  return true
}

const time = (value: Option.Option<DateTime.Utc>): string | null =>
  Option.isSome(value) ? DateTime.formatIso(value.value) : null

/** `Schema.encodeSync(BankPolicy)(policy)`: the fields it sets. */
export const encodePolicy = (policy: BankPolicy): Record<string, number | boolean> => {
  const json: Record<string, number | boolean> = {}
  for (const key in policy) {
    const value = policy[key as keyof BankPolicy]
    if (value !== undefined) json[key] = value
  }
  return json
}

/** `Schema.encodeSync(BankCompileState)(state)`, without the Schema walk (the retain route returns it every time). */
export const encodeBankState = (state: BankCompileState) => ({
  bankId: state.bankId,
  memoriesSinceLastCompile: state.memoriesSinceLastCompile,
  forgetsSinceLastCompile: state.forgetsSinceLastCompile,
  lastCompileAt: time(state.lastCompileAt),
  firstRetainAt: time(state.firstRetainAt),
  status: state.status,
  consecutiveFailures: state.consecutiveFailures,
  lastError: Option.getOrNull(state.lastError),
  policy: Option.isSome(state.policy) ? encodePolicy(state.policy.value) : null,
  oldestMemoryAt: time(state.oldestMemoryAt),
  deadlineAt: time(state.deadlineAt),
  ...(state.dirtyScopes === undefined ? undefined : { dirtyScopes: state.dirtyScopes })
})
