/**
 * The HTTP fuzz (test/support/fuzz/runFuzz.ts) against the real service process: 20,000 requests, valid ones from the API's
 * Schemas and hostile ones from raw generators, every answer and the whole state checked (`npm run fuzz` runs more).
 * FUZZ_SEED reproduces a run; the seed is printed either way.
 */
import { describe, expect, it } from "@effect/vitest"
import { formatReport, runFuzz } from "../support/fuzz/runFuzz.js"

const REQUESTS = 20_000

describe("HTTP fuzz against the service process", () => {
  it(`${REQUESTS} requests: only 2xx and JSON 4xx, a 2xx exactly for valid requests, and the counts are the model's`, async () => {
    const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31)
    // First, so that a run that never ends can still be replayed. The file runs alone (its own tier in
    // vitest.config.ts): it saturates both cores, and files beside it have deadlines to keep.
    console.log(`fuzz: ${REQUESTS} requests, seed ${seed} (FUZZ_SEED=${seed} replays it)`)
    // Stops sending at 180 s (about 9 times its usual time) and reports what it still waits for, inside the timeout
    // (room for a wave's checks, 60 s at most, and the service's stop, 10 s).
    const report = await runFuzz({ requests: REQUESTS, seed, concurrency: 16, wave: 2000, deadlineMs: 180_000 })
    console.log(formatReport(report))
    expect(report.failures).toEqual([])
    expect(report.requests).toBe(REQUESTS)
    // The generators reach every class: accepted retains, refusals of each kind, and dropped connections.
    expect(report.accepted).toBeGreaterThan(REQUESTS / 10)
    for (const status of ["200", "202", "400", "401", "404", "413"]) expect(report.byStatus[status] ?? 0).toBeGreaterThan(0)
    expect(report.unanswered).toBeGreaterThan(0)
  }, 300_000)
})
