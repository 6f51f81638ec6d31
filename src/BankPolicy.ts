/**
 * A bank's own compile settings: any of the queue's seven trigger settings, set for one bank (the rest fall back to the
 * queue's config), and its own token budget (`bankTokens`).
 *
 * @since 0.1.0
 */
import { Either, Option, ParseResult, Schema } from "effect"
import { CompileTriggerConfig, triggerFields } from "./CompileTriggerConfig.js"
import { mustBe } from "./internal/core/inputRules.js"

/**
 * Every field optional. `new BankPolicy({ sizeThreshold: -1 })` throws a `ParseError` naming the field, as the
 * config does. Encodes to JSON with only the fields it sets.
 *
 * @since 0.1.0
 */
export class BankPolicy extends Schema.Class<BankPolicy>("BankPolicy")({
  enabled: Schema.optional(triggerFields.enabled),
  sizeThreshold: Schema.optional(triggerFields.sizeThreshold),
  stalenessDays: Schema.optional(triggerFields.stalenessDays),
  stalenessMinMemories: Schema.optional(triggerFields.stalenessMinMemories),
  forgetThreshold: Schema.optional(triggerFields.forgetThreshold),
  forgetDelaySeconds: Schema.optional(triggerFields.forgetDelaySeconds),
  maxWaitSeconds: Schema.optional(triggerFields.maxWaitSeconds),
  /**
   * The bank's own token budget per `budget.period` (a positive integer), instead of the queue's `budget.bankTokens`.
   * Not a trigger setting: it decides when the bank's compiles may start, not whether it needs one.
   */
  bankTokens: Schema.optional(
    Schema.Int.pipe(Schema.positive()).annotations({ message: mustBe("bankTokens", "a positive integer") })
  )
}) {}

/**
 * What `setPolicy` accepts: a policy, or the fields to build one from.
 *
 * @since 0.1.0
 */
export type BankPolicyInput = BankPolicy | ConstructorParameters<typeof BankPolicy>[0]

/**
 * `setPolicy` refused: the bank id or a field is invalid. Nothing changed.
 *
 * @since 0.1.0
 */
export class BankPolicyError extends Schema.TaggedError<BankPolicyError>()("BankPolicyError", {
  bankId: Schema.String,
  message: Schema.String
}) {}

const decodePolicy = Schema.decodeUnknownEither(BankPolicy)

/**
 * Checks `input` (unknown fields rejected) into a `BankPolicy`; the left side says what is wrong with it.
 *
 * @since 0.1.0
 */
export const validatePolicy = (input: unknown): Either.Either<BankPolicy, string> =>
  input instanceof BankPolicy
    ? Either.right(input)
    : Either.mapLeft(
      decodePolicy(input, { onExcessProperty: "error" }),
      (error) => `policy is invalid: ${ParseResult.TreeFormatter.formatErrorSync(error)}`
    )

/**
 * The effective config of a bank: each field its policy sets, else the queue's. Pure, and no validation (both sides
 * are valid already).
 *
 * @since 0.1.0
 */
export const effectiveConfig = (
  defaults: CompileTriggerConfig,
  policy: BankPolicy | Option.Option<BankPolicy> | undefined
): CompileTriggerConfig => {
  const own = Option.isOption(policy) ? Option.getOrUndefined(policy) : policy
  if (own === undefined) return defaults
  return new CompileTriggerConfig({
    enabled: own.enabled ?? defaults.enabled,
    sizeThreshold: own.sizeThreshold ?? defaults.sizeThreshold,
    stalenessDays: own.stalenessDays ?? defaults.stalenessDays,
    stalenessMinMemories: own.stalenessMinMemories ?? defaults.stalenessMinMemories,
    forgetThreshold: own.forgetThreshold ?? defaults.forgetThreshold,
    forgetDelaySeconds: own.forgetDelaySeconds ?? defaults.forgetDelaySeconds,
    maxWaitSeconds: own.maxWaitSeconds ?? defaults.maxWaitSeconds,
    maxScopesPerBank: defaults.maxScopesPerBank
  }, true)
}
