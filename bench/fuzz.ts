/**
 * `npm run fuzz`: the HTTP fuzz of test/support/fuzz/runFuzz.ts at full size against a real service process.
 * FUZZ_REQUESTS (default 200,000), FUZZ_SEED (default: random, printed), FUZZ_CONCURRENCY (default 16).
 */
import { formatReport, runFuzz } from "../test/support/fuzz/runFuzz.js"

const number = (name: string, fallback: number) => {
  const raw = process.env[name]
  return raw === undefined || raw === "" ? fallback : Number(raw)
}

const requests = number("FUZZ_REQUESTS", 200_000)
const seed = number("FUZZ_SEED", Math.floor(Math.random() * 2 ** 31))
// First, so that a run that never ends can still be replayed.
process.stderr.write(`fuzz: ${requests} requests, seed ${seed} (FUZZ_SEED=${seed} replays it)\n`)
const report = await runFuzz({
  requests,
  seed,
  concurrency: number("FUZZ_CONCURRENCY", 16),
  wave: 2000,
  onWave: (done, failures) =>
    process.stderr.write(`${new Date().toISOString()} ${done} requests checked, ${failures} failures\n`)
})
console.log(formatReport(report))
process.exitCode = report.failures.length === 0 ? 0 : 1
