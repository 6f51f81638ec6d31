/**
 * How the HTTP routes learn that a write has been counted where it belongs. In single-node mode there is no such
 * service (the queue counts synchronously); cluster mode's router provides one, and a retain route answers `202`
 * only once the owner of the bank's partition confirmed it.
 *
 * @internal
 */
import { Context, Data, type Effect } from "effect"

/**
 * The owner did not confirm the write: it may or may not have been counted. `notStored` when the owner counted it but
 * could not store it (durable acknowledgements); `refused` (a bank id) when the owner refused that new bank, its
 * partition holding its maximum number of banks (nothing of it was counted); otherwise the owner did not answer in
 * time (it is moving, or unreachable).
 */
export class WriteNotConfirmed extends Data.TaggedError("WriteNotConfirmed")<{
  readonly message: string
  readonly notStored?: boolean | undefined
  readonly refused?: string | undefined
}> {}

export class WriteAcks extends Context.Tag("effect-compile-trigger/WriteAcks")<WriteAcks, {
  /**
   * Call synchronously right after the writes: the returned effect waits for the batches holding them (captured by
   * this call, not when the effect runs).
   */
  readonly settle: (bankIds: Iterable<string>) => Effect.Effect<void, WriteNotConfirmed>
}>() {}
