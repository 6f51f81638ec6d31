/**
 * The tuner's progress bar on stderr: drawn only when stderr is a terminal (piped or redirected output stays clean),
 * redrawn at most ten times a second, erased when the replays are done.
 *
 * @internal
 */

const WIDTH = 30

export interface ProgressBar {
  readonly update: (combination: number, replayed: number) => void
  readonly done: () => void
}

/** A bar over `combinations` replays of `events` events each; undefined when stderr is not a TTY. */
export const progressBar = (combinations: number, events: number, stream: NodeJS.WriteStream = process.stderr): ProgressBar | undefined => {
  if (!stream.isTTY) return undefined
  const total = combinations * events
  let last = 0
  const started = performance.now()
  return {
    update: (combination, replayed) => {
      const now = performance.now()
      if (now - last < 100) return
      last = now
      const share = total === 0 ? 1 : (combination * events + replayed) / total
      const filled = Math.round(share * WIDTH)
      const rate = ((combination * events + replayed) / ((now - started) / 1000) / 1e6).toFixed(2)
      stream.write(
        `\r[${"#".repeat(filled)}${" ".repeat(WIDTH - filled)}] ${(share * 100).toFixed(0).padStart(3)} %  ` +
          `combination ${Math.min(combination + 1, combinations)} of ${combinations}, ${rate} M events/s `
      )
    },
    done: () => {
      stream.write("\r\x1b[2K")
    }
  }
}
