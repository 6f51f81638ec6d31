/**
 * Cluster mode's wire contract without a cluster: `partitionOf` is MD5's first byte (what Postgres computes for the
 * stored column) for every id, ASCII or not, whatever its length, remembered within a bound; a `Write`'s counts
 * survive the wire as they were, and what is not counts on either side is refused.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { createHash } from "node:crypto"
import {
  Counts,
  hashPartition,
  PARTITIONS,
  PartitionMemo,
  partitionOf
} from "../../src/internal/cluster/protocol.js"

const reference = (id: string): number => createHash("md5").update(id).digest()[0]!

/** A string of `length` printable ASCII characters, different for each `variant`. */
const asciiId = (length: number, variant: number): string =>
  Array.from({ length }, (_, i) => String.fromCharCode(32 + ((i * 7 + length * 13 + variant * 31) % 95))).join("")

describe("partitionOf", () => {
  it("is the first byte of MD5 modulo 64 for ASCII ids of every length across MD5's block boundaries", () => {
    for (let length = 0; length <= 300; length++) {
      for (let variant = 0; variant < 8; variant++) {
        const id = asciiId(length, variant)
        expect(hashPartition(id)).toBe(reference(id) & (PARTITIONS - 1))
        expect(partitionOf(id)).toBe(reference(id) & (PARTITIONS - 1))
      }
    }
  })

  it("hashes the UTF-8 bytes of an id with other characters (node:crypto)", () => {
    for (const id of ["bänk", "銀行-1", "emoji-🙂", "a\u0080b", "\u00ff"]) {
      expect(hashPartition(id)).toBe(reference(id) & (PARTITIONS - 1))
      expect(partitionOf(id)).toBe(reference(id) & (PARTITIONS - 1))
    }
  })

  it("never changes: fixed ids keep their partitions", () => {
    // Pinned (MD5's first byte & 63, as Postgres computes it): a bank's partition is stored with it.
    expect(["bench-0", "bank-1", "a", "", "tenant:42/agent.7"].map(partitionOf)).toEqual([19, 51, 12, 20, 24])
  })
})

describe("PartitionMemo", () => {
  it("answers as the hash does, and holds at most its limit of ids however many banks it sees", () => {
    const memo = new PartitionMemo(100)
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 1000; i++) {
        const id = `bank-${i}`
        expect(memo.of(id)).toBe(reference(id) & (PARTITIONS - 1))
        expect(memo.size).toBeLessThanOrEqual(100)
      }
    }
  })

  it("remembers the banks it saw last", () => {
    const memo = new PartitionMemo(10)
    for (let i = 0; i < 25; i++) memo.of(`bank-${i}`)
    expect(memo.size).toBe(5)
    for (let i = 20; i < 25; i++) memo.of(`bank-${i}`)
    expect(memo.size).toBe(5)
  })
})

describe("Counts", () => {
  const encode = Schema.encodeUnknownEither(Counts)
  const decode = Schema.decodeUnknownEither(Counts)

  it("travels as two flat arrays and comes back as the same pairs", () => {
    const pairs = [["b-1", 1], ["b-2", 3], ["b-3", 9007199254740991]] as const
    const wire = Either.getOrThrow(encode(pairs))
    expect(wire).toEqual({ ids: ["b-1", "b-2", "b-3"], counts: [1, 3, 9007199254740991] })
    expect(Either.getOrThrow(decode(wire))).toEqual(pairs)
    expect(Either.getOrThrow(decode(Either.getOrThrow(encode([]))))).toEqual([])
  })

  it("refuses what is not counts, on either side", () => {
    expect(Either.isLeft(decode({ ids: ["b-1"], counts: [] }))).toBe(true)
    expect(Either.isLeft(decode({ ids: [1], counts: [1] }))).toBe(true)
    expect(Either.isLeft(decode({ ids: ["b-1"], counts: ["1"] }))).toBe(true)
    expect(Either.isLeft(decode([["b-1", 1]]))).toBe(true)
    expect(Either.isLeft(encode([["b-1"]]))).toBe(true)
    expect(Either.isLeft(encode([["b-1", "1"]]))).toBe(true)
  })
})
