/**
 * Cluster mode's wire contract: how a bank id maps to one of the fixed partitions, and the partition entity's RPCs
 * (every runner hosts the entities of the shards it owns; every runner's router sends to them).
 *
 * @internal
 */
import { ClusterSchema, Entity } from "@effect/cluster"
import { Rpc } from "@effect/rpc"
import { Schema } from "effect"
import * as crypto from "node:crypto"
import { BankCompileState, BankStatus } from "../../BankCompileState.js"
import { BankLimitError } from "../../BankLimit.js"
import { BankPolicy, BankPolicyError } from "../../BankPolicy.js"
import { CompileBudgetState } from "../../CompileBudget.js"
import { CompileOutcome, CompileRecord, RunningCompile } from "../../CompileHistory.js"
import { BankStoreError } from "../../BankStateStore.js"
import { CompileTriggerConfig } from "../../CompileTriggerConfig.js"
import { ScopedWrites } from "./scopedWrites.js"
import { StoreHealth } from "../../StoreHealth.js"

/** Partitions of the bank space: the same on every runner, forever (a bank's partition is stored with it). */
export const PARTITIONS = 64

/**
 * The bank's partition: the first byte of the MD5 of its UTF-8 id, modulo 64. Postgres computes the same
 * (`get_byte(decode(md5(bank_id), 'hex'), 0) & 63`) for the stored column, so the two can never disagree. Remembered
 * (`PartitionMemo`): a runner sees the same banks again and again, and hashing an id costs more than counting it.
 */
export const partitionOf = (bankId: string): number => memo.of(bankId)

/** The partition as hashed, not remembered: `node:crypto`'s one-shot MD5 (hex: cheaper to get than a Buffer). */
export const hashPartition = (bankId: string): number =>
  Number.parseInt(md5Hex(bankId).slice(0, 2), 16) & (PARTITIONS - 1)

const md5Hex: (text: string) => string = typeof crypto.hash === "function"
  ? (text) => crypto.hash("md5", text, "hex")
  : (text) => crypto.createHash("md5").update(text).digest("hex")

/** Ids remembered at most: about 5 MB at 64 characters an id; a runner writing to more banks hashes some again. */
export const MEMO_LIMIT = 65_536

/**
 * Bank id → partition, bounded: once full it starts over (cheaper than evicting one by one, and the banks written
 * since come back within one batch). A million banks cost a hash per write, as without it, not 100 MB of map.
 */
export class PartitionMemo {
  private partitions = new Map<string, number>()

  constructor(private readonly limit: number = MEMO_LIMIT) {}

  of(bankId: string): number {
    let p = this.partitions.get(bankId)
    if (p === undefined) {
      p = hashPartition(bankId)
      if (this.partitions.size >= this.limit) this.partitions = new Map()
      this.partitions.set(bankId, p)
    }
    return p
  }

  get size(): number {
    return this.partitions.size
  }
}

const memo = new PartitionMemo()

/** The SQL expression of `partitionOf` over the `bank_id` column. */
export const PARTITION_SQL = `(get_byte(decode(md5(bank_id), 'hex'), 0) & ${PARTITIONS - 1})`

/** A `Write`'s counts as its handler sees them: (bank id, count) pairs. */
type CountPairs = ReadonlyArray<readonly [string, number]>

/** The same counts on the wire: the ids and their counts as two arrays of the same length. */
interface PackedCounts {
  readonly ids: ReadonlyArray<string>
  readonly counts: ReadonlyArray<number>
}

const isCountPairs = (u: unknown): u is CountPairs => {
  if (!Array.isArray(u)) return false
  for (const pair of u) {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "number") {
      return false
    }
  }
  return true
}

const isPackedCounts = (u: unknown): u is PackedCounts => {
  if (typeof u !== "object" || u === null) return false
  const { counts, ids } = u as { readonly ids?: unknown; readonly counts?: unknown }
  if (!Array.isArray(ids) || !Array.isArray(counts) || ids.length !== counts.length) return false
  for (let i = 0; i < ids.length; i++) {
    if (typeof ids[i] !== "string" || typeof counts[i] !== "number") return false
  }
  return true
}

/**
 * A `Write`'s counts: pairs for the handler, two flat arrays on the wire. Checked by a plain loop each way: a
 * `Schema.Array(Schema.Tuple(…))` validated and transformed every pair through the Schema interpreter (about 1.6 µs a
 * pair each way), and msgpack wrote an array header per pair.
 */
export const Counts: Schema.Schema<CountPairs, PackedCounts> = Schema.transform(
  Schema.declare(isPackedCounts, { identifier: "PackedCounts" }),
  Schema.declare(isCountPairs, { identifier: "CountPairs" }),
  {
    strict: true,
    decode: ({ counts, ids }) => ids.map((id, i) => [id, counts[i]!] as const),
    encode: (pairs) => ({ ids: pairs.map((pair) => pair[0]), counts: pairs.map((pair) => pair[1]) })
  }
)
const BankIdPayload = { bankId: Schema.String }

/** The queue's counts; `capacity` null when unbounded. */
export const PartitionStats = Schema.Struct({
  banks: Schema.Number,
  pending: Schema.Number,
  running: Schema.Number,
  queued: Schema.Number,
  capacity: Schema.NullOr(Schema.Number),
  /** Banks deferred by their own token budget. */
  deferred: Schema.Number,
  /** The partition queue's write-behind. */
  store: Schema.NullOr(StoreHealth)
})

