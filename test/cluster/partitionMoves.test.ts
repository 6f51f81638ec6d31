/**
 * Cluster operability without a cluster: each partition move is logged once, at INFO, by the runner that takes the
 * partition over (from whom, to whom, why), however many reconcile passes follow; and the queue size is split over the
 * partitions so that the shares add up to the configured size (a cluster reports 10,000 for 10,000, not 10,048).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Logger, LogLevel, TestClock } from "effect"
import type { CompileQueueService } from "../../src/CompileQueue.js"
import { queueShare } from "../../src/internal/cluster/owner.js"
import { LEASE_MILLIS, makePartitionLeases } from "../../src/internal/cluster/partitionLeases.js"
import { describeMove } from "../../src/internal/cluster/partitionMoves.js"
import { LocalPartitions, makePartitionSlots } from "../../src/internal/cluster/partitionSlots.js"
import { memoryLeaseRows } from "../support/memoryLeases.js"
import { captureLogs } from "../support/utils.js"

/** One lease table and the assignments shared by the runners of one test. */
const makeWorld = () => {
  const table = memoryLeaseRows()
  const assignedTo = new Map<number, string>()
  const runner = (name: string) =>
    Effect.gen(function*() {
      const leases = yield* makePartitionLeases({ rows: table.rows, runner: name, holder: name })
      const local = new LocalPartitions()
      const slots = makePartitionSlots({
        partitions: 2,
        leases,
        isAssigned: (p) => assignedTo.get(p) === name,
        local,
        handoverTimeout: Duration.seconds(1),
        build: () => Effect.succeed({ queue: {} as CompileQueueService, closeGate: () => Effect.succeed(true) })
      })
      return { slots }
    })
  return { assignedTo, runner }
}

const infoLines = (logs: ReadonlyArray<{ level: string; message: string }>) =>
  logs.filter((log) => log.level === "INFO").map((log) => log.message)

describe("partition moves", () => {
  it.effect("each move is logged once by the new owner: from, to, why; the first owner only at debug level", () => {
    const { layer, logs } = captureLogs()
    return Effect.gen(function*() {
      const world = makeWorld()
      const a = yield* world.runner("10.0.0.1:7000")
      const b = yield* world.runner("10.0.0.2:7000")
      const c = yield* world.runner("10.0.0.3:7000")
      world.assignedTo.set(0, "10.0.0.1:7000")
      world.assignedTo.set(1, "10.0.0.1:7000")
      yield* a.slots.reconcile
      expect(infoLines(logs)).toEqual([])
      // The cluster gives partition 1 to b: a hands it over at its next pass, b takes it at its own.
      world.assignedTo.set(1, "10.0.0.2:7000")
      for (let pass = 0; pass < 3; pass++) yield* Effect.all([a.slots.reconcile, b.slots.reconcile])
      expect(infoLines(logs)).toEqual([
        "partition 1 moved: 10.0.0.1:7000 → 10.0.0.2:7000 (the cluster reassigned it: a runner joined or left)"
      ])
      // a dies: its lease on partition 0 expires, and c, which takes it, learns that a never handed it over.
      yield* TestClock.adjust(LEASE_MILLIS)
      world.assignedTo.set(0, "10.0.0.3:7000")
      for (let pass = 0; pass < 3; pass++) yield* c.slots.reconcile
      // b stops: partition 1 goes to c.
      yield* b.slots.stopAll
      world.assignedTo.set(1, "10.0.0.3:7000")
      for (let pass = 0; pass < 3; pass++) yield* c.slots.reconcile
      expect(infoLines(logs).slice(1)).toEqual([
        "partition 0 moved: 10.0.0.1:7000 → 10.0.0.3:7000 (10.0.0.1:7000 did not hand it over: its lease expired (it died, froze, or lost Postgres))",
        "partition 1 moved: 10.0.0.2:7000 → 10.0.0.3:7000 (10.0.0.2:7000 stopped)"
      ])
      expect(logs.filter((log) => log.level === "DEBUG" && /first owned by/.test(log.message))).toHaveLength(2)
    }).pipe(Effect.provide(layer), Logger.withMinimumLogLevel(LogLevel.Debug))
  })

  it.effect("a release that fails (its connection died with a Postgres restart) is tried again: the lease ends at once", () =>
    Effect.gen(function*() {
      const table = memoryLeaseRows()
      const leases = yield* makePartitionLeases({ rows: table.rows, runner: "a:1", holder: "a:1" })
      expect(yield* leases.tryAcquire(0)).toMatchObject({ epoch: 1 })
      table.unreachable = true
      const releasing = yield* Effect.fork(leases.release(0, "reassigned"))
      yield* TestClock.adjust(Duration.millis(600)) // two tries failed
      table.unreachable = false
      yield* TestClock.adjust(Duration.millis(250))
      yield* releasing.await
      expect(table.row(0)).toMatchObject({ expiresAt: -Infinity, left: "reassigned" })
      expect(table.holderAt(0, 1)).toBeUndefined() // the next owner need not wait for the lease to expire
    }))

  it("describes a lost lease and a runner taking back what it had before a restart", () => {
    expect(describeMove(5, { runner: "a:1", left: "lease lost" }, "b:1").message)
      .toBe("partition 5 moved: a:1 → b:1 (a:1 lost the partition's lease)")
    expect(describeMove(5, { runner: "a:1", left: null }, "a:1")).toEqual({
      level: "info",
      message: "partition 5 moved: a:1 → a:1 (a:1 did not hand it over: its lease expired (it died, froze, or lost Postgres))"
    })
  })
})

describe("queue size in cluster mode", () => {
  it("the partitions' shares add up to the configured size, and differ by one bank at most", () => {
    for (const size of [64, 100, 1000, 10_000, 12_345, 1_000_000]) {
      const shares = Array.from({ length: 64 }, (_, p) => queueShare(size, p))
      expect(shares.reduce((sum, share) => sum + share, 0)).toBe(size)
      expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1)
    }
    expect(queueShare(10_000, 0)).toBe(157)
    expect(queueShare(10_000, 63)).toBe(156)
  })

  it("unbounded stays unbounded; below one bank a partition each still holds one", () => {
    expect(queueShare(0, 5)).toBe(0)
    expect(Array.from({ length: 64 }, (_, p) => queueShare(10, p)).every((share) => share === 1)).toBe(true)
  })
})
