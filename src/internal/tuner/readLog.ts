/**
 * Reads a workload log (JSON Lines) into a `Workload`, line by line; the first bad or out-of-order line stops it with
 * a message naming the line.
 *
 * @internal
 */
import { Effect } from "effect"
import { createReadStream } from "node:fs"
import { createInterface } from "node:readline"
import type { Workload } from "./replay.js"
import { WorkloadBuilder } from "./workload.js"

/** Fails with one message (the line's number and what is wrong) and reads no further. */
export const readLog = (file: string): Effect.Effect<Workload, string> =>
  Effect.async<Workload, string>((resume, signal) => {
    const builder = new WorkloadBuilder()
    const stream = createReadStream(file, { encoding: "utf8", signal })
    const lines = createInterface({ input: stream, crlfDelay: Infinity })
    let line = 0
    let failed = false
    const stop = (message: string) => {
      if (failed) return
      failed = true
      lines.close()
      stream.destroy()
      resume(Effect.fail(message))
    }
    lines.on("line", (text) => {
      if (failed) return
      const problem = builder.addLine(text, ++line)
      if (problem !== undefined) stop(problem)
    })
    lines.on("close", () => {
      if (!failed) resume(Effect.succeed(builder.build()))
    })
    stream.on("error", (error) => stop(error.message))
  })
