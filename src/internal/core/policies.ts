/**
 * Per-bank policies in the core: a bank's own settings over the queue's, set or cleared at once, the bank re-checked
 * with its new rule (an idle bank whose rule now holds is queued before the call returns).
 *
 * @internal
 */
import { isStaleAt } from "../../BankCompileState.js"
import { type BankPolicy, effectiveConfig } from "../../BankPolicy.js"
import { type Answer, NOTHING } from "./answers.js"
import type { BankLifecycle } from "./bankLifecycle.js"
import { POLICY, STALE } from "./bankTable.js"

/** Gives bank `i` its own policy; the answer is the re-check's at `now`. */
export const set = (core: BankLifecycle, i: number, policy: BankPolicy, now: number): Answer => {
  const table = core.table
  table.policies.set(i, { policy, config: effectiveConfig(core.config, policy) })
  table.state[i]! |= POLICY
  if (core.persistent) table.markDirty(i)
  core.gate.redefer(i, core.bankCapacity(i), now)
  core.freshness.redo(i, now)
  return core.recheck(i, now)
}

/**
 * Drops bank `i`'s policy: the queue's config applies again. The staleness timeline takes entries only in due
 * order, so a bank not yet stale keeps having its staleness computed exactly until its next compile puts it back
 * on the timeline. Then re-checks it like `set`.
 */
export const clear = (core: BankLifecycle, i: number, now: number): Answer => {
  const table = core.table
  const entry = table.policies.get(i)
  if (entry === undefined || entry.policy === undefined) return NOTHING
  if (core.persistent) table.markDirty(i)
  const reference = table.referenceTime(i)
  if (reference === reference && !isStaleAt(reference, now, core.stalenessMillis)) {
    table.policies.set(i, { policy: undefined, config: core.config })
  } else {
    table.policies.delete(i)
    table.state[i] = (table.state[i]! & ~POLICY) | (reference === reference ? STALE : 0)
  }
  core.gate.redefer(i, core.bankCapacity(i), now)
  core.freshness.redo(i, now)
  return core.recheck(i, now)
}
