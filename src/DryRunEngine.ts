/**
 * A `CompileEngine` that compiles nothing: it logs each compile it would have run and returns an empty result. The
 * service uses it when `COMPILE_WEBHOOK_URL` is not set, so `npm start` works with nothing else to set up.
 *
 * @since 0.1.0
 */
import { Effect, Layer } from "effect"
import { CompileEngine, CompileResult } from "./CompileEngine.js"

/**
 * @since 0.1.0
 */
export const engine: CompileEngine["Type"] = CompileEngine.of({
  run: (bankId, job) =>
    Effect.logInfo("dry run: would compile this bank now (set COMPILE_WEBHOOK_URL to call your compile endpoint)").pipe(
      Effect.annotateLogs({ bankId, reason: job.reason, memories: job.memories, forgets: job.forgets }),
      Effect.as(new CompileResult({ bankId }, true)) // bankId was checked on the way in
    )
})

/**
 * @since 0.1.0
 */
export const layer: Layer.Layer<CompileEngine> = Layer.succeed(CompileEngine, engine).pipe(
  Layer.tap(() =>
    Effect.logWarning(
      "engine: dry run — COMPILE_WEBHOOK_URL is not set, so compiles are only logged, never run"
    )
  )
)
