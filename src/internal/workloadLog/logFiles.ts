/**
 * The workload log on disk: one JSON Lines file per UTC day (`2026-12-05.jsonl`) in the tuner's format, appended to
 * whole or not at all, and the days past the retention deleted.
 *
 * @internal
 */
import { mkdir, open, readdir, unlink } from "node:fs/promises"
import { join } from "node:path"
import { MAX_LINE_COUNT } from "./tally.js"

export const MINUTE = 60_000
export const DAY = 86_400_000

/** A daily file's name: its UTC day, then `.jsonl`. */
export const DAILY_FILE = /^(\d{4}-\d{2}-\d{2})\.jsonl$/

/** The UTC day of `time` (epoch milliseconds) as `YYYY-MM-DD`. */
export const dayOf = (time: number): string => new Date(time).toISOString().slice(0, 10)

export const fileOf = (dir: string, time: number): string => join(dir, `${dayOf(time)}.jsonl`)

/**
 * One bank's minute as lines: its retains, then its forgets (the order of the two within the minute is not kept).
 * Returns how many events (lines) it added.
 */
export const appendMinute = (
  out: Array<string>,
  iso: string,
  bankId: string,
  retains: number,
  forgets: number
): number => {
  const head = `{"t":"${iso}","bankId":${JSON.stringify(bankId)},"count":`
  const before = out.length
  for (let left = retains; left > 0; left -= MAX_LINE_COUNT) out.push(`${head}${Math.min(left, MAX_LINE_COUNT)}}\n`)
  for (let left = forgets; left > 0; left -= MAX_LINE_COUNT) {
    out.push(`${head}${Math.min(left, MAX_LINE_COUNT)},"op":"forget"}\n`)
  }
  return out.length - before
}

/**
 * Appends `text` to `file` (creating it and its directory): on a failed write (a full disk) the file is cut back to
 * its length before, so a torn line never reaches the tuner.
 */
export const appendWhole = async (dir: string, file: string, text: string): Promise<void> => {
  await mkdir(dir, { recursive: true })
  const handle = await open(file, "a")
  try {
    const { size } = await handle.stat()
    try {
      await handle.appendFile(text, "utf8")
    } catch (error) {
      await handle.truncate(size).catch(() => undefined)
      throw error
    }
  } finally {
    await handle.close()
  }
}

/** Deletes the daily files older than the `retentionDays` days that end with `today`'s; the names it deleted. */
export const prune = async (dir: string, today: number, retentionDays: number): Promise<Array<string>> => {
  const oldestKept = dayOf(today - (retentionDays - 1) * DAY)
  const deleted: Array<string> = []
  for (const name of await readdir(dir)) {
    const day = DAILY_FILE.exec(name)?.[1]
    if (day === undefined || day >= oldestKept) continue
    await unlink(join(dir, name))
    deleted.push(name)
  }
  return deleted
}
