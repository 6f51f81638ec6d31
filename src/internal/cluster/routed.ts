/**
 * How the router waits for an owner's answer to an RPC: a full mailbox, or a partition that moved while the call was
 * on its way, is asked again (the cluster resolves the owner anew), the whole bounded by `ROUTE_TIMEOUT`; the
 * cluster's own errors become defects.
 *
 * @internal
 */
import type { AlreadyProcessingMessage, MailboxFull, PersistenceError } from "@effect/cluster/ClusterError"
import { Duration, Effect, Schedule } from "effect"
import type { PartitionMoved } from "./protocol.js"

/** A write or read the owner has not answered in this long fails (503 for a write: it may or may not count). */
export const ROUTE_TIMEOUT = Duration.seconds(30)

const tagOf = (error: unknown): unknown => (error as { readonly _tag?: unknown } | null)?._tag

const isClusterError = (error: unknown): boolean => {
  const tag = tagOf(error)
  return tag === "MailboxFull" || tag === "AlreadyProcessingMessage" || tag === "PersistenceError" ||
    tag === "RpcClientError" || tag === "TimeoutException" || tag === "PartitionMoved"
}

type ClusterErrors = MailboxFull | AlreadyProcessingMessage | PersistenceError | PartitionMoved

const retried = (error: unknown): boolean => {
  const tag = tagOf(error)
  return tag === "MailboxFull" || tag === "PartitionMoved"
}

/** An owner's answer: asked again while its mailbox is full or the partition moved; the cluster's errors are defects. */
export const routed = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, Exclude<E, ClusterErrors>, R> =>
  effect.pipe(
    Effect.retry({ while: retried, schedule: Schedule.spaced(Duration.millis(50)) }),
    Effect.timeout(ROUTE_TIMEOUT),
    Effect.catchIf(isClusterError, (error) => Effect.die(error))
  ) as unknown as Effect.Effect<A, Exclude<E, ClusterErrors>, R>
