/**
 * Whether an application installed a tracer of its own (OpenTelemetry, …). A span costs microseconds (a compile's,
 * a request's: its URL and every header become attributes), and with Effect's built-in tracer nothing collects it,
 * so spans are made only then.
 *
 * @internal
 */
import { Effect } from "effect"

const builtIn = Effect.runSync(Effect.tracer)

/** True when the tracer in context is not Effect's built-in one. */
export const appTracing: Effect.Effect<boolean> = Effect.map(Effect.tracer, (tracer) => tracer !== builtIn)
