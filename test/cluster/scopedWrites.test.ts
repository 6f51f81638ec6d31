/**
 * Scoped writes on their way from a router to the owner of their bank's partition: the `Write` payload's `scoped`
 * field survives the wire, and the owner counts each write with its scopes (refusing banks past its maximum).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { CompileQueue } from "../../src/index.js"
import { countScoped, ScopedWrites, scopedWrite } from "../../src/internal/cluster/scopedWrites.js"
import { PartitionEntity } from "../../src/internal/cluster/protocol.js"
import { queueLayer } from "../support/utils.js"

describe("scoped writes in cluster mode", () => {
  it("the Write payload carries them, and stays as it was without any", () => {
    const write = PartitionEntity.protocol.requests.get("Write")!
    const payload = write.payloadSchema as unknown as Schema.Schema<unknown, unknown>
    const scoped = [scopedWrite(false, "b-1", { count: 2, scopes: ["page-a"] }), scopedWrite(true, "b-2", { scopes: ["x"] })]
    const full = { retains: [["b-3", 1]], forgets: [], sentAt: 1, scoped }
    const wire = JSON.parse(JSON.stringify(Schema.encodeSync(payload)(full)))
    expect(Schema.decodeUnknownSync(payload)(wire)).toEqual(full)
    const plain = { retains: [["b-3", 1]], forgets: [], sentAt: 1 }
    expect(Schema.decodeUnknownSync(payload)(JSON.parse(JSON.stringify(Schema.encodeSync(payload)(plain))))).toEqual(plain)
    expect(Schema.decodeUnknownSync(Schema.Struct({ scoped: ScopedWrites }))({})).toEqual({})
  })

  it.effect("the owner counts each with its scopes and names the banks it refused", () =>
    Effect.gen(function*() {
      const queue = yield* CompileQueue
      const refused: Array<string> = []
      countScoped(queue, [
        scopedWrite(false, "b-1", { count: 2, scopes: ["page-a"] }),
        scopedWrite(true, "b-1", { scopes: ["page-b"] }),
        scopedWrite(false, "b-2", { scopes: ["page-c"] })
      ], refused)
      expect(refused).toEqual(["b-2"])
      const state = Option.getOrThrow(yield* queue.bankState("b-1"))
      expect(state.memoriesSinceLastCompile).toBe(2)
      expect(state.dirtyScopes).toEqual({
        all: false,
        scopes: [{ scope: "page-a", memories: 2, forgets: 0 }, { scope: "page-b", memories: 0, forgets: 1 }]
      })
      expect(Option.isNone(yield* queue.bankState("b-2"))).toBe(true)
    }).pipe(Effect.provide(queueLayer({ maxBanks: 1, config: { sizeThreshold: 100, forgetThreshold: 100 } }))))
})
