/**
 * SIGINT/SIGTERM for the service process, beside `NodeRuntime.runMain`'s own handling.
 *
 * runMain interrupts the main fiber (the graceful stop) on the first SIGINT or SIGTERM and then removes its listeners,
 * so a second signal gets Node's default action and kills the process at once (exit 130/143), cutting the stop short.
 * A second signal is common: Ctrl-C on `npm start` reaches node twice (the terminal signals the whole process group,
 * and npm forwards its copy), and so does `kill -TERM -<pgid>`. This listener stays for the process's lifetime: a
 * signal within `forceAfterMs` of the first, or any later SIGTERM, is a duplicate and ignored; a SIGINT at least that
 * much later is a deliberate second Ctrl-C and exits 130 at once, saying so. The shutdown watchdog bounds the rest.
 *
 * @internal
 */

/** A second Ctrl-C this long after the first forces the exit; one sooner is taken for a duplicate. */
export const FORCE_AFTER_MS = 1000

/** Call before `NodeRuntime.runMain`, which handles the first signal. */
export const guardShutdownSignals = (forceAfterMs: number = FORCE_AFTER_MS): void => {
  let first: number | undefined
  const onSignal = (signal: NodeJS.Signals) => {
    const now = Date.now()
    if (first === undefined) {
      first = now
      return
    }
    if (signal === "SIGINT" && now - first >= forceAfterMs) {
      process.stderr.write("second Ctrl-C: exiting now, without finishing the graceful shutdown\n")
      process.exit(130)
    }
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
}
