/**
 * effect-compile-trigger: decides when an agent-memory bank needs a compile and runs those compiles in the background.
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
export { BankPolicy, BankPolicyError, type BankPolicyInput, effectiveConfig, validatePolicy } from "./BankPolicy.js"
export {
  CompileEngine,
  type CompileEngineService,
  CompileError,
  CompileJob,
  CompileReason,
  CompileResult
} from "./CompileEngine.js"
export * as CompileMetrics from "./CompileMetrics.js"
export {
  type BankPage,
  CompileQueue,
  type CompileQueueService,
  type CompileQueueStats,
  type ListBanksOptions
} from "./CompileQueue.js"
export {
  type CompileQueueOptions,
  CompileQueueOptionsError,
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
  type PersistedBank
} from "./BankStateStore.js"
export * as CompileTriggerApi from "./CompileTriggerApi.js"
export * as CompileTriggerServer from "./CompileTriggerServer.js"
export * as DryRunEngine from "./DryRunEngine.js"
export * as PrometheusMetrics from "./PrometheusMetrics.js"
export * as ServiceConfig from "./ServiceConfig.js"
export * as WebhookEngine from "./WebhookEngine.js"
