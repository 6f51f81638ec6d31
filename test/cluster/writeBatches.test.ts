/**
 * How the router's writes travel, without a cluster (the RPC clients are fakes): a destination's writes coalesce into
 * one send at a time, the next collecting meanwhile (or going once the one out stalled); routes learn from the answers
 * which partitions share a runner, and write what a runner did not take through the partitions' lanes; `Forward`
 * counts only the partitions running here whose run took its lease before the copy was sent.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Runtime, TestClock } from "effect"
import type { BankLimitError } from "../../src/BankLimit.js"
import type { CompileQueueService } from "../../src/CompileQueue.js"
import type { WriteOptions } from "../../src/DirtyScopes.js"
import { LocalPartitions } from "../../src/internal/cluster/partitionSlots.js"
import { partitionOf } from "../../src/internal/cluster/protocol.js"
import { Batcher, forwardHandler, makeLanes, makeRoutes } from "../../src/internal/cluster/writeBatches.js"
import type { WriteNotConfirmed } from "../../src/internal/runtime/writeAcks.js"

type Pairs = ReadonlyArray<readonly [string, number]>

/** Runs forked effects on the test's runtime (its TestClock). */
const forker = Effect.map(Effect.runtime<never>(), (runtime) => (effect: Effect.Effect<void>) => {
  Runtime.runFork(runtime)(effect)
})

/** Lets forked fibers run (they yield before they send). */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

/** Ends the current task: what comes next runs in another one (as another request's writes would). */
const nextTask = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** A bank id of partition `p`. */
const bankOf = (p: number, n = 0): string => {
  for (let i = 0; ; i++) {
    const id = `bank-${i}`
    if (partitionOf(id) === p && n-- === 0) return id
  }
}

describe("Batcher", () => {
  it.effect("sends what collected before it ran as one batch, and the writes taken meanwhile as the next", () =>
    Effect.gen(function*() {
      const fork = yield* forker
      const sent: Array<Pairs> = []
      const gate = yield* Deferred.make<void>()
      const batcher = new Batcher(
        (retains) =>
          Effect.sync(() => sent.push(retains)).pipe(Effect.zipRight(Deferred.await(gate)), Effect.as(["refused-1"])),
        fork
      )
      const first = batcher.add("retains", "a", 1)
      expect(batcher.add("retains", "a", 2)).toBe(first)
      batcher.add("retains", "b", 1)
      yield* settle
      const second = batcher.add("retains", "c", 1)
      expect(second).not.toBe(first)
      yield* settle
      expect(sent).toEqual([[["a", 3], ["b", 1]]])
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Deferred.await(first)).toEqual(["refused-1"])
      expect(yield* Deferred.await(second)).toEqual(["refused-1"])
      expect(sent).toEqual([[["a", 3], ["b", 1]], [["c", 1]]])
    }))

  it.effect("sends the next batch once the one out has stalled for a second, and never sends one twice", () =>
    Effect.gen(function*() {
      const fork = yield* forker
      const sent: Array<Pairs> = []
      const never = yield* Deferred.make<ReadonlyArray<string>, WriteNotConfirmed>()
      const batcher = new Batcher(
        (retains) => Effect.zipRight(Effect.sync(() => sent.push(retains)), Deferred.await(never)),
        fork
      )
      batcher.add("retains", "a", 1)
      yield* settle
      batcher.add("retains", "b", 1)
      yield* settle
      expect(sent.length).toBe(1)
      yield* TestClock.adjust(Duration.seconds(1))
      yield* settle
      expect(sent).toEqual([[["a", 1]], [["b", 1]]])
    }))

  it.effect("waits `linger` for company before a batch when the last one held the writes of more than one task", () =>
    Effect.gen(function*() {
      const fork = yield* forker
      const sent: Array<Pairs> = []
      let gate = yield* Deferred.make<void>()
      const batcher = new Batcher(
        (retains) => Effect.sync(() => sent.push(retains)).pipe(Effect.zipRight(Deferred.await(gate)), Effect.as([])),
        fork,
        Duration.millis(10)
      )
      // One task's writes go at once; while they are out, two tasks' writes collect in the next batch.
      batcher.add("retains", "a", 1)
      yield* settle
      expect(sent).toEqual([[["a", 1]]])
      batcher.add("retains", "b", 1)
      yield* nextTask
      batcher.add("retains", "c", 1)
      yield* Deferred.succeed(gate, undefined)
      yield* settle
      expect(sent).toEqual([[["a", 1]], [["b", 1], ["c", 1]]])
      // That batch had company: the next one waits for more (one task's writes this time) before it goes.
      gate = yield* Deferred.make<void>()
      yield* Deferred.succeed(gate, undefined)
      batcher.add("retains", "d", 1)
      yield* settle
      expect(sent.length).toBe(2)
      yield* TestClock.adjust(Duration.millis(9))
      yield* settle
      expect(sent.length).toBe(2)
      yield* TestClock.adjust(Duration.millis(1))
      yield* settle
      expect(sent[2]).toEqual([["d", 1]])
      // One task's writes: the next batch goes at once again.
      batcher.add("retains", "e", 1)
      yield* settle
      expect(sent[3]).toEqual([["e", 1]])
    }))
})

