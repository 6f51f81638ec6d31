/**
 * Colour only on a terminal: @effect/cli writes its help and its errors with ANSI styles whatever the stream is. Text
 * the tuner's command line writes reaches stdout or stderr styled only when that stream is a terminal and `NO_COLOR`
 * is not set (https://no-color.org); piped or redirected, it is plain.
 *
 * @internal
 */
import { Console, Effect } from "effect"

/** SGR sequences (`ESC [ … m`): the only escapes @effect/printer-ansi writes. */
const STYLE = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g")

export const stripStyles = (text: string): string => text.replace(STYLE, "")

/** Whether text written to `stream` may keep its styles. */
export const colourFor = (
  stream: { readonly isTTY?: boolean },
  env: Readonly<Record<string, string | undefined>> = process.env
): boolean => stream.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === "")

const plainArgs = (args: ReadonlyArray<unknown>): Array<unknown> =>
  args.map((arg) => typeof arg === "string" ? stripStyles(arg) : arg)

/** `console` with the styles taken out of what goes to a stream that may not have them. */
const plainConsole = (console: Console.Console, stdoutColour: boolean, stderrColour: boolean): Console.Console => ({
  ...console,
  log: (...args) => console.log(...(stdoutColour ? args : plainArgs(args))),
  info: (...args) => console.info(...(stdoutColour ? args : plainArgs(args))),
  debug: (...args) => console.debug(...(stdoutColour ? args : plainArgs(args))),
  error: (...args) => console.error(...(stderrColour ? args : plainArgs(args))),
  warn: (...args) => console.warn(...(stderrColour ? args : plainArgs(args)))
})

/** Runs `effect` with its `Console` output styled only where `colourFor` says so. */
export const colourOnlyOnTerminals = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const stdoutColour = colourFor(process.stdout)
  const stderrColour = colourFor(process.stderr)
  if (stdoutColour && stderrColour) return effect
  return Console.consoleWith((console) => Console.withConsole(effect, plainConsole(console, stdoutColour, stderrColour)))
}
