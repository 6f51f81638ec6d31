/**
 * The fencing tokens a queue gives its engine runs: the epoch is the store's owner generation (read once, when the
 * queue is built) or, for a store that has none, the time the queue was built; the sequence counts engine runs.
 *
 * @internal
 */
import { Clock, Effect } from "effect"
import type { BankStateStoreService } from "../../BankStateStore.js"
import type { FencingToken } from "../../FencingToken.js"

/** Hands out the tokens of one epoch, each higher than the last. */
export class TokenCounter {
  private last = 0
  constructor(readonly epoch: number) {}

  next(): FencingToken {
    return { epoch: this.epoch, sequence: ++this.last }
  }
}

/**
 * This process's counter of each epoch in use. A queue built under an epoch an earlier queue of this process used (a
 * layer rebuilt over a store that stayed open, such as `BankStateStore.memory`; a cluster partition's queue rebuilt
 * under the same lease) continues that queue's sequence: starting again at 1 would hand out tokens lower than those
 * already used. Queues of distinct stores that happen to share an epoch share a counter, which only skips sequences.
 */
const counters = new Map<number, TokenCounter>()
/** Epochs kept at most; the oldest is dropped first (one queue built per epoch is the rule, a rebuild the exception). */
const MAX_EPOCHS = 4096

/** The last epoch taken from the clock in this process: two queues built in the same millisecond get two epochs. */
let lastClockEpoch = -1

const counterOf = (epoch: number): TokenCounter => {
  const known = counters.get(epoch)
  if (known !== undefined) return known
  const counter = new TokenCounter(epoch)
  counters.set(epoch, counter)
  if (counters.size > MAX_EPOCHS) counters.delete(counters.keys().next().value!)
  return counter
}

const invalidEpoch = (epoch: unknown) =>
  Effect.dieMessage(`BankStateStore epoch must be a non-negative integer (the store's owner generation), got ${String(epoch)}`)

/** The counter for a queue built now on `store` (or on none). */
export const tokenCounter = (store: BankStateStoreService | undefined): Effect.Effect<TokenCounter> =>
  Effect.suspend(() => {
    const epoch = store?.epoch
    if (epoch === undefined) {
      return Effect.map(Clock.currentTimeMillis, (now) => {
        lastClockEpoch = Math.max(Math.floor(now), lastClockEpoch + 1)
        return counterOf(lastClockEpoch)
      })
    }
    return Number.isSafeInteger(epoch) && epoch >= 0 ? Effect.succeed(counterOf(epoch)) : invalidEpoch(epoch)
  })
