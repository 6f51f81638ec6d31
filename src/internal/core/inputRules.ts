/**
 * The checks of a caller's input every entry point shares (the library's, the cluster router's): a bank id and a
 * count. The HTTP API is stricter (its `BankId` and `RetainCount` Schemas); these are what the queue itself accepts.
 *
 * @internal
 */

/** Why a bank id is unusable, or undefined when it is fine: any non-empty string. */
export const invalidBankId = (bankId: unknown): string | undefined =>
  typeof bankId !== "string" ?
    `bank id must be a string, got ${typeof bankId}` :
    bankId.length === 0 ?
    "bank id must not be empty" :
    undefined

/** A count of memories is a positive safe integer (1 is checked first: it is the common case). */
export const isCount = (count: number): boolean => count === 1 || (Number.isSafeInteger(count) && count > 0)

/** The message for a count that is not one. */
export const badCountMessage = (count: unknown): string => `count must be a positive integer, got ${String(count)}`

/** Longest quote of a caller's value in an error message: a 1 MiB body or a 16 KiB path is never echoed back whole. */
const QUOTE_CHARS = 60

/**
 * A caller's value as an error message quotes it: as JSON (numbers as written, no value as `nothing`), cut after 60
 * characters.
 */
export const quote = (value: unknown): string => {
  if (value === undefined) return "nothing"
  if (typeof value === "number" || typeof value === "bigint") return String(value)
  if (typeof value === "string") {
    return value.length > QUOTE_CHARS
      ? `${JSON.stringify(value.slice(0, QUOTE_CHARS))}… (${value.length.toLocaleString("en-US")} characters)`
      : JSON.stringify(value)
  }
  let text: string
  try {
    text = JSON.stringify(value) ?? String(value)
  } catch {
    text = String(value)
  }
  return text.length > QUOTE_CHARS ? `${text.slice(0, QUOTE_CHARS)}…` : text
}

/**
 * A Schema `message` annotation saying "<field> must be <rule>, got <value>": one sentence for the whole check, over
 * the messages of the checks inside it (not a number, not an integer, out of range, and so on).
 */
export const mustBe = (field: string, rule: string) => (issue: { readonly actual: unknown }) => ({
  message: `${field} must be ${rule}, got ${quote(issue.actual)}`,
  override: true
})
