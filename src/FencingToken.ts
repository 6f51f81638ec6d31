/**
 * Fencing tokens: the number every compile carries so that an engine can refuse a stale one. Each engine run of a
 * bank gets a token higher than every earlier run's for that bank — across retries, restarts and (in cluster mode)
 * nodes — so a compile that an older owner started, and that is still writing after a newer one began, can be told
 * apart and refused (the sequencers of Chubby, the leader epochs of Kafka).
 *
 * A token is `{ epoch, sequence }`, ordered by `epoch`, then `sequence`: `epoch` is the generation of whoever runs the
 * compile (a store's owner generation, or a cluster partition's lease), `sequence` counts the compiles that owner ran.
 * Over HTTP it travels as `"<epoch>.<sequence>"` (`format` / `parse`).
 *
 * The receiving side: make your page writes conditional on the token, and refuse a token lower than the highest you
 * have seen for the bank. Kept with the pages, in the same write, that check survives your own restarts:
 *
 * ```sql
 * UPDATE pages SET body = $4, epoch = $2, sequence = $3
 *   WHERE bank_id = $1 AND (epoch, sequence) <= ($2, $3)
 * ```
 *
 * (no row updated: a newer compile wrote first; stop). `makeGuard` keeps the highest token per bank in memory, for an
 * engine that wants to refuse early.
 *
 * @since 0.1.0
 */
import { Effect, Either, type Order as EffectOrder, ParseResult, Schema } from "effect"

/**
 * `epoch`: the owner generation the compile was started under; `sequence`: 1 for that owner's first compile, growing
 * by one for each engine run after it (retries included).
 *
 * @since 0.1.0
 */
export const FencingToken = Schema.Struct({
  epoch: Schema.NonNegativeInt,
  sequence: Schema.Int.pipe(Schema.greaterThanOrEqualTo(1))
}).annotations({ identifier: "FencingToken" })

/** @since 0.1.0 */
export interface FencingToken extends Schema.Schema.Type<typeof FencingToken> {}

/**
 * A text that is not a token's header form (`parse`).
 *
 * @since 0.1.0
 */
export class FencingTokenError extends Schema.TaggedError<FencingTokenError>()("FencingTokenError", {
  input: Schema.String,
  message: Schema.String
}) {}

/**
 * The order of tokens: by `epoch`, then by `sequence`.
 *
 * @since 0.1.0
 */
export const Order: EffectOrder.Order<FencingToken> = (a, b) =>
  a.epoch !== b.epoch ? (a.epoch < b.epoch ? -1 : 1) : a.sequence !== b.sequence ? (a.sequence < b.sequence ? -1 : 1) : 0

/**
 * -1 when `a` is older than `b`, 1 when newer, 0 when they are the same token.
 *
 * @since 0.1.0
 */
export const compare = (a: FencingToken, b: FencingToken): -1 | 0 | 1 => Order(a, b)

/**
 * Whether `token` was issued after `than`.
 *
 * @since 0.1.0
 */
export const isNewer = (token: FencingToken, than: FencingToken): boolean => Order(token, than) === 1

/**
 * Whether `token` is lower than `highest` (the highest seen for the bank): a compile to refuse.
 *
 * @since 0.1.0
 */
export const isStale = (token: FencingToken, highest: FencingToken): boolean => Order(token, highest) === -1

/**
 * The header form, `"<epoch>.<sequence>"` (e.g. `"7.12"`): what the webhook sends as `compile-fencing-token`.
 *
 * @since 0.1.0
 */
export const format = (token: FencingToken): string => `${token.epoch}.${token.sequence}`

const HEADER_FORM = /^(\d+)\.(\d+)$/

const malformed = (input: string, why: string) =>
  Either.left(new FencingTokenError({ input, message: `fencing token ${JSON.stringify(input)} ${why}` }))

