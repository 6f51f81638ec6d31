/**
 * A compile engine that keeps the books, for the reliability tests and the soak: every retain the test makes, and
 * every count a successful compile consumed, so `retained = consumed + counter` can be checked for every bank.
 *
 * Why the books are exact: the queue takes the counter value k synchronously just before it calls the engine. The
 * engine reads the bank's counter at the moment it is called and credits that value when the run succeeds. Both
 * reads agree unless a retain lands between the queue's take and the engine call. `notify` rules that out: it
 * retains only in a synchronous block that first checks `stats.running === runs in progress`, i.e. every running
 * bank is inside its engine run (a bank between take and engine call, or between engine return and the queue's
 * bookkeeping, is running without a run in progress). On one JS thread nothing else runs during that block.
 */
import { Effect, Exit, Option } from "effect"
import {
  type CompileEngineService,
  type CompileError,
  type CompileQueueService,
  CompileResult
} from "../../src/index.js"

export type EngineBehavior = (bankId: string, call: number) => Effect.Effect<CompileResult, CompileError>

/** A result without Schema validation: the soak makes hundreds of thousands. */
export const ok = (bankId: string): CompileResult => new CompileResult({ bankId }, true)

export interface Books {
  /** The engine to give the queue (`Layer.succeed(CompileEngine, books.engine)`). */
  readonly engine: CompileEngineService
  /** What each run does; may be swapped at any time. */
  behavior: EngineBehavior
  /** Must be called once the queue is built, before any retain. */
  attach(queue: CompileQueueService): void
  readonly retained: Map<string, number>
  readonly consumed: Map<string, number>
  /** Engine runs started, succeeded, failed (any non-success exit), and in progress now. */
  readonly counts: { calls: number; successes: number; failures: number; inProgress: number; maxPerBank: number }
  /** Called at every engine start with the bank and the run number (after the books were updated). */
  onStart: (bankId: string, call: number) => void
  /** True when every running bank is inside its engine run (see the module comment). */
  quiescent(): boolean
  /**
   * Runs `f` with a `notify(bankId, n)` that retains and books, in one synchronous block once quiescent. Returns
   * what `f` returns.
   */
  notify<A>(f: (notify: (bankId: string, count: number) => void) => A): Effect.Effect<A>
  /** Banks whose books do not balance, as readable lines (empty when all balance). */
  unbalanced(): Effect.Effect<ReadonlyArray<string>>
}

export const makeBooks = (behavior: EngineBehavior = (bankId) => Effect.succeed(ok(bankId))): Books => {
  let queue: CompileQueueService | undefined
  const active = new Map<string, number>()
  const books: Books = {
    behavior,
    retained: new Map(),
    consumed: new Map(),
    counts: { calls: 0, successes: 0, failures: 0, inProgress: 0, maxPerBank: 0 },
    onStart: () => {},
    attach: (q) => {
      queue = q
    },
    engine: {
      run: (bankId) => {
        const k = Option.match(Effect.runSync(queue!.bankState(bankId)), {
          onNone: () => 0,
          onSome: (s) => s.memoriesSinceLastCompile
        })
        const overlapping = (active.get(bankId) ?? 0) + 1
        active.set(bankId, overlapping)
        const counts = books.counts
        if (overlapping > counts.maxPerBank) counts.maxPerBank = overlapping
        counts.inProgress++
        const call = ++counts.calls
        books.onStart(bankId, call)
        const ended = (success: boolean) => {
          counts.inProgress--
          const left = active.get(bankId)! - 1
          if (left === 0) active.delete(bankId)
          else active.set(bankId, left)
          if (success) {
            counts.successes++
            books.consumed.set(bankId, (books.consumed.get(bankId) ?? 0) + k)
          } else counts.failures++
        }
        let effect: Effect.Effect<CompileResult, CompileError>
        try {
          effect = books.behavior(bankId, call)
        } catch (thrown) {
          // an engine whose run throws before returning an effect: let the queue see the raw throw
          ended(false)
          throw thrown
        }
        return Effect.onExit(effect, (exit) => Effect.sync(() => ended(Exit.isSuccess(exit))))
      }
    },
    quiescent: () => Effect.runSync(queue!.stats).running === books.counts.inProgress,
    notify: <A>(f: (notify: (bankId: string, count: number) => void) => A): Effect.Effect<A> => {
      const notify = (bankId: string, count: number) => {
        queue!.unsafeNotifyRetain(bankId, count)
        books.retained.set(bankId, (books.retained.get(bankId) ?? 0) + count)
      }
      const attempt: Effect.Effect<Option.Option<A>> = Effect.sync(() =>
        books.quiescent() ? Option.some(f(notify)) : Option.none()
      )
      const loop: Effect.Effect<A> = Effect.flatMap(attempt, (done) =>
        Option.isSome(done) ? Effect.succeed(done.value) : Effect.zipRight(Effect.yieldNow(), loop))
      return loop
    },
    unbalanced: () =>
      Effect.map(Effect.suspend(() => queue!.state), (states) => {
        const lines: Array<string> = []
        for (const id of new Set([...books.retained.keys(), ...states.keys()])) {
          const counter = states.get(id)?.memoriesSinceLastCompile ?? 0
          const retained = books.retained.get(id) ?? 0
          const consumed = books.consumed.get(id) ?? 0
          if (retained !== consumed + counter) {
            lines.push(`${id}: retained ${retained} != consumed ${consumed} + counter ${counter}`)
          }
        }
        return lines
      })
  }
  return books
}

export { prng } from "./random.js"
