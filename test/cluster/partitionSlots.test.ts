/**
 * Cluster mode's partition slots without a cluster: two runners over one lease table in memory (expiries by the
 * TestClock), the shard assignment a plain variable. A partition never runs on both at once — also when a start
 * outlives its assignment (the @effect/cluster 0.60 race the slots exist for) — a hand-over closes the old queue
 * before the new one builds, and a runner that cannot prove its lease pauses, resumes, or is cut off.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Fiber, TestClock } from "effect"
import type { CompileQueueService } from "../../src/CompileQueue.js"
import { LEASE_MILLIS, makePartitionLeases, SAFETY_MARGIN_MILLIS } from "../../src/internal/cluster/partitionLeases.js"
import { LocalPartitions, makePartitionSlots } from "../../src/internal/cluster/partitionSlots.js"
import { memoryLeaseRows } from "../support/memoryLeases.js"

/** The world of one test: who the cluster assigns each partition to, the lease table, and what happened in order. */
const makeWorld = () => {
  const assignedTo = new Map<number, string>()
  const table = memoryLeaseRows()
  const events: Array<string> = []
  const running = new Map<number, Set<string>>()
  const runner = (name: string, options: { readonly buildGate?: Deferred.Deferred<void>; readonly failBuild?: boolean } = {}) =>
    Effect.gen(function*() {
      const leases = yield* makePartitionLeases({ rows: table.rows, runner: name, holder: name })
      const local = new LocalPartitions()
      local.validWhile(leases.isValid)
      const gateTimeouts: Array<number> = []
      const epochs: Array<number> = []
      const slots = makePartitionSlots({
        partitions: 4,
        leases,
        isAssigned: (partition) => assignedTo.get(partition) === name,
        local,
        handoverTimeout: Duration.seconds(5),
        build: (partition, epoch) =>
          Effect.gen(function*() {
            if (options.buildGate !== undefined) yield* Deferred.await(options.buildGate)
            if (options.failBuild === true) return yield* Effect.fail("restore failed")
            epochs.push(epoch)
            const here = running.get(partition) ?? new Set()
            here.add(name)
            running.set(partition, here)
            events.push(`${name} runs ${partition}${here.size > 1 ? " (TWICE)" : ""}`)
            yield* Effect.addFinalizer(() =>
              Effect.sync(() => {
                here.delete(name)
                events.push(`${name} flushed ${partition}`)
              })
            )
            return {
              // The slots never call the queue; the router does.
              queue: { runner: name } as unknown as CompileQueueService,
              closeGate: (timeout: Duration.DurationInput) =>
                Effect.sync(() => {
                  gateTimeouts.push(Duration.toMillis(timeout))
                  return true
                }),
              sendOnUnstored: Effect.sync(() => void events.push(`${name} sent on ${partition}`))
            }
          })
      })
      return { slots, local, leases, gateTimeouts, epochs }
    })
  const holderNow = (partition: number) => Effect.map(Clock.currentTimeMillis, (now) => table.holderAt(partition, now))
  return { assignedTo, table, events, runner, holderNow }
}

