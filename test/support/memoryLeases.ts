/**
 * The lease table in memory, for the cluster's unit tests: rows with an expiry by the Effect `Clock` (the TestClock
 * in `it.effect`), shared by the runners of one test, and a switch that makes every call fail as with Postgres down.
 */
import { SqlError } from "@effect/sql/SqlError"
import { Clock, Effect } from "effect"
import { LEASE_MILLIS, type LeaseRows } from "../../src/internal/cluster/partitionLeases.js"
import type { LeaveReason } from "../../src/internal/cluster/partitionMoves.js"

export interface LeaseRow {
  runner: string | undefined
  holder: string | undefined
  epoch: number
  expiresAt: number
  left: LeaveReason | null
}

export const memoryLeaseRows = () => {
  const rows = new Map<number, LeaseRow>()
  /** `partition/epoch` → the last flush stored under it. */
  const flushes = new Map<string, number>()
  const control = { unreachable: false }
  const row = (partition: number): LeaseRow => {
    let found = rows.get(partition)
    if (found === undefined) {
      found = { runner: undefined, holder: undefined, epoch: 0, expiresAt: -Infinity, left: null }
      rows.set(partition, found)
    }
    return found
  }
  const reachable = <A>(f: (now: number) => A) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      control.unreachable ? Effect.fail(new SqlError({ message: "Postgres is unreachable" })) : Effect.sync(() => f(now)))
  const leaseRows: LeaseRows = {
    take: (partition, holder, runner) =>
      reachable((now) => {
        const lease = row(partition)
        if (lease.expiresAt > now) return undefined
        const previous = lease.runner === undefined ? undefined : { runner: lease.runner, left: lease.left }
        Object.assign(lease, { runner, holder, epoch: lease.epoch + 1, expiresAt: now + LEASE_MILLIS, left: null })
        return { epoch: lease.epoch, previous }
      }),
    renew: (holder, partitions) =>
      reachable((now) => {
        const epochs = new Map<number, number>()
        for (const partition of partitions) {
          const lease = row(partition)
          if (lease.holder !== holder) continue
          lease.expiresAt = now + LEASE_MILLIS
          epochs.set(partition, lease.epoch)
        }
        return epochs
      }),
    release: (partition, holder, epoch, why) =>
      reachable(() => {
        const lease = row(partition)
        if (lease.holder === holder && lease.epoch === epoch) Object.assign(lease, { expiresAt: -Infinity, left: why })
      }),
    fence: (partition, holder, epoch, flush) =>
      reachable(() => {
        const ours = row(partition).holder === holder && row(partition).epoch === epoch
        const key = `${partition}/${epoch}`
        if (ours) flushes.set(key, Math.max(flushes.get(key) ?? 0, flush))
        return ours
      }),
    flushedUnder: (partition, epoch) => reachable(() => flushes.get(`${partition}/${epoch}`) ?? 0)
  }
  /** The holder of the partition's lease now (undefined: nobody's, or expired). */
  const holderAt = (partition: number, now: number) => {
    const lease = rows.get(partition)
    return lease !== undefined && lease.expiresAt > now ? lease.holder : undefined
  }
  return Object.assign(control, { rows: leaseRows, holderAt, row })
}