export const PartitionPage = Schema.Struct({
  banks: Schema.Array(BankCompileState),
  nextCursor: Schema.NullOr(Schema.String)
})

/**
 * The partition is no longer assigned to the runner a call reached (its shard moved while the call was on its way):
 * the router asks again, and the cluster sends the call to the new owner.
 */
export class PartitionMoved extends Schema.TaggedError<PartitionMoved>()("PartitionMoved", {
  partition: Schema.Number
}) {}

/** What a runner answers a `Forward`. */
const Forwarded = Schema.Struct({
  /** Banks refused: new ones past their partition's maximum (the rest was counted). */
  refused: Schema.Array(Schema.String),
  /** The partitions this runner runs now. */
  running: Schema.Array(Schema.Number),
  /** The writes of the partitions it did not take (not running here, or taken over after `sentAt`). */
  notTaken: Schema.Struct({ retains: Counts, forgets: Counts, scoped: ScopedWrites })
})

/**
 * One entity per partition number, hosted by every runner's router; the cluster puts entity `n` on the runner that
 * holds partition `n`'s shard, so on that partition's owner. A router sends it, in one `Forward`, the writes of every
 * partition it takes that runner to run: the runner counts those of the partitions it runs, as its `Write` would
 * (`sentAt` as there: a copy sent before the partition's run here took its lease is not taken), and answers the rest,
 * which the sender then writes to their owners one partition at a time; and it answers the partitions it runs, which
 * is how the sender learns what travels together. One RPC per runner, where a `Write` per partition cost about as
 * much CPU each. Not persisted, like `Write`.
 */
export const RouterEntity = Entity.make("CompileTriggerRouter", [
  Rpc.make("Forward", {
    payload: { retains: Counts, forgets: Counts, sentAt: Schema.Number, scoped: ScopedWrites },
    success: Forwarded,
    error: BankStoreError
  })
]).annotate(ClusterSchema.ClientTracingEnabled, false)

/**
 * One entity per partition; its id is the partition number. Not persisted: a `Write` is answered once the owner's
 * queue counted it (and, when the runner acknowledges durably, once the owner's flush stored it: `BankStoreError`
 * when it could not), and the cluster re-sends it to the next owner when the runner it went to becomes unavailable.
 */
export const PartitionEntity = Entity.make("CompileTriggerPartition", [
  // Answers the banks it refused: new ones past the partition's `maxBanks` (the rest of the write is counted).
  // `sentAt`: when the router sent this copy (epoch ms). The cluster may deliver one message twice — to a runner cut
  // off while it was on its way (its socket sends what it held once the link is back) and, meanwhile, to the runner
  // that took the partition over; an owner refuses a copy sent before it took the partition (`PartitionMoved`: the
  // router sends a fresh copy), so only one of them counts.
  Rpc.make("Write", {
    payload: { retains: Counts, forgets: Counts, sentAt: Schema.Number, scoped: ScopedWrites },
    success: Schema.Array(Schema.String),
    error: Schema.Union(PartitionMoved, BankStoreError)
  }),
  Rpc.make("Ping", { error: PartitionMoved }),
  Rpc.make("BankState", { payload: BankIdPayload, success: Schema.NullOr(BankCompileState), error: PartitionMoved }),
  Rpc.make("SetPolicy", {
    payload: { bankId: Schema.String, policy: BankPolicy },
    error: Schema.Union(BankPolicyError, BankLimitError, PartitionMoved)
  }),
  Rpc.make("ClearPolicy", { payload: BankIdPayload, error: PartitionMoved }),
  Rpc.make("PolicyOf", { payload: BankIdPayload, success: Schema.NullOr(BankPolicy), error: PartitionMoved }),
  Rpc.make("ConfigFor", { payload: BankIdPayload, success: CompileTriggerConfig, error: PartitionMoved }),
  Rpc.make("CompileNow", {
    payload: { ...BankIdPayload, scopes: Schema.optional(Schema.Array(Schema.String)) },
    error: PartitionMoved
  }),
  Rpc.make("Stats", { success: PartitionStats, error: PartitionMoved }),
  Rpc.make("ListBanks", {
    payload: { status: Schema.NullOr(BankStatus), limit: Schema.Number, cursor: Schema.NullOr(Schema.String) },
    success: PartitionPage,
    error: PartitionMoved
  }),
  Rpc.make("Banks", {
    payload: { status: Schema.NullOr(BankStatus) },
    success: Schema.Array(Schema.String),
    error: PartitionMoved
  }),
  Rpc.make("State", { success: Schema.Array(BankCompileState), error: PartitionMoved }),
  Rpc.make("Sweep", { success: Schema.Number, error: PartitionMoved }),
  Rpc.make("Drain", { payload: { timeoutMillis: Schema.Number }, success: Schema.Boolean, error: PartitionMoved }),
  Rpc.make("Budget", { success: CompileBudgetState, error: PartitionMoved }),
  Rpc.make("RecentCompiles", {
    payload: { limit: Schema.Number, bankId: Schema.NullOr(Schema.String), outcome: Schema.NullOr(CompileOutcome) },
    success: Schema.Array(CompileRecord),
    error: PartitionMoved
  }),
  Rpc.make("RunningCompiles", {
    payload: { bankId: Schema.NullOr(Schema.String) },
    success: Schema.Array(RunningCompile),
    error: PartitionMoved
  })
]).annotate(ClusterSchema.ClientTracingEnabled, false) // a client span per routed retain batch costs more than the batch