describe("partition slots", () => {
  it.effect("a partition runs only where it is assigned and its lease is free", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = yield* world.runner("a")
      expect(yield* a.slots.start(0)).toBeUndefined()
      world.assignedTo.set(0, "a")
      const queue = yield* a.slots.start(0)
      expect(queue).toBeDefined()
      expect(a.local.get(0)).toBe(queue)
      expect(yield* world.holderNow(0)).toBe("a")
      // Started again: the same run.
      expect(yield* a.slots.start(0)).toBe(queue)
      expect(world.events).toEqual(["a runs 0"])
    }))

  it.effect("a hand-over flushes the old owner's queue and releases the lease before the new owner builds", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = yield* world.runner("a")
      const b = yield* world.runner("b")
      world.assignedTo.set(1, "a")
      yield* a.slots.reconcile
      world.assignedTo.set(1, "b")
      // The new owner is asked first: the lease is still a's, so b does not start.
      expect(yield* b.slots.start(1)).toBeUndefined()
      yield* a.slots.reconcile
      expect(a.local.has(1)).toBe(false)
      expect(a.gateTimeouts).toEqual([5000])
      yield* b.slots.reconcile
      expect(b.local.has(1)).toBe(true)
      expect(world.events).toEqual(["a runs 1", "a flushed 1", "a sent on 1", "b runs 1"])
      // Every take increases the epoch.
      expect([...a.epochs, ...b.epochs]).toEqual([1, 2])
      expect(world.table.row(1).left).toBeNull()
    }))

  it.effect("a start that outlives its assignment runs, is stopped at the next reconcile, and the new owner waits for it", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const slow = yield* Deferred.make<void>()
      const a = yield* world.runner("a", { buildGate: slow })
      const b = yield* world.runner("b")
      world.assignedTo.set(2, "a")
      const starting = yield* Effect.fork(a.slots.start(2))
      yield* Effect.yieldNow()
      // The shard moves while a restores: b holds the shard now, but not the partition's lease.
      world.assignedTo.set(2, "b")
      expect(yield* b.slots.start(2)).toBeUndefined()
      yield* Deferred.succeed(slow, undefined)
      expect(yield* Fiber.join(starting)).toBeDefined()
      expect(yield* b.slots.start(2)).toBeUndefined()
      yield* a.slots.reconcile
      yield* b.slots.reconcile
      expect(world.events).toEqual(["a runs 2", "a flushed 2", "a sent on 2", "b runs 2"])
    }))

  it.effect("a lease not renewed in time pauses the partition before Postgres can let another runner take it", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = yield* world.runner("a")
      world.assignedTo.set(0, "a")
      yield* a.slots.reconcile
      // Just before the safety margin: still a's to act on.
      yield* TestClock.adjust(LEASE_MILLIS - SAFETY_MARGIN_MILLIS - 1)
      expect(a.local.get(0)).toBeDefined()
      yield* TestClock.adjust(1)
      // Paused: not answered here, but still running (its lease is a's until Postgres's expiry, 1 s later).
      expect(a.local.get(0)).toBeUndefined()
      expect(a.local.running(0)).toBeDefined()
      expect(yield* world.holderNow(0)).toBe("a")
      // A renewal that proves it again resumes it: nothing stopped.
      expect(yield* a.leases.renew).toEqual([])
      expect(a.local.get(0)).toBeDefined()
      expect(a.gateTimeouts).toEqual([])
    }))

  it.effect("a runner whose lease another runner took meanwhile is cut off at once and sends its counts on", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = yield* world.runner("a")
      const b = yield* world.runner("b")
      world.assignedTo.set(0, "a")
      world.assignedTo.set(3, "a")
      yield* a.slots.reconcile
      // a is frozen past its lease; the cluster gives the partitions to b, which takes the expired leases.
      yield* TestClock.adjust(LEASE_MILLIS)
      world.assignedTo.set(0, "b")
      world.assignedTo.set(3, "b")
      yield* b.slots.reconcile
      // a's queues still exist (it was frozen: it has not looked yet), but paused: nothing is answered or started there.
      expect(b.local.get(0)).toBeDefined()
      expect(a.local.get(0)).toBeUndefined()
      expect(a.leases.isValid(3)).toBe(false)
      // a resumes: its renewal finds the leases gone; its stale epoch no longer passes the fence.
      expect(yield* a.leases.fence(0, 1, 1)).toBe(false)
      const lost = yield* a.leases.renew
      expect(lost).toEqual([{ partition: 0, epoch: 1 }, { partition: 3, epoch: 1 }])
      yield* Effect.forEach(lost, ({ epoch, partition }) => a.slots.lost(partition, epoch), { discard: true })
      // The hand-on is not waited for (it goes through the cluster): it runs once this fiber yields.
      yield* Effect.yieldNow()
      expect(a.gateTimeouts).toEqual([0, 0])
      expect(a.local.running(0)).toBeUndefined()
      expect(world.events.filter((event) => event.startsWith("a sent on")).sort()).toEqual(["a sent on 0", "a sent on 3"])
      // Its release changes nothing: the rows are b's, under a higher epoch.
      expect(yield* world.holderNow(0)).toBe("b")
      expect(world.table.row(0).epoch).toBe(2)
    }))

  it.effect("a loss reported for an epoch that is over leaves the run of the next epoch alone", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = yield* world.runner("a")
      world.assignedTo.set(0, "a")
      yield* a.slots.reconcile
      yield* a.slots.stop(0, "reassigned")
      yield* a.slots.reconcile
      expect(a.epochs).toEqual([1, 2])
      // A late report about epoch 1 (a renewal sent before the partition came back here under epoch 2).
      yield* a.slots.lost(0, 1)
      expect(a.local.get(0)).toBeDefined()
      expect(a.gateTimeouts).toEqual([5000])
    }))

  it.effect("a renewal that fails (Postgres unreachable) stops nothing", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = yield* world.runner("a")
      world.assignedTo.set(0, "a")
      yield* a.slots.reconcile
      world.table.unreachable = true
      expect((yield* Effect.either(a.leases.renew))._tag).toBe("Left")
      yield* a.slots.reconcile
      expect(a.gateTimeouts).toEqual([])
      expect(a.local.running(0)).toBeDefined()
    }))

  it.effect("a failed restore releases the lease and leaves the partition not running", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = yield* world.runner("a", { failBuild: true })
      world.assignedTo.set(0, "a")
      expect(yield* a.slots.start(0)).toBeUndefined()
      expect(yield* world.holderNow(0)).toBeUndefined()
      expect(a.local.running(0)).toBeUndefined()
    }))

  it.effect("stopAll hands every running partition over", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = yield* world.runner("a")
      for (const partition of [0, 1, 2, 3]) world.assignedTo.set(partition, "a")
      yield* a.slots.reconcile
      yield* a.slots.stopAll
      for (const partition of [0, 1, 2, 3]) expect(yield* world.holderNow(partition)).toBeUndefined()
      expect(world.table.row(2).left).toBe("stopping")
      expect(world.events.filter((event) => event.includes("flushed"))).toHaveLength(4)
    }))
})