/**
 * A token from its header form: two decimal integers joined by a dot, `epoch` ≥ 0 and `sequence` ≥ 1, each at most
 * 2^53 − 1 (surrounding blanks are ignored). Anything else is a `FencingTokenError` saying what is wrong.
 *
 * @since 0.1.0
 */
export const parse = (text: string): Either.Either<FencingToken, FencingTokenError> => {
  const match = HEADER_FORM.exec(text.trim())
  if (match === null) return malformed(text, `is not "<epoch>.<sequence>" (two decimal integers, e.g. "7.12")`)
  const epoch = Number(match[1])
  const sequence = Number(match[2])
  if (!Number.isSafeInteger(epoch) || !Number.isSafeInteger(sequence)) {
    return malformed(text, `has a part larger than ${Number.MAX_SAFE_INTEGER}`)
  }
  if (sequence < 1) return malformed(text, "has sequence 0 (sequences start at 1)")
  return Either.right({ epoch, sequence })
}

/**
 * The header form as a schema: decodes `"7.12"` to `{ epoch: 7, sequence: 12 }` (failing with `parse`'s message),
 * encodes back with `format` — e.g. for `HttpServerRequest.schemaHeaders`.
 *
 * @since 0.1.0
 */
export const FromString: Schema.Schema<FencingToken, string> = Schema.transformOrFail(Schema.String, FencingToken, {
  strict: true,
  decode: (text, _, ast) =>
    Either.mapLeft(parse(text), (error) => new ParseResult.Type(ast, text, error.message)),
  encode: (token) => ParseResult.succeed(format(token))
})

/**
 * What a guard answered: the token is the highest seen for the bank (or equal to it), or it is lower than `highest`.
 *
 * @since 0.1.0
 */
export type Admission =
  | { readonly _tag: "Accepted" }
  | { readonly _tag: "Stale"; readonly highest: FencingToken }

const accepted: Admission = { _tag: "Accepted" }

/**
 * The receiving side's record of the highest token seen per bank, in memory.
 *
 * @since 0.1.0
 */
export interface Guard {
  /**
   * Accepted when `token` is not lower than the highest seen for `bankId` (it becomes the highest); `Stale`, naming
   * the highest, when it is: refuse that compile (the webhook's answer is a 409).
   */
  readonly admit: (bankId: string, token: FencingToken) => Effect.Effect<Admission>
  /** `admit`, synchronously, for code outside Effect. */
  readonly unsafeAdmit: (bankId: string, token: FencingToken) => Admission
  /** The highest token seen for `bankId`, if any. */
  readonly highest: (bankId: string) => FencingToken | undefined
  /** Forgets a bank (one you deleted): the guard holds one entry per bank it has seen, until then. */
  readonly forget: (bankId: string) => void
}

/**
 * A guard for an engine: `admit(bankId, job.fencingToken)` before compiling, and refuse the compile when it answers
 * `Stale`. It keeps one token per bank it has seen, in memory, so its size is bounded by your banks (call `forget`
 * for a bank you delete), and it forgets everything when your process restarts: the check that lasts is the
 * conditional page write (see the module's description). An equal token is accepted: the same compile asking twice.
 *
 * @since 0.1.0
 */
export const unsafeMakeGuard = (): Guard => {
  const seen = new Map<string, FencingToken>()
  const unsafeAdmit = (bankId: string, token: FencingToken): Admission => {
    const highest = seen.get(bankId)
    if (highest !== undefined && isStale(token, highest)) return { _tag: "Stale", highest }
    seen.set(bankId, token)
    return accepted
  }
  return {
    admit: (bankId, token) => Effect.sync(() => unsafeAdmit(bankId, token)),
    unsafeAdmit,
    highest: (bankId) => seen.get(bankId),
    forget: (bankId) => {
      seen.delete(bankId)
    }
  }
}

/**
 * `unsafeMakeGuard` as an effect.
 *
 * @since 0.1.0
 */
export const makeGuard: Effect.Effect<Guard> = Effect.sync(unsafeMakeGuard)
