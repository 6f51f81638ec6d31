/**
 * Writes that name scopes, on their way from a router to the owner of their bank's partition. They are rare next to
 * plain counts, so they travel beside the packed `Counts` of a `Write` (its optional `scoped` field) as they are,
 * one entry per write, never summed: a scope's counts are the writes' that named it.
 *
 * @internal
 */
import { Schema } from "effect"
import type { CompileQueueService } from "../../CompileQueue.js"
import { invalidScopes, type WriteOptions } from "../../DirtyScopes.js"
import { badCountMessage, isCount } from "../core/inputRules.js"

/** One retain or forget that named scopes. */
export const ScopedWrite = Schema.Struct({
  forget: Schema.Boolean,
  bankId: Schema.String,
  count: Schema.Number,
  scopes: Schema.Array(Schema.String)
})

export type ScopedWrite = typeof ScopedWrite.Type

/** A `Write`'s payload field: absent when the batch has no scoped write (a router without scopes sends none). */
export const ScopedWrites = Schema.optional(Schema.Array(ScopedWrite))

/** Why a scoped write is ignored (a bad count or scope), or undefined; the bank id is checked by the caller. */
export const invalidScopedWrite = (options: WriteOptions): string | undefined => {
  const count = options.count ?? 1
  return isCount(count) ? invalidScopes(options.scopes ?? []) : badCountMessage(count)
}

/** The entry a router's lane collects for a checked scoped write. */
export const scopedWrite = (forget: boolean, bankId: string, options: WriteOptions): ScopedWrite => ({
  forget,
  bankId,
  count: options.count ?? 1,
  scopes: options.scopes ?? []
})

/** The owner counts the scoped writes of a `Write`, noting in `refused` the new banks its queue has no room for. */
export const countScoped = (
  queue: CompileQueueService,
  writes: ReadonlyArray<ScopedWrite> | undefined,
  refused: Array<string>
): void => {
  if (writes === undefined) return
  for (const write of writes) {
    if (queue.unsafeCheckRoom([write.bankId]) !== undefined) refused.push(write.bankId)
    const options = { count: write.count, scopes: write.scopes }
    if (write.forget) queue.unsafeNotifyForget(write.bankId, options)
    else queue.unsafeNotifyRetain(write.bankId, options)
  }
}
