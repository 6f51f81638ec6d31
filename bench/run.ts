/**
 * `npm run bench` (full, ≤ 5 min on 2 cores) or `npm run bench -- --quick` (10× smaller, < 30 s).
 * Every figure is printed beside a baseline measured in the same run; the table is printed as Markdown and written,
 * with the raw numbers, to bench/results/latest.json.
 *
 *   node --expose-gc --import tsx bench/run.ts [--quick] [--only B1,B3,S1,...] [--no-store] [--budget] [--max-wait]
 *
 * `--budget`: B1/B2 run on a queue with a cost budget set (limits too large to bind, so the same compiles run): the
 * budget is checked at compile start, never on the retain path, so the figures must not move.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import type { Row, Scale } from "./common.js"
import { hotPathRows } from "./hotPath.js"
import { latencyRows } from "./latency.js"
import { memoryRows } from "./memory.js"
import { policyRows } from "./policies.js"
import { sweepRows } from "./sweep.js"
import { throughputRows } from "./throughput.js"

const args = process.argv.slice(2)
const quick = args.includes("--quick")
const onlyAt = args.indexOf("--only")
const only = onlyAt === -1 ? undefined : new Set((args[onlyAt + 1] ?? "").split(","))
const scale: Scale = {
  quick,
  divisor: quick ? 10 : 1,
  budget: args.includes("--budget"),
  maxWait: args.includes("--max-wait")
}

const groups: ReadonlyArray<readonly [ReadonlyArray<string>, (scale: Scale) => Promise<Array<Row>>]> = [
  // B3 first: the heap is quietest before anything else ran.
  [["B3"], memoryRows],
  [["B1", "B2"], hotPathRows],
  [["B4"], throughputRows],
  [["B5"], sweepRows],
  [["B6"], latencyRows],
  [["P1", "P2", "P3", "P4"], policyRows]
]

const started = performance.now()
const rows: Array<Row> = []
for (const [ids, run] of groups) {
  if (only !== undefined && !ids.some((id) => only.has(id))) continue
  const t0 = performance.now()
  const produced = await run(scale)
  rows.push(...produced)
  console.error(`${ids.join(", ")} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
}
// The durable-store rows (S1–S4, issue 6) run by default; `--only` selects them by id too.
if (!args.includes("--no-store") && (only === undefined || ["S1", "S2", "S3", "S4"].some((id) => only.has(id)))) {
  const { runStoreBench } = await import("./store.js")
  rows.push(...await runStoreBench({ quick }))
}
const seconds = (performance.now() - started) / 1000

const cell = (text: string) => text.replaceAll("|", "\\|")
const lines = [
  `\`npm run bench${quick ? " -- --quick" : ""}\` — Node ${process.version}, ${cpus().length} cores, ${seconds.toFixed(0)} s`,
  "",
  "| # | figure | value | baseline (same run) | target | met |",
  "|---|---|---|---|---|---|",
  ...rows.map((row) =>
    `| ${row.id} | ${cell(row.figure)} | ${cell(row.value)} | ${cell(row.baseline)} | ${cell(row.target)} | ${
      row.met === null ? "—" : row.met ? "yes" : "**no**"
    } |`
  )
]
console.log(lines.join("\n"))

const out = join(dirname(fileURLToPath(import.meta.url)), "results", "latest.json")
mkdirSync(dirname(out), { recursive: true })
writeFileSync(
  out,
  JSON.stringify({ date: new Date().toISOString(), node: process.version, cores: cpus().length, quick, seconds, rows }, null, 2) + "\n"
)
console.error(`wrote ${out}`)
