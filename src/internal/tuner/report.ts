/**
 * The tuner's outputs: the table printed to stdout, and the self-contained report page — the cost-against-freshness
 * chart (Pareto front marked) and compiles per day, drawn by Vega-Lite and rendered to SVG here in Node, inlined into
 * the HTML with the table. The page loads nothing: no script, no font, no network. Vega is imported only when a page
 * is written.
 *
 * @internal
 */
import type { TuneSettings } from "./replay.js"
import type { CombinationReport, TuneResult } from "./tune.js"

const DAY = 86_400_000

/** A duration in seconds, the way a person reads it. */
export const formatDuration = (seconds: number | null): string => {
  if (seconds === null) return "—"
  if (seconds < 90) return `${seconds.toFixed(0)} s`
  if (seconds < 90 * 60) return `${(seconds / 60).toFixed(1)} min`
  if (seconds < 48 * 3600) return `${(seconds / 3600).toFixed(1)} h`
  return `${(seconds / 86400).toFixed(1)} d`
}

const integer = (n: number): string => Math.round(n).toLocaleString("en-US")
const decimal = (n: number | null): string =>
  n === null ? "—" : n.toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 })

interface Column {
  readonly title: string
  readonly cell: (row: CombinationReport, index: number) => string
  readonly left?: boolean
}

const settingColumns: ReadonlyArray<Column> = [
  { title: "size", cell: (r) => String(r.settings.sizeThreshold) },
  { title: "stale days", cell: (r) => String(r.settings.stalenessDays) },
  { title: "stale min", cell: (r) => String(r.settings.stalenessMinMemories) },
  { title: "forget at", cell: (r) => String(r.settings.forgetThreshold) },
  { title: "forget delay s", cell: (r) => String(r.settings.forgetDelaySeconds) }
]

const budgetColumns: ReadonlyArray<Column> = [
  { title: "budget tokens", cell: (r) => r.settings.budgetTokens === null ? "—" : integer(r.settings.budgetTokens) },
  { title: "budget compiles", cell: (r) => r.settings.budgetCompiles === null ? "—" : integer(r.settings.budgetCompiles) }
]

const hasBudget = (rows: ReadonlyArray<CombinationReport>) =>
  rows.some((r) => r.settings.budgetTokens !== null || r.settings.budgetCompiles !== null)

/** The table's columns; the budget's only when some combination has one. */
const columnsFor = (rows: ReadonlyArray<CombinationReport>): ReadonlyArray<Column> => [
  { title: "#", cell: (_, i) => String(i + 1) },
  ...settingColumns,
  ...(hasBudget(rows) ? budgetColumns : []),
  { title: "compiles", cell: (r) => integer(r.compiles.total) },
  { title: "compiles/day", cell: (r) => decimal(r.compiles.perDay) },
  { title: "tokens", cell: (r) => integer(r.tokens.total) },
  { title: "tokens/day", cell: (r) => r.tokens.perDay === null ? "—" : integer(r.tokens.perDay) },
  { title: "fresh p50", cell: (r) => formatDuration(r.freshness.p50Seconds) },
  { title: "fresh p95", cell: (r) => formatDuration(r.freshness.p95Seconds) },
  { title: "fresh max", cell: (r) => formatDuration(r.freshness.maxSeconds) },
  { title: "uncompiled", cell: (r) => integer(r.uncompiledMemories) },
  { title: "banks never", cell: (r) => integer(r.banksNeverCompiled) },
  { title: "pareto", cell: (r) => r.pareto ? "*" : "", left: true }
]

