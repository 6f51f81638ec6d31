/**
 * A partition handed to another runner keeps its banks' freshness deadlines: the old owner's last flush writes each
 * bank's row (a running compile's memories included), the new owner reads its partition's rows (`decodeRows`, as
 * Postgres returns them: BIGINT as text) and restores them. Unit level: the row round trip the hand-over makes.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { decodeRows, type PersistedBank } from "../../src/BankStateStore.js"
import { CompileTriggerConfig } from "../../src/CompileTriggerConfig.js"
import { CompileCore } from "../../src/internal/core/compileCore.js"

const core = () =>
  new CompileCore({
    config: new CompileTriggerConfig({ sizeThreshold: 3, maxWaitSeconds: 600 }),
    maxAttempts: 3,
    baseDelayMillis: 1000,
    maxQueueSize: Infinity,
    persistent: true,
    offer: () => true
  })

/** The row as the banks table holds it and Postgres returns it (BIGINT columns as strings). */
const asPgRow = (bank: PersistedBank): Record<string, unknown> => ({
  bank_id: bank.bankId,
  memories: String(bank.memories),
  last_compile_at: bank.lastCompileAt === null ? null : String(bank.lastCompileAt),
  first_retain_at: bank.firstRetainAt === null ? null : String(bank.firstRetainAt),
  consecutive_failures: bank.consecutiveFailures,
  last_error: bank.lastError,
  status: bank.status,
  forgets: String(bank.forgets ?? 0),
  policy: null,
  budget_level: null,
  budget_at: null,
  budget_capacity: null,
  oldest_memory_at: bank.oldestMemoryAt == null ? null : String(bank.oldestMemoryAt),
  memory_wait_sum: bank.memoryWaitSum ?? 0,
  partition: 5
})

describe("cluster hand-over — freshness deadlines", () => {
  it.effect("the new owner restores the oldest memory and the wait sum: same deadline, same wait at the next compile", () =>
    Effect.gen(function*() {
      const old = core()
      const i = old.add("bank-1")
      old.firstRetain(i, 1000)
      old.retain(i, 3, 1000) // queued for size
      expect(old.start(i, 2000)._tag).toBe("Run") // running when the partition moves
      old.retain(i, 1, 5000) // arrived during the compile
      const [row] = yield* decodeRows([asPgRow(old.row(i))])
      expect(row).toMatchObject({ status: "running", memories: 4, oldestMemoryAt: 1000, memoryWaitSum: 4000 })

      const next = core()
      expect(next.restore([row!], 9000)).toEqual([0]) // the cut-off compile runs again, its memories with it
      expect(next.deadlineAt(0)).toBe(old.deadlineAt(i))
      expect(next.deadlineAt(0)).toBe(601_000)
      const run = next.start(0, 10_000)
      expect(run._tag === "Run" && run.memoryWait).toEqual({ oldestSeconds: 9, meanSeconds: (9 * 3 + 5) / 4 })
    }))
})