/** A fake `RouterEntity` client per router entity: records each `Forward` and answers with `answer`. */
const fakeRouters = (
  answer: (
    c: number,
    payload: { readonly retains: Pairs; readonly forgets: Pairs }
  ) => { refused: Array<string>; running: Array<number>; notTaken: { retains: Pairs; forgets: Pairs } }
) => {
  const forwards: Array<{ readonly c: number; readonly retains: Pairs }> = []
  const clientOf = (c: number) =>
    ({
      Forward: (payload: { readonly retains: Pairs; readonly forgets: Pairs; readonly sentAt: number }) =>
        Effect.sync(() => {
          forwards.push({ c, retains: payload.retains })
          return answer(c, payload)
        })
    }) as never
  return { clientOf, forwards }
}

/** Fake partition lanes' client: records each `Write` and refuses nothing. */
const fakeOwners = () => {
  const writes: Array<{ readonly p: number; readonly retains: Pairs; readonly scoped?: unknown }> = []
  const clientOf = (p: number) =>
    ({
      Write: (payload: { readonly retains: Pairs; readonly scoped?: unknown }) =>
        Effect.sync(() => {
          writes.push(payload.scoped === undefined ? { p, retains: payload.retains } : { p, retains: payload.retains, scoped: payload.scoped })
          return [] as Array<string>
        })
    }) as never
  return { clientOf, writes }
}

const nothing = { retains: [], forgets: [] }

describe("routes", () => {
  it.effect("send each partition on its own route until an answer names the partitions its runner runs", () =>
    Effect.gen(function*() {
      const fork = yield* forker
      const runner = [3, 5, 9]
      const routers = fakeRouters(() => ({ refused: [], running: runner, notTaken: nothing }))
      const owners = fakeOwners()
      const routes = makeRoutes(routers.clientOf, makeLanes(owners.clientOf, fork), fork)
      const ack3 = routes.add(3, "retains", bankOf(3), 1)
      const ack5 = routes.add(5, "retains", bankOf(5), 1)
      yield* Deferred.await(ack3)
      yield* Deferred.await(ack5)
      expect(routers.forwards.map((forward) => forward.c).sort()).toEqual([3, 5])
      // Learnt: 3, 5 and 9 share a runner, reached through one of their router entities.
      const acks = [3, 5, 9].map((p) => routes.add(p, "retains", bankOf(p, 1), 1))
      expect(new Set(acks).size).toBe(1)
      yield* Deferred.await(acks[0]!)
      expect(routers.forwards.length).toBe(3)
      expect(routers.forwards[2]!.retains.length).toBe(3)
      expect(owners.writes).toEqual([])
    }))

  it.effect("write what a runner did not take to the partitions' owners, and answer with every refusal", () =>
    Effect.gen(function*() {
      const fork = yield* forker
      const moved = bankOf(7)
      const routers = fakeRouters((_, payload) => ({
        refused: ["refused-here"],
        running: [],
        notTaken: { retains: payload.retains.filter(([id]) => id === moved), forgets: [] }
      }))
      const owners = fakeOwners()
      const routes = makeRoutes(routers.clientOf, makeLanes(owners.clientOf, fork), fork)
      const ack = routes.add(7, "retains", moved, 2)
      expect(yield* Deferred.await(ack)).toEqual(["refused-here"])
      expect(owners.writes).toEqual([{ p: 7, retains: [[moved, 2]] }])
    }))

  it.effect("fail a batch's writes when the runner does not answer, naming the partition", () =>
    Effect.gen(function*() {
      const fork = yield* forker
      const clientOf = () => ({ Forward: () => Effect.die("connection lost") }) as never
      const routes = makeRoutes(clientOf, makeLanes(fakeOwners().clientOf, fork), fork)
      const error = yield* Effect.flip(Deferred.await(routes.add(4, "retains", bankOf(4), 1)))
      expect(error.message).toMatch(/^the runner of partition 4 did not confirm the write/)
      expect(error.notStored).toBe(false)
    }))
})

/** A write as a fake queue notes it: its count, and the scopes it named. */
const written = (count: number | WriteOptions) =>
  typeof count === "number" ? `${count}` : `${count.count ?? 1} [${(count.scopes ?? []).join(",")}]`

