import { Context, Deferred, Effect, Exit, FastCheck as fc, Layer, List, Logger, type LogLevel, Queue, Scope } from "effect"
import { BankPolicy } from "../../src/BankPolicy.js"
import { BankStateStore } from "../../src/BankStateStore.js"
import { CompileEngine, type CompileError, type CompileJob, CompileResult } from "../../src/CompileEngine.js"
import { CompileQueue } from "../../src/CompileQueue.js"
import type { CompileQueueOptions } from "../../src/CompileQueueOptions.js"

export type Behavior = (bankId: string, call: number) => Effect.Effect<CompileResult, CompileError>

export const instant: Behavior = (bankId) => Effect.succeed(new CompileResult({ bankId }))

/** Drives the test engine: what each run does, which runs started, and how many of one bank overlapped. */
export interface EngineControl {
  readonly calls: Array<string>
  /** The job of each call, in call order. */
  readonly jobs: Array<CompileJob>
  readonly started: Queue.Queue<string>
  behavior: Behavior
  /** Most runs of one bank at once, and most runs overall at once, seen so far. */
  maxPerBank: number
  maxOverall: number
  /** Makes every run wait for `open` (then succeed). */
  readonly hold: Effect.Effect<void>
  readonly open: Effect.Effect<void>
}

export class TestEngine extends Context.Tag("test/TestEngine")<TestEngine, EngineControl>() {}

export const testEngineLayer: Layer.Layer<CompileEngine | TestEngine> = Layer.effectContext(
  Effect.gen(function*() {
    const active = new Map<string, number>()
    let overall = 0
    const gate = yield* Deferred.make<void>()
    const control: EngineControl = {
      calls: [],
      jobs: [],
      started: yield* Queue.unbounded<string>(),
      behavior: instant,
      maxPerBank: 0,
      maxOverall: 0,
      hold: Effect.sync(() => {
        control.behavior = (bankId) => Effect.as(Deferred.await(gate), new CompileResult({ bankId }))
      }),
      open: Deferred.succeed(gate, undefined)
    }
    const run = (bankId: string, job: CompileJob) =>
      Effect.suspend(() => {
        const call = control.calls.push(bankId)
        control.jobs.push(job)
        const now = (active.get(bankId) ?? 0) + 1
        active.set(bankId, now)
        overall++
        control.maxPerBank = Math.max(control.maxPerBank, now)
        control.maxOverall = Math.max(control.maxOverall, overall)
        control.started.unsafeOffer(bankId)
        return control.behavior(bankId, call)
      }).pipe(Effect.ensuring(Effect.sync(() => {
        active.set(bankId, active.get(bankId)! - 1)
        overall--
      })))
    return Context.make(CompileEngine, { run }).pipe(Context.add(TestEngine, control))
  })
)

/** Opens the engine's gate before the queue shuts down, so a failed assertion cannot leave a compile held. */
const openGateFirst = Layer.scopedDiscard(Effect.gen(function*() {
  yield* CompileQueue
  const engine = yield* TestEngine
  yield* Effect.addFinalizer(() => engine.open)
}))

/** The queue under test with the test engine; provide it around the whole test body. */
export const queueLayer = (options?: CompileQueueOptions): Layer.Layer<CompileQueue | TestEngine> =>
  openGateFirst.pipe(Layer.provideMerge(Layer.orDie(CompileQueue.layer(options))), Layer.provideMerge(testEngineLayer))

export interface CapturedLog {
  readonly level: LogLevel.LogLevel["label"]
  readonly message: string
  readonly annotations: Record<string, unknown>
}

/** Collects log lines; provide outermost so the queue's runtime (captured at build) logs here too. */
export const captureLogs = () => {
  const logs: Array<CapturedLog> = []
  const logger = Logger.make<unknown, void>(({ annotations, logLevel, message }) => {
    const text = List.isList(message) ? List.toArray(message).join(" ") : Array.isArray(message) ? message.join(" ") : String(message)
    logs.push({ level: logLevel.label, message: text, annotations: Object.fromEntries(annotations) })
  })
  return { logs, layer: Logger.replace(Logger.defaultLogger, logger) }
}

/** Retains `n` times, one memory each. */
export const retain = (bankId: string, n: number) =>
  Effect.flatMap(CompileQueue, (queue) =>
    Effect.sync(() => {
      for (let k = 0; k < n; k++) queue.unsafeNotifyRetain(bankId)
    }))

/** Builds a queue (with the test engine) on `store` in a scope of its own: close it to "restart". */
export const openQueue = <E>(store: Layer.Layer<BankStateStore, E>, options: CompileQueueOptions = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      CompileQueue.layer(options).pipe(Layer.provideMerge(Layer.merge(testEngineLayer, store))),
      scope
    )
    return {
      queue: Context.get(context, CompileQueue),
      engine: Context.get(context, TestEngine),
      store: Context.get(context, BankStateStore),
      close: Scope.close(scope, Exit.void)
    }
  })

export type PolicyFields = ConstructorParameters<typeof BankPolicy>[0]

/** Random policies for the model test and the simulation: any subset of the fields, some disabling the bank. */
export const policyArb: fc.Arbitrary<PolicyFields> = fc.record({
  enabled: fc.boolean(),
  sizeThreshold: fc.integer({ min: 1, max: 25 }),
  stalenessDays: fc.constantFrom(0, 0.5, 1, 4),
  stalenessMinMemories: fc.integer({ min: 1, max: 10 }),
  forgetThreshold: fc.integer({ min: 1, max: 5 }),
  forgetDelaySeconds: fc.constantFrom(0, 30, 600),
  maxWaitSeconds: fc.constantFrom(0, 60, 7200)
}, { requiredKeys: [] })

/** A stored bank's row as a store's `save` takes it: idle, `memories` counted, nothing else set. */
export const storedRow = (bankId: string, memories = 1) => ({
  bankId,
  memories,
  lastCompileAt: null,
  firstRetainAt: 1_700_000_000_000,
  consecutiveFailures: 0,
  lastError: null,
  status: "idle" as const,
  forgets: 0,
  policy: null
})
