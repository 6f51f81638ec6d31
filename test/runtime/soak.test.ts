/**
 * The overload and shutdown soak at a tenth of its full size (10,000 banks, 200,000 retains); `npm run soak` runs the
 * full one. What it checks is described in test/support/soak/runSoak.ts. Live clock: this is about real load and deadlines.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { reducedSoak, runSoak } from "../support/soak/runSoak.js"

describe("soak (reduced): overload, recovery through the sweep, shutdown under load, a budget under load", () => {
  it.live("10,000 banks, 200,000 retains, queue of 100, 10% failures, concurrency 16", () =>
    Effect.gen(function*() {
      const report = yield* runSoak(reducedSoak)
      expect(report.problems).toEqual([])
      const { overload, shutdown } = report
      // the load really overloaded the queue and the engine really failed
      expect(overload.droppedEvents).toBeGreaterThan(0)
      expect(overload.dueIdleAtEnd).toBeGreaterThan(0)
      expect(overload.failed).toBeGreaterThan(0)
      // every bank dropped while due was compiled by the sweep; every bank's books balance
      expect(overload.recovered).toBe(overload.dueIdleAtEnd)
      expect(overload.unbalancedBanks).toBe(0)
      expect(overload.maxRunsOfOneBank).toBe(1)
      if (report.heapMB !== null) expect(report.heapMB.end).toBeLessThan(report.heapMB.afterNotifies + 8)
      expect(shutdown.closeMs).toBeLessThanOrEqual(shutdown.shutdownTimeoutMs + 1_000)
      expect(shutdown.startsAfterClose).toBe(0)
      expect(shutdown.notifiesAfterClose).toBeGreaterThan(0)
      // the budget bound the load: within capacity + refill + one compile per worker, and banks were deferred
      expect(report.budget.tokensUsed).toBeLessThanOrEqual(report.budget.tokensBound)
      expect(report.budget.topBankTokens).toBeLessThanOrEqual(report.budget.bankBound)
      expect(report.budget.maxDeferred).toBeGreaterThan(0)
    }), 120_000)
})
