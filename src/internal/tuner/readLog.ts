/**
 * Reads a workload log (JSON Lines) into a `Workload`, line by line — one file, or a directory of them (the service's
 * daily files) read one after another in name order as one log; the first bad or out-of-order line stops it with a
 * message naming the file and the line.
 *
 * @internal
 */
import { Effect } from "effect"
import { createReadStream } from "node:fs"
import { readdir, stat } from "node:fs/promises"
import { basename, join } from "node:path"
import { createInterface } from "node:readline"
import type { Workload } from "./replay.js"
import { WorkloadBuilder } from "./workload.js"

/** Adds `file`'s lines to `builder`; fails with one message (the line's number and what is wrong) and reads no further. */
const readInto = (builder: WorkloadBuilder, file: string, previous?: string): Effect.Effect<void, string> =>
  Effect.async<void, string>((resume, signal) => {
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
      const before = builder.size
      const problem = builder.addLine(text, ++line)
      if (problem === undefined) {
        if (builder.size > before) previous = undefined
        return
      }
      // Before this file's first event, the line it is out of order with is the previous file's last.
      stop(previous !== undefined && problem.includes("out of time order") ? `${problem}; that line is in ${previous}` : problem)
    })
    lines.on("close", () => {
      if (!failed) resume(Effect.void)
    })
    stream.on("error", (error) => stop(error.message))
  })

/** The `.jsonl` files of a directory, in name order (the service's daily files sort by day). */
const logFiles = (dir: string): Effect.Effect<Array<string>, string> =>
  Effect.tryPromise({
    try: () => readdir(dir, { withFileTypes: true }),
    catch: (error) => error instanceof Error ? error.message : String(error)
  }).pipe(
    Effect.map((entries) =>
      entries.filter((entry) => entry.isFile() && entry.name.endsWith(".jsonl")).map((entry) => entry.name).sort()
    ),
    Effect.filterOrFail((names) => names.length > 0, () => "the directory has no .jsonl files"),
    Effect.map((names) => names.map((name) => join(dir, name)))
  )

/**
 * `path` is a file, or a directory whose `.jsonl` files are read in name order as one log (time order must hold
 * across them too). A message about a line in a directory's file starts with the file's name.
 */
export const readLog = (path: string): Effect.Effect<Workload, string> =>
  Effect.gen(function*() {
    const builder = new WorkloadBuilder()
    const isDirectory = yield* Effect.tryPromise({
      try: () => stat(path),
      catch: (error) =>
        (error as NodeJS.ErrnoException).code === "ENOENT"
          ? "no such file or directory"
          : error instanceof Error
          ? error.message
          : String(error)
    }).pipe(Effect.map((info) => info.isDirectory()))
    if (!isDirectory) {
      yield* readInto(builder, path)
      return builder.build()
    }
    let previous: string | undefined
    for (const file of yield* logFiles(path)) {
      const name = basename(file)
      yield* Effect.mapError(readInto(builder, file, previous), (message) => `${name}: ${message}`)
      if (builder.size > 0) previous = name
    }
    return builder.build()
  })
