/**
 * How many banks one queue holds: the most its bank table can hold at all, the default maximum (`maxBanks`), and
 * the error of a new bank refused because the queue holds its maximum.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { HARD_MAX_BANKS as TABLE_LIMIT } from "./internal/core/bankTable.js"

/**
 * The most banks one queue's table can hold: 2^24 = 16,777,216, the most entries a JavaScript `Map` holds (V8).
 * `maxBanks` may not exceed it.
 *
 * @since 0.1.0
 */
export const HARD_MAX_BANKS: number = TABLE_LIMIT

/**
 * `maxBanks` by default: 1,000,000 banks, about 130 MB of memory (some 85 bytes of table per bank, plus its id), and
 * a store that restores in seconds. Raise it where memory allows (each bank is kept in memory for good).
 *
 * @since 0.1.0
 */
export const DEFAULT_MAX_BANKS = 1_000_000

/**
 * A write or a policy named a bank the queue does not know while it holds `maxBanks` banks: nothing was added or
 * counted. Banks the queue knows are never refused.
 *
 * @since 0.1.0
 */
export class BankLimitError extends Schema.TaggedError<BankLimitError>()("BankLimitError", {
  bankId: Schema.String,
  maxBanks: Schema.Number,
  message: Schema.String
}) {}

/**
 * The error for `bankId`, refused by a queue holding `maxBanks` banks.
 *
 * @since 0.1.0
 */
export const bankLimitError = (bankId: string, maxBanks: number): BankLimitError =>
  new BankLimitError({
    bankId,
    maxBanks,
    message: `bank ${JSON.stringify(bankId)} was refused: the queue already holds its maximum of ${
      maxBanks.toLocaleString("en-US")
    } banks (maxBanks; COMPILE_MAX_BANKS for the service)`
  })