/** The table for stdout: one line per combination, columns aligned. */
export const formatTable = (result: TuneResult): string => {
  const columns = columnsFor(result.rows)
  const cells = [columns.map((c) => c.title), ...result.rows.map((r, i) => columns.map((c) => c.cell(r, i)))]
  const widths = columns.map((_, c) => Math.max(...cells.map((line) => line[c]!.length)))
  const lines = cells.map((line) =>
    line.map((cell, c) => columns[c]!.left ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join("  ").trimEnd()
  )
  const days = (result.end - result.start) / DAY
  return [
    `${integer(result.events)} events, ${integer(result.banks)} banks, ${decimal(days)} days ` +
    `(${new Date(result.start).toISOString()} to ${new Date(result.end).toISOString()}); ` +
    `freshness = retain to the end of the compile that consumed it; * = on the Pareto front (tokens vs p95)`,
    ...lines
  ].join("\n") + "\n"
}

/** A short name for a combination: the settings that differ across the grid (all of them if none does). */
export const labels = (rows: ReadonlyArray<CombinationReport>): Array<string> => {
  const keys: ReadonlyArray<readonly [keyof TuneSettings, string]> = [
    ["sizeThreshold", "size"],
    ["stalenessDays", "stale"],
    ["stalenessMinMemories", "min"],
    ["forgetThreshold", "forget"],
    ["forgetDelaySeconds", "delay"],
    ["budgetTokens", "budget"],
    ["budgetCompiles", "budget compiles"]
  ]
  const varying = keys.filter(([key]) => new Set(rows.map((r) => r.settings[key])).size > 1)
  const shown = varying.length > 0 ? varying : keys.slice(0, 5)
  const value = (v: number | null) => v === null ? "none" : String(v)
  return rows.map((r, i) => `#${i + 1} ${shown.map(([key, name]) => `${name} ${value(r.settings[key])}`).join(", ")}`)
}

/** The combinations whose daily compiles are drawn: the Pareto front, cheapest first, at most `max` of them. */
export const chosen = (rows: ReadonlyArray<CombinationReport>, max = 8): Array<number> => {
  const front = rows.map((r, i) => ({ r, i })).filter(({ r }) => r.pareto).sort((a, b) =>
    a.r.tokens.total - b.r.tokens.total
  )
  if (front.length <= max) return front.map(({ i }) => i)
  return Array.from({ length: max }, (_, k) => front[Math.round((k * (front.length - 1)) / (max - 1))]!.i)
}

const FRONT = ["on the Pareto front", "dominated"]

/** The Vega-Lite spec of the cost-against-freshness chart: one point per combination, the front drawn as a line. */
export const scatterSpec = (result: TuneResult) => {
  const names = labels(result.rows)
  const values = result.rows.map((r, i) => ({
    combination: names[i],
    number: `#${i + 1}`,
    tokensPerDay: r.tokens.perDay ?? r.tokens.total,
    p95Hours: r.freshness.p95Seconds === null ? null : r.freshness.p95Seconds / 3600,
    p50Hours: r.freshness.p50Seconds === null ? null : r.freshness.p50Seconds / 3600,
    front: r.pareto ? "on the Pareto front" : "dominated"
  }))
  const x = { field: "tokensPerDay", type: "quantitative", title: "cost: tokens per day", scale: { zero: false } }
  const y = { field: "p95Hours", type: "quantitative", title: "staleness: p95 hours from retain to compiled" }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: "Cost against freshness, one point per combination",
    width: 560,
    height: 360,
    data: { values: values.filter((v) => v.p95Hours !== null) },
    layer: [
      {
        transform: [{ filter: "datum.front === 'on the Pareto front'" }],
        mark: { type: "line", color: "#999", strokeDash: [4, 3] },
        encoding: { x, y, order: { field: "tokensPerDay", type: "quantitative" } }
      },
      {
        name: "combinations",
        mark: { type: "point", filled: true, size: 90 },
        encoding: {
          x,
          y,
          color: { field: "front", type: "nominal", title: null, scale: { domain: FRONT, range: ["#d62728", "#9aa5b1"] } },
          tooltip: [{ field: "combination" }, { field: "tokensPerDay", format: ",.0f" }, { field: "p95Hours", format: ".1f" }],
          shape: { field: "front", type: "nominal", title: null, scale: { domain: FRONT, range: ["circle", "square"] } }
        }
      },
      {
        mark: { type: "text", align: "left", dx: 7, dy: -7, fontSize: 10 },
        encoding: { x, y, text: { field: "number" } }
      }
    ]
  }
}

/** The Vega-Lite spec of compiles per day for the chosen combinations. */
export const dailySpec = (result: TuneResult) => {
  const names = labels(result.rows)
  const values = chosen(result.rows).flatMap((i) =>
    result.dailyCompiles[i]!.map((compiles, day) => ({
      combination: names[i],
      day: new Date(result.start + day * DAY).toISOString().slice(0, 10),
      compiles
    }))
  )
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: "Compiles per day, combinations on the Pareto front",
    width: 560,
    height: 260,
    data: { values },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "day", type: "temporal", title: "day (UTC)" },
      y: { field: "compiles", type: "quantitative", title: "compiles" },
      color: { field: "combination", type: "nominal", title: null, legend: { labelLimit: 400 } }
    }
  }
}

/** Renders a Vega-Lite spec to an SVG string, in Node, without a canvas. */
const renderSvg = async (spec: object): Promise<string> => {
  const [vega, vegaLite] = await Promise.all([import("vega"), import("vega-lite")])
  const compiled = vegaLite.compile(spec as Parameters<typeof vegaLite.compile>[0]).spec
  const view = new vega.View(vega.parse(compiled), { renderer: "none" })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" })[c]!)

const htmlTable = (result: TuneResult): string => {
  const columns = columnsFor(result.rows)
  const head = columns.map((c) => `<th>${escapeHtml(c.title)}</th>`).join("")
  const body = result.rows.map((r, i) =>
    `<tr${r.pareto ? " class=\"pareto\"" : ""}>${columns.map((c) => `<td>${escapeHtml(c.cell(r, i))}</td>`).join("")}</tr>`
  ).join("\n")
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`
}

/** What the page says about the run, above the charts. */
export interface ReportContext {
  readonly source: string
  readonly engine: string
}

/** The whole report page: self-contained HTML, the charts as inline SVG. */
export const reportHtml = async (result: TuneResult, context: ReportContext): Promise<string> => {
  const [scatter, daily] = await Promise.all([renderSvg(scatterSpec(result)), renderSvg(dailySpec(result))])
  const days = (result.end - result.start) / DAY
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>effect-compile-trigger tune: cost against freshness</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 8px; text-align: right; border-bottom: 1px solid #e3e3e3; white-space: nowrap; }
th { background: #f5f5f5; }
tr.pareto td { font-weight: 600; }
figure { margin: 1.5em 0; }
.meta { color: #555; }
</style>
</head>
<body>
<h1>Threshold tuner: cost against freshness</h1>
<p class="meta">${escapeHtml(context.source)}: ${integer(result.events)} events, ${integer(result.banks)} banks, ${
    decimal(days)
  } days (${new Date(result.start).toISOString()} to ${new Date(result.end).toISOString()}). Engine model: ${
    escapeHtml(context.engine)
  }. Freshness of a memory = the time from its retain to the end of the compile that consumed it.</p>
<figure id="scatter">${scatter}
<figcaption>Lower is fresher, left is cheaper. Red points are on the Pareto front: no other combination is both as cheap and as fresh (p95).</figcaption></figure>
<figure id="daily">${daily}</figure>
<h2>All combinations</h2>
${htmlTable(result)}
</body>
</html>
`
}