/** A fake partition queue: what it counted, and whether it refuses new banks. */
const fakeQueue = (full = false) => {
  const counted: Array<string> = []
  const queue = {
    unsafeCheckRoom: (ids: ReadonlyArray<string>) => full ? ({ bankId: ids[0] } as BankLimitError) : undefined,
    unsafeNotifyRetain: (id: string, count: number | WriteOptions) => void counted.push(`retain ${id} ${written(count)}`),
    unsafeNotifyForget: (id: string, count: number | WriteOptions) => void counted.push(`forget ${id} ${written(count)}`),
    flush: Effect.void
  } as unknown as CompileQueueService
  return { queue, counted }
}

describe("Forward", () => {
  it.effect("counts the partitions running here and answers the others, and the copies sent before a takeover", () =>
    Effect.gen(function*() {
      const local = new LocalPartitions()
      const here = fakeQueue()
      const full = fakeQueue(true)
      local.set(1, here.queue)
      local.set(2, full.queue)
      local.set(3, fakeQueue().queue)
      const takenAt = (p: number) => p === 3 ? 2_000 : 0
      const handler = forwardHandler(local, takenAt, false)
      const [b1, b2, b3, b4] = [bankOf(1), bankOf(2), bankOf(3), bankOf(4)]
      const answer = yield* handler({
        payload: { retains: [[b1!, 2], [b2!, 1], [b3!, 1], [b4!, 5]], forgets: [[b1!, 1]], sentAt: 1_000 }
      })
      expect(here.counted).toEqual([`retain ${b1} 2`, `forget ${b1} 1`])
      expect(full.counted).toEqual([`retain ${b2} 1`])
      expect(answer).toEqual({
        refused: [b2],
        running: [1, 2, 3],
        notTaken: { retains: [[b3, 1], [b4, 5]], forgets: [] }
      })
    }))

  it.effect("counts the scoped writes of the partitions running here as they are, and answers the others back", () =>
    Effect.gen(function*() {
      const local = new LocalPartitions()
      const here = fakeQueue()
      local.set(1, here.queue)
      const [b1, b4] = [bankOf(1), bankOf(4)]
      const scoped = [
        { forget: false, bankId: b1!, count: 2, scopes: ["people/ada"] },
        { forget: true, bankId: b1!, count: 1, scopes: ["glossary"] },
        { forget: false, bankId: b4!, count: 3, scopes: ["projects"] }
      ]
      const answer = yield* forwardHandler(local, () => 0, false)({
        payload: { retains: [[b1!, 1]], forgets: [], sentAt: 1_000, scoped }
      })
      expect(here.counted).toEqual([`retain ${b1} 1`, `retain ${b1} 2 [people/ada]`, `forget ${b1} 1 [glossary]`])
      expect(answer.notTaken).toEqual({ retains: [], forgets: [], scoped: [scoped[2]] })
    }))

  it.effect("sends a route's scoped writes beside its counts, and what the runner did not take through the lanes", () =>
    Effect.gen(function*() {
      const fork = yield* forker
      const sent: Array<unknown> = []
      const b4 = bankOf(4)
      const write = { forget: false, bankId: b4!, count: 3, scopes: ["projects"] }
      const owners = fakeOwners()
      const clientOf = () => ({
        Forward: (payload: unknown) => {
          sent.push(payload)
          return Effect.succeed({ refused: [], running: [], notTaken: { retains: [], forgets: [], scoped: [write] } })
        }
      }) as never
      const lanes = makeLanes(owners.clientOf, fork)
      const routes = makeRoutes(clientOf, lanes, fork)
      yield* Deferred.await(routes.addScoped(4, write))
      expect(sent).toMatchObject([{ retains: [], forgets: [], scoped: [write] }])
      expect(owners.writes).toMatchObject([{ p: 4, scoped: [write] }])
    }))

  it.effect("leaves out a partition whose lease this runner cannot prove now", () =>
    Effect.gen(function*() {
      const local = new LocalPartitions()
      const paused = fakeQueue()
      local.set(1, paused.queue)
      local.validWhile(() => false)
      const b1 = bankOf(1)
      const answer = yield* forwardHandler(local, () => 0, false)({
        payload: { retains: [[b1, 1]], forgets: [], sentAt: 1_000 }
      })
      expect(paused.counted).toEqual([])
      expect(answer).toEqual({ refused: [], running: [], notTaken: { retains: [[b1, 1]], forgets: [] } })
    }))

  it.effect("answers once the queues here stored what they counted, in durable mode", () =>
    Effect.gen(function*() {
      const local = new LocalPartitions()
      const stored = yield* Deferred.make<void>()
      local.set(1, { ...fakeQueue().queue, flush: Deferred.await(stored) })
      const fiber = yield* Effect.fork(
        forwardHandler(local, () => 0, true)({ payload: { retains: [[bankOf(1), 1]], forgets: [], sentAt: 1 } })
      )
      yield* settle
      expect(fiber.unsafePoll()).toBeNull()
      yield* Deferred.succeed(stored, undefined)
      expect((yield* Fiber.join(fiber)).running).toEqual([1])
    }))
})
