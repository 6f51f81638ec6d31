/**
 * Cluster operability without a cluster: each partition move is logged once, at INFO, by the runner that takes the
 * partition over (from whom, to whom, why), however many reconcile passes follow; and the queue size is split over the
 * partitions so that the shares add up to the configured size (a cluster reports 10,000 for 10,000, not 10,048).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Logger, LogLevel } from "effect"
import type { CompileQueueService } from "../../src/CompileQueue.js"
import { queueShare } from "../../src/internal/cluster/owner.js"
import type { PartitionLocks } from "../../src/internal/cluster/partitionLocks.js"
import { describeMove, type PartitionMoves, type PreviousOwner } from "../../src/internal/cluster/partitionMoves.js"
import { type LocalPartitions, makePartitionSlots } from "../../src/internal/cluster/partitionSlots.js"
import { captureLogs } from "../support/utils.js"

/** Locks, owners' rows and assignments shared by the runners of one test. */
const makeWorld = () => {
  const holders = new Map<number, string>()
  const owners = new Map<number, PreviousOwner>()
  const assignedTo = new Map<number, string>()
  const runner = (name: string) => {
    const locks: PartitionLocks = {
      tryAcquire: (p) => Effect.sync(() => holders.get(p) === undefined ? (holders.set(p, name), true) : holders.get(p) === name),
      release: (p) => Effect.sync(() => void (holders.get(p) === name && holders.delete(p))),
      held: Effect.sync(() => new Set(Array.from(holders).filter(([, h]) => h === name).map(([p]) => p))),
      ensure: (p) => Effect.sync(() => holders.get(p) === undefined ? (holders.set(p, name), true) : holders.get(p) === name)
    }
    const moves: PartitionMoves = {
      runner: name,
      taken: (p) =>
        Effect.sync(() => {
          const previous = owners.get(p)
          owners.set(p, { runner: name, left: null })
          return previous
        }),
      left: (p, why) => Effect.sync(() => void (owners.get(p)?.runner === name && owners.set(p, { runner: name, left: why })))
    }
    const local: LocalPartitions = new Map()
    const slots = makePartitionSlots({
      partitions: 2,
      locks,
      isAssigned: (p) => assignedTo.get(p) === name,
      local,
      handoverTimeout: Duration.seconds(1),
      moves,
      build: () => Effect.succeed({ queue: {} as CompileQueueService, closeGate: () => Effect.succeed(true) })
    })
    /** As a SIGKILL: nothing handed over, the locks gone with the connection. */
    const die = () => {
      for (const [p, holder] of holders) if (holder === name) holders.delete(p)
    }
    return { slots, die }
  }
  return { assignedTo, runner }
}

const infoLines = (logs: ReadonlyArray<{ level: string; message: string }>) =>
  logs.filter((log) => log.level === "INFO").map((log) => log.message)

describe("partition moves", () => {
  it.effect("each move is logged once by the new owner: from, to, why; the first owner only at debug level", () => {
    const { layer, logs } = captureLogs()
    return Effect.gen(function*() {
      const world = makeWorld()
      const a = world.runner("10.0.0.1:7000")
      const b = world.runner("10.0.0.2:7000")
      const c = world.runner("10.0.0.3:7000")
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
      // a dies: its partition 0 goes to c, which learns that a never handed it over.
      a.die()
      world.assignedTo.set(0, "10.0.0.3:7000")
      for (let pass = 0; pass < 3; pass++) yield* c.slots.reconcile
      // b stops: partition 1 goes to c.
      yield* b.slots.stopAll
      world.assignedTo.set(1, "10.0.0.3:7000")
      for (let pass = 0; pass < 3; pass++) yield* c.slots.reconcile
      expect(infoLines(logs).slice(1)).toEqual([
        "partition 0 moved: 10.0.0.1:7000 → 10.0.0.3:7000 (10.0.0.1:7000 did not hand it over: it died or lost Postgres)",
        "partition 1 moved: 10.0.0.2:7000 → 10.0.0.3:7000 (10.0.0.2:7000 stopped)"
      ])
      expect(logs.filter((log) => log.level === "DEBUG" && /first owned by/.test(log.message))).toHaveLength(2)
    }).pipe(Effect.provide(layer), Logger.withMinimumLogLevel(LogLevel.Debug))
  })

  it("describes a lost lock and a runner taking back what it had before a restart", () => {
    expect(describeMove(5, { runner: "a:1", left: "lock lost" }, "b:1").message)
      .toBe("partition 5 moved: a:1 → b:1 (a:1 lost the partition's lock)")
    expect(describeMove(5, { runner: "a:1", left: null }, "a:1")).toEqual({
      level: "info",
      message: "partition 5 moved: a:1 → a:1 (a:1 did not hand it over: it died or lost Postgres)"
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
