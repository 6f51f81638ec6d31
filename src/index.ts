/**
 * effect-compile-trigger: decides when an agent-memory bank needs a compile and runs those compiles in the background.
 *
 * The core: it needs `effect` and `@effect/sql` only. The parts with optional peers have their own entry points —
 * `effect-compile-trigger/SqliteBankStateStore`, `/PgBankStateStore`, `/CompileTriggerApi`, `/CompileTriggerServer`,
 * `/WebhookEngine`, `/PrometheusMetrics`, `/OtlpTracing`, `/ServiceConfig` — so importing this module loads none of
 * them.
 *
 * @since 0.1.0
 */
export {
  BankCompileState,
  BankStatus,
  compileReason,
  isStaleAt,
  referenceTime,
  shouldTrigger,
  type TriggerReason,
  triggerReason,
  triggers
} from "./BankCompileState.js"
export { BankLimitError, bankLimitError, DEFAULT_MAX_BANKS, HARD_MAX_BANKS } from "./BankLimit.js"
export { BankPolicy, BankPolicyError, type BankPolicyInput, effectiveConfig, validatePolicy } from "./BankPolicy.js"
export {
  CompileEngine,
  type CompileEngineService,
  CompileError,
  CompileJob,
  CompileReason,
  CompileResult
} from "./CompileEngine.js"
export {
  CompileOutcome,
  CompileRecord,
  type RecentCompilesOptions,
  RunningCompile
} from "./CompileHistory.js"
export { BudgetBucketState, CompileBudgetState, DeferredBank } from "./CompileBudget.js"
export {
  BankDeadline,
  NextCompile,
  NextCompileState,
  QueueFreshness,
  QueueLanes,
  RuleForecast
} from "./Freshness.js"
export * as CompileMetrics from "./CompileMetrics.js"
export {
  type BankPage,
  CompileQueue,
  type CompileQueueBudgetStats,
  type CompileQueueService,
  type CompileQueueStats,
  type ListBanksOptions
} from "./CompileQueue.js"
export {
  type CompileBudgetOptions,
  type CompileQueueOptions,
  CompileQueueOptionsError,
  type ResolvedCompileBudget,
  type ResolvedCompileQueueOptions
} from "./CompileQueueOptions.js"
export {
  CompileTriggerConfig,
  type CompileTriggerConfigInput,
  MILLIS_PER_DAY,
  triggerFields
} from "./CompileTriggerConfig.js"
export {
  BankStateStore,
  type BankStateStoreService,
  BankStoreError,
  makeMemory as makeMemoryBankStateStore,
  makeSql as makeSqlBankStateStore,
  type PersistedBank,
  type PersistedBudget,
  type StoredLevel
} from "./BankStateStore.js"
export * as DryRunEngine from "./DryRunEngine.js"
export * as FencingToken from "./FencingToken.js"
export * as StoreHealth from "./StoreHealth.js"
