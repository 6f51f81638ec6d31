/**
 * The compile history: a fixed-capacity ring of the last finished engine runs, and the runs in flight. Written by
 * the workers once per engine run (never on the retain path); read by `recentCompiles` / `runningCompiles`, which
 * turn the plain entries into `CompileRecord`s.
 *
 * @internal
 */
import { DateTime, Option } from "effect"
import type { CompileJob } from "../../CompileEngine.js"
import { CompileRecord, type CompileOutcome, type RecentCompilesOptions, RunningCompile } from "../../CompileHistory.js"

interface Entry {
  readonly job: CompileJob
  readonly startedAt: number
  readonly endedAt: number
  readonly outcome: CompileOutcome
  readonly tokensUsed: number
  readonly error: string | undefined
}

interface InFlight {
  readonly job: CompileJob
  readonly startedAt: number
}

export class CompileHistory {
  /** Grows to `capacity`, then the oldest is overwritten first: `entries[next]` is the next slot written. */
  private readonly entries: Array<Entry> = []
  private next = 0
  private readonly inFlight = new Map<string, InFlight>()

  constructor(readonly capacity: number) {}

  started(job: CompileJob, startedAt: number): void {
    this.inFlight.set(job.bankId, { job, startedAt })
  }

  /** The run ended without a result that counts either way (interrupted by shutdown): forget it. */
  abandoned(bankId: string): void {
    this.inFlight.delete(bankId)
  }

  finished(
    bankId: string,
    endedAt: number,
    outcome: CompileOutcome,
    tokensUsed: number,
    error: string | undefined
  ): void {
    const run = this.inFlight.get(bankId)
    if (run === undefined) return
    this.inFlight.delete(bankId)
    if (this.capacity === 0) return
    const entry: Entry = { job: run.job, startedAt: run.startedAt, endedAt, outcome, tokensUsed, error }
    if (this.entries.length < this.capacity) this.entries.push(entry)
    else this.entries[this.next] = entry
    this.next = (this.next + 1) % this.capacity
  }

  /** Newest first, filtered, at most `limit`. */
  recent(options?: RecentCompilesOptions): Array<CompileRecord> {
    const size = this.entries.length
    const limit = options?.limit === undefined ? size : Math.max(0, Math.trunc(options.limit))
    const bankId = options?.bankId
    const outcome = options?.outcome
    const records: Array<CompileRecord> = []
    for (let n = 1; n <= size && records.length < limit; n++) {
      const entry = this.entries[(this.next - n + this.capacity) % this.capacity]!
      if (bankId !== undefined && entry.job.bankId !== bankId) continue
      if (outcome !== undefined && entry.outcome !== outcome) continue
      records.push(toRecord(entry))
    }
    return records
  }

  /** In the order they started. */
  running(bankId?: string): Array<RunningCompile> {
    const compiles: Array<RunningCompile> = []
    for (const run of this.inFlight.values()) {
      if (bankId !== undefined && run.job.bankId !== bankId) continue
      compiles.push(
        new RunningCompile({
          bankId: run.job.bankId,
          reason: run.job.reason,
          startedAt: DateTime.unsafeMake(run.startedAt),
          memories: run.job.memories,
          forgets: run.job.forgets,
          attempt: run.job.attempt,
          memoryWait: Option.fromNullable(run.job.memoryWait)
        }, true)
      )
    }
    return compiles
  }
}

const toRecord = (entry: Entry): CompileRecord =>
  new CompileRecord({
    bankId: entry.job.bankId,
    reason: entry.job.reason,
    startedAt: DateTime.unsafeMake(entry.startedAt),
    endedAt: DateTime.unsafeMake(entry.endedAt),
    outcome: entry.outcome,
    memories: entry.job.memories,
    forgets: entry.job.forgets,
    tokensUsed: entry.tokensUsed,
    error: Option.fromNullable(entry.error),
    memoryWait: Option.fromNullable(entry.job.memoryWait)
  }, true) // built from the engine's checked values: skip validation
