/**
 * Freshness you can read: the ages of the banks' oldest uncompiled memories (largest, p50, p95) with the banks
 * closest to their deadline and the freshness gauges, and a bank's next compile — which rule fires when, or what
 * holds it. Under TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Effect, Metric, Option, Queue, TestClock } from "effect"
import { CompileMetrics, CompileQueue, CompileResult } from "../../src/index.js"
import { queueLayer, retain, TestEngine } from "../support/utils.js"

const freshnessOf = Effect.flatMap(CompileQueue, (queue) => queue.freshness!)
const nextOf = (bankId: string) =>
  Effect.flatMap(CompileQueue, (queue) => queue.nextCompile!(bankId)).pipe(Effect.map(Option.getOrThrow))
const seconds = (s: number) => TestClock.adjust(`${s} seconds`)
const millis = (time: DateTime.Utc | null) => time === null ? null : DateTime.toEpochMillis(time)

describe("CompileQueue.freshness", () => {
  it.effect("ages of the oldest uncompiled memories: largest, p50, p95; deadlines closest first; the gauges", () =>
    Effect.gen(function*() {
      const engine = yield* TestEngine
      yield* engine.hold
      expect((yield* freshnessOf).banksWaiting).toBe(0)
      yield* retain("a", 1)
      yield* seconds(10)
      yield* retain("b", 2)
      yield* seconds(10)
      yield* retain("c", 1)
      yield* retain("a", 1) // a's oldest memory stays the first
      yield* seconds(10)
      const now = yield* freshnessOf
      expect(now).toMatchObject({ banksWaiting: 3, oldestSeconds: 30, p50Seconds: 20, p95Seconds: 30, overdue: 0 })
      expect(now.closestToDeadline.map((b) => [b.bankId, b.secondsLeft])).toEqual([["a", 30], ["b", 40], ["c", 50]])
      expect((yield* Metric.value(CompileMetrics.oldestMemoryAge)).value).toBe(30)
      expect((yield* Metric.value(CompileMetrics.memoryAgeP50)).value).toBe(20)
      // a's deadline (60 s) queues it for reason deadline and it runs (held); b's comes due while a runs
      yield* seconds(40)
      const later = yield* freshnessOf
      expect(later).toMatchObject({ banksWaiting: 3, oldestSeconds: 70, overdue: 2 })
      expect(later.closestToDeadline.map((b) => [b.bankId, b.status, b.secondsLeft])).toEqual([
        ["a", "running", -10],
        ["b", "pending", 0],
        ["c", "idle", 10]
      ])
      expect(later.lanes).toEqual({ urgent: 0, deadline: 1, ordinary: 0 })
      expect((yield* Metric.value(CompileMetrics.banksOverdue)).value).toBe(2)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 100, maxWaitSeconds: 60 } }))))

  it.effect("p50 and p95 are the nearest ranks over the banks, the same as a sort gives", () =>
    Effect.gen(function*() {
      // 1,000 banks, bank n retained (n · 7919 mod 1000) seconds in: ages in no order.
      const offsets = Array.from({ length: 1000 }, (_, n) => (n * 7919) % 1000)
      const order = offsets.map((offset, n) => ({ offset, n })).sort((a, b) => a.offset - b.offset)
      let at = 0
      for (const { n, offset } of order) {
        yield* seconds(offset - at)
        at = offset
        yield* retain(`bank-${n}`, 1)
      }
      yield* seconds(1000 - at)
      const ages = offsets.map((offset) => 1000 - offset).sort((a, b) => a - b)
      const nearest = (p: number) => ages[Math.ceil(p * ages.length) - 1]
      expect(yield* freshnessOf).toMatchObject({
        banksWaiting: 1000,
        oldestSeconds: ages[999],
        p50Seconds: nearest(0.5),
        p95Seconds: nearest(0.95)
      })
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 100 } }))))
})

describe("CompileQueue.nextCompile", () => {
  it.effect("an idle bank: the first rule to fire and the others; unknown banks are none", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      expect(yield* queue.nextCompile!("nobody")).toEqual(Option.none())
      const start = DateTime.toEpochMillis(yield* DateTime.now)
      yield* retain("a", 3)
      yield* queue.notifyForget("a", 1)
      const next = yield* nextOf("a")
      expect(next.state).toBe("scheduled")
      expect(next.next?.rule).toBe("deadline")
      expect(millis(next.next!.at)).toBe(start + 60_000)
      expect(next.rules.map((r) => [r.rule, millis(r.at), r.moreNeeded])).toEqual([
        ["size", null, 7],
        ["staleness", start + 7 * 86_400_000, 7],
        ["deadline", start + 60_000, null],
        ["forget", null, 1]
      ])
      expect(next.message).toBe(`next: deadline at ${DateTime.formatIso(next.next!.at!)}, or size after 7 more memories`)
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 10, maxWaitSeconds: 60, forgetThreshold: 2 } }))))

  it.effect("running, queued with its place, disabled", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      yield* engine.hold
      yield* retain("first", 1)
      expect(yield* Queue.take(engine.started)).toBe("first")
      yield* retain("second", 1)
      yield* retain("third", 1)
      yield* queue.compileNow("urgent")
      expect(yield* nextOf("first")).toMatchObject({ state: "running", reason: "size" })
      expect(yield* nextOf("urgent")).toMatchObject({ state: "queued", reason: "manual", place: 1 })
      expect(yield* nextOf("third")).toMatchObject({ state: "queued", reason: "size", place: 3 })
      yield* queue.setPolicy("off", { enabled: false })
      yield* retain("off", 5)
      expect(yield* nextOf("off")).toMatchObject({ state: "disabled", reason: null })
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 1 } }))))

  it.effect("held for the spent global budget until it opens", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const engine = yield* TestEngine
      engine.behavior = (bankId) => Effect.succeed(new CompileResult({ bankId, tokensUsed: 150 }))
      yield* retain("a", 1)
      yield* queue.drain()
      yield* retain("b", 1)
      const next = yield* nextOf("b")
      expect(next.state).toBe("waiting_for_budget")
      expect(next.until).not.toBeNull()
    }).pipe(Effect.provide(queueLayer({ config: { sizeThreshold: 1 }, budget: { tokens: 100, period: "1 hour" } }))))
})
