/**
 * `npm run soak`: the overload and shutdown soak at full size (100,000 banks, 2M retains); see test/support/soak/runSoak.ts.
 * `npm run soak -- --reduced` runs the 10× smaller version that `npm test` runs. Exits 1 when a check fails.
 */
import { Effect } from "effect"
import { fullSoak, reducedSoak, runSoak } from "../test/support/soak/runSoak.js"

const options = process.argv.includes("--reduced") ? reducedSoak : fullSoak
const started = Date.now()
const report = await Effect.runPromise(runSoak({ ...options, log: (line) => console.log(line) }))
const { budget: b, heapMB, overload: o, shutdown: s } = report
const n = (x: number) => x.toLocaleString("en-US")

console.log(`
soak: ${n(options.banks)} banks, ${n(o.notifies)} retains, maxQueueSize ${options.maxQueueSize}, concurrency ${options.concurrency}, engine latency 0-${options.maxLatencyMs} ms, ${options.failureRate * 100}% failures
  retains            ${n(o.notifies)} in ${n(o.notifyPhaseMs)} ms
  engine runs        ${n(o.engineRuns)} (${n(o.succeeded)} succeeded, ${n(o.failed)} failed; ${n(o.retries)} retries)
  dropped            ${n(o.droppedEvents)} times a due bank found the queue full (max stats.queued ${o.maxStatsQueued})
  recovered          ${n(o.recovered)} of ${n(o.dueIdleAtEnd)} banks due-but-dropped when the retains stopped, by the sweep in ${n(o.recoveryMs)} ms
  books              ${o.unbalancedBanks === 0 ? "every bank balances (retained = consumed + counter)" : `${o.unbalancedBanks} banks do not balance`}; max runs of one bank at once: ${o.maxRunsOfOneBank}
  heap + buffers     ${heapMB === null ? "n/a (no gc)" : `start ${heapMB.start} MB, after retains ${heapMB.afterNotifies} MB, end ${heapMB.end} MB`}
  shutdown           close returned in ${n(s.closeMs)} ms (shutdownTimeout ${n(s.shutdownTimeoutMs)} ms) with ${s.pendingAtClose} pending and ${s.runningAtClose} running (4 hanging); ${s.startedDuringClose} compiles started during close, ${s.startsAfterClose} after; ${n(s.notifiesAfterClose)} retains after close were no-ops
  budget             ${n(options.budgetTokens)} tokens + ${n(options.budgetBankTokens)}/bank per ${options.budgetPeriod}, ${n(b.elapsedMs)} ms: ${n(b.engineRuns)} engine runs used ${n(b.tokensUsed)} tokens <= bound ${n(b.tokensBound)} (capacity + tokens x elapsed/period + ${options.maxCompileTokens} x ${options.concurrency} workers); ${Math.round(b.used * 100)}% of the ${n(b.tokensAllowed)} allowed; top bank ${b.topBank} ${n(b.topBankTokens)} <= ${n(b.bankBound)}; up to ${n(b.maxDeferred)} banks deferred at once
  total              ${n(Date.now() - started)} ms
  result             ${report.problems.length === 0 ? "PASS" : `FAIL\n    ${report.problems.join("\n    ")}`}`)
process.exitCode = report.problems.length === 0 ? 0 : 1
