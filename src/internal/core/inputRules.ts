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
