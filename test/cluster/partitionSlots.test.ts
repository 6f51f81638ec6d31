/**
 * Cluster mode's partition slots without a cluster: two runners over shared in-memory partition locks, the shard
 * assignment a plain variable. A partition never runs on both at once — also when a start outlives its assignment
 * (the @effect/cluster 0.60 race the slots exist for) — and a hand-over closes the old queue before the new one builds.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber } from "effect"
import type { CompileQueueService } from "../../src/CompileQueue.js"
import { SqlError } from "@effect/sql/SqlError"
import type { PartitionLocks } from "../../src/internal/cluster/partitionLocks.js"
import { type LocalPartitions, makePartitionSlots } from "../../src/internal/cluster/partitionSlots.js"

/**
 * Locks shared by the runners of this file; `lose` drops a runner's locks as a dropped connection would, and while
 * `unreachable` every call fails as with Postgres down.
 */
const memoryLocks = (holders: Map<number, string>, runner: string) => {
  const control = { unreachable: false }
  const reachable = <A>(f: () => A) =>
    Effect.suspend(() => control.unreachable ? Effect.fail(new SqlError({ message: "unreachable" })) : Effect.sync(f))
  const locks: PartitionLocks = {
    tryAcquire: (partition) =>
      reachable(() => {
        const holder = holders.get(partition)
        if (holder !== undefined && holder !== runner) return false
        holders.set(partition, runner)
        return true
      }),
    release: (partition) =>
      reachable(() => {
        if (holders.get(partition) === runner) holders.delete(partition)
      }),
    held: reachable(() => new Set(Array.from(holders).filter(([, holder]) => holder === runner).map(([p]) => p))),
    ensure: (partition) =>
      reachable(() => {
        const holder = holders.get(partition)
        if (holder !== undefined) return holder === runner
        holders.set(partition, runner)
        return true
      })
  }
  return Object.assign(control, locks, {
    lose: () => {
      for (const [partition, holder] of holders) if (holder === runner) holders.delete(partition)
    }
  })
}

/** The world of one test: who the cluster assigns each partition to, the locks, and what happened in order. */
const makeWorld = () => {
  const assignedTo = new Map<number, string>()
  const holders = new Map<number, string>()
  const events: Array<string> = []
  const running = new Map<number, Set<string>>()
  const runner = (name: string, options: { readonly buildGate?: Deferred.Deferred<void>; readonly failBuild?: boolean } = {}) => {
    const local: LocalPartitions = new Map()
    const locks = memoryLocks(holders, name)
    const gateTimeouts: Array<number> = []
    const slots = makePartitionSlots({
      partitions: 4,
      locks,
      isAssigned: (partition) => assignedTo.get(partition) === name,
      local,
      handoverTimeout: Duration.seconds(5),
      build: (partition) =>
        Effect.gen(function*() {
          if (options.buildGate !== undefined) yield* Deferred.await(options.buildGate)
          if (options.failBuild === true) return yield* Effect.fail("restore failed")
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
              })
          }
        })
    })
    return { slots, local, locks, gateTimeouts }
  }
  return { assignedTo, holders, events, runner }
}

describe("partition slots", () => {
  it.effect("a partition runs only where it is assigned and its lock is free", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = world.runner("a")
      expect(yield* a.slots.start(0)).toBeUndefined()
      world.assignedTo.set(0, "a")
      const queue = yield* a.slots.start(0)
      expect(queue).toBeDefined()
      expect(a.local.get(0)).toBe(queue)
      expect(world.holders.get(0)).toBe("a")
      // Started again: the same run.
      expect(yield* a.slots.start(0)).toBe(queue)
      expect(world.events).toEqual(["a runs 0"])
    }))

  it.effect("a hand-over flushes the old owner's queue and frees the lock before the new owner builds", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = world.runner("a")
      const b = world.runner("b")
      world.assignedTo.set(1, "a")
      yield* a.slots.reconcile
      world.assignedTo.set(1, "b")
      // The new owner is asked first: the lock is still a's, so b does not start.
      expect(yield* b.slots.start(1)).toBeUndefined()
      yield* a.slots.reconcile
      expect(a.local.has(1)).toBe(false)
      expect(a.gateTimeouts).toEqual([5000])
      yield* b.slots.reconcile
      expect(b.local.has(1)).toBe(true)
      expect(world.events).toEqual(["a runs 1", "a flushed 1", "b runs 1"])
    }))

  it.effect("a start that outlives its assignment runs, is stopped at the next reconcile, and the new owner waits for it", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const slow = yield* Deferred.make<void>()
      const a = world.runner("a", { buildGate: slow })
      const b = world.runner("b")
      world.assignedTo.set(2, "a")
      const starting = yield* Effect.fork(a.slots.start(2))
      yield* Effect.yieldNow()
      // The shard moves while a restores: b holds the shard now, but not the partition's lock.
      world.assignedTo.set(2, "b")
      expect(yield* b.slots.start(2)).toBeUndefined()
      yield* Deferred.succeed(slow, undefined)
      expect(yield* Fiber.join(starting)).toBeDefined()
      expect(yield* b.slots.start(2)).toBeUndefined()
      yield* a.slots.reconcile
      yield* b.slots.reconcile
      expect(world.events).toEqual(["a runs 2", "a flushed 2", "b runs 2"])
    }))

  it.effect("a runner whose locks another runner took cuts its partitions off at once", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = world.runner("a")
      world.assignedTo.set(0, "a")
      world.assignedTo.set(3, "a")
      yield* a.slots.reconcile
      a.locks.lose()
      world.holders.set(0, "b")
      world.holders.set(3, "b")
      world.assignedTo.delete(0)
      world.assignedTo.delete(3)
      yield* a.slots.reconcile
      expect(a.gateTimeouts).toEqual([0, 0])
      expect(a.local.size).toBe(0)
    }))

  it.effect("a lock lost with its connection (a Postgres restart) and still free is taken again: nothing stops", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = world.runner("a")
      world.assignedTo.set(0, "a")
      world.assignedTo.set(3, "a")
      yield* a.slots.reconcile
      a.locks.lose()
      yield* a.slots.reconcile
      expect(a.gateTimeouts).toEqual([])
      expect(a.local.size).toBe(2)
      expect(world.holders.get(0)).toBe("a")
      expect(world.events).toEqual(["a runs 0", "a runs 3"])
    }))

  it.effect("a look at the locks that fails (Postgres unreachable) stops nothing", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = world.runner("a")
      world.assignedTo.set(0, "a")
      yield* a.slots.reconcile
      a.locks.lose()
      a.locks.unreachable = true
      yield* a.slots.reconcile
      expect(a.gateTimeouts).toEqual([])
      expect(a.local.size).toBe(1)
    }))

  it.effect("a failed restore frees the lock and leaves the partition not running", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = world.runner("a", { failBuild: true })
      world.assignedTo.set(0, "a")
      expect(yield* a.slots.start(0)).toBeUndefined()
      expect(world.holders.size).toBe(0)
      expect(a.local.size).toBe(0)
    }))

  it.effect("stopAll hands every running partition over", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const a = world.runner("a")
      for (const partition of [0, 1, 2, 3]) world.assignedTo.set(partition, "a")
      yield* a.slots.reconcile
      yield* a.slots.stopAll
      expect(world.holders.size).toBe(0)
      expect(world.events.filter((event) => event.includes("flushed"))).toHaveLength(4)
    }))
})
