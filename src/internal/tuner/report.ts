/**
 * The tuner's outputs: the table printed to stdout, and the self-contained report page — the cost-against-freshness
 * chart (Pareto front marked) and compiles per day, drawn by Vega-Lite and rendered to SVG here in Node, inlined into
 * the HTML with the table. The page loads nothing: no script, no font, no network. Vega is imported only when a page
 * is written.
 *
 * @internal
 */
import { LABEL_FONT_SIZE, placeLabels } from "./pointLabels.js"
import type { TuneSettings } from "./replay.js"
import type { CombinationReport, TuneResult } from "./tune.js"

const DAY = 86_400_000

/** A duration in seconds, the way a person reads it (`extraDigits` more decimals than usual). */
export const formatDuration = (seconds: number | null, extraDigits = 0): string => {
  if (seconds === null) return "—"
  if (seconds < 90) return `${seconds.toFixed(extraDigits)} s`
  if (seconds < 90 * 60) return `${(seconds / 60).toFixed(1 + extraDigits)} min`
  if (seconds < 48 * 3600) return `${(seconds / 3600).toFixed(1 + extraDigits)} h`
  return `${(seconds / 86400).toFixed(1 + extraDigits)} d`
}

const MAX_EXTRA_DIGITS = 3

/**
 * The p95 column, with as few decimals as keep each row on the Pareto front from printing the same p95 as a cheaper
 * row (up to three more than usual). The front is judged on exact values: a tie in print would make a marked row look
 * beaten by a cheaper one. Rounding keeps the order, so no other reading of the table can contradict the marks.
 */
export const p95Column = (rows: ReadonlyArray<CombinationReport>): Array<string> => {
  const p95 = rows.map((r) => r.freshness.p95Seconds)
  const mustDiffer = rows.flatMap((marked, i) =>
    marked.pareto
      ? rows.flatMap((other, j) => other.tokens.total < marked.tokens.total && p95[j] !== p95[i] ? [[i, j] as const] : [])
      : []
  )
  for (let extra = 0; ; extra++) {
    const texts = p95.map((value) => formatDuration(value, extra))
    if (extra === MAX_EXTRA_DIGITS || mustDiffer.every(([i, j]) => texts[i] !== texts[j])) return texts
  }
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

/** The deadline's columns: the setting and, against it, the memories compiled late and the worst lateness. */
const deadlineColumns: ReadonlyArray<Column> = [
  { title: "max wait s", cell: (r) => r.settings.maxWaitSeconds === 0 ? "off" : String(r.settings.maxWaitSeconds) }
]

const latenessColumns: ReadonlyArray<Column> = [
  { title: "late", cell: (r) => r.lateness === null ? "—" : `${(100 * r.lateness.lateShare).toFixed(2)} %` },
  { title: "late max", cell: (r) => r.lateness === null || r.lateness.lateMemories === 0 ? "—" : formatDuration(r.lateness.maxSeconds) }
]

const hasDeadline = (rows: ReadonlyArray<CombinationReport>) => rows.some((r) => r.settings.maxWaitSeconds > 0)

const hasBudget = (rows: ReadonlyArray<CombinationReport>) =>
  rows.some((r) => r.settings.budgetTokens !== null || r.settings.budgetCompiles !== null)

/** The table's columns; the budget's only when some combination has one. */
const columnsFor = (rows: ReadonlyArray<CombinationReport>): ReadonlyArray<Column> => {
  const p95 = p95Column(rows)
  return [
    { title: "#", cell: (_, i) => String(i + 1) },
    ...settingColumns,
    ...(hasDeadline(rows) ? deadlineColumns : []),
    ...(hasBudget(rows) ? budgetColumns : []),
    ...resultColumns(p95),
    ...(hasDeadline(rows) ? latenessColumns : [])
  ]
}

/** What each combination did; `p95` is the p95 column's text, row by row. */
const resultColumns = (p95: ReadonlyArray<string>): ReadonlyArray<Column> => [
  { title: "compiles", cell: (r) => integer(r.compiles.total) },
  { title: "compiles/day", cell: (r) => decimal(r.compiles.perDay) },
  { title: "tokens", cell: (r) => integer(r.tokens.total) },
  { title: "tokens/day", cell: (r) => r.tokens.perDay === null ? "—" : integer(r.tokens.perDay) },
  { title: "fresh p50", cell: (r) => formatDuration(r.freshness.p50Seconds) },
  { title: "fresh p95", cell: (_, i) => p95[i]! },
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
    `freshness = retain to the end of the compile that consumed it; * = on the Pareto front (tokens vs p95)` +
    (hasDeadline(result.rows) ? "; late = compiled memories whose compile started after their max wait" : ""),
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
    ["maxWaitSeconds", "max wait"],
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

/** The scatter chart's data: one point per combination that compiled something. */
const scatterValues = (result: TuneResult) => {
  const names = labels(result.rows)
  return result.rows.map((r, i) => ({
    combination: names[i],
    number: `#${i + 1}`,
    tokensPerDay: r.tokens.perDay ?? r.tokens.total,
    p95Hours: r.freshness.p95Seconds === null ? null : r.freshness.p95Seconds / 3600,
    p50Hours: r.freshness.p50Seconds === null ? null : r.freshness.p50Seconds / 3600,
    front: r.pareto ? "on the Pareto front" : "dominated"
  })).filter((v): v is typeof v & { readonly p95Hours: number } => v.p95Hours !== null)
}

/**
 * The Vega-Lite spec of the cost-against-freshness chart: one point per combination, the front drawn as a line. The
 * points' numbers are not in it: `scatterSvg` places them once the scales are known.
 */
export const scatterSpec = (result: TuneResult) => {
  const values = scatterValues(result)
  const x = { field: "tokensPerDay", type: "quantitative", title: "cost: tokens per day", scale: { zero: false } }
  const y = { field: "p95Hours", type: "quantitative", title: "staleness: p95 hours from retain to compiled" }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: "Cost against freshness, one point per combination",
    width: 560,
    height: 360,
    data: { values },
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
      }
    ]
  }
}

/** The Vega-Lite spec of compiles per day for the chosen combinations, the legend cheapest first. */
export const dailySpec = (result: TuneResult) => {
  const names = labels(result.rows)
  const shown = chosen(result.rows)
  const values = shown.flatMap((i) =>
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
      // A nominal scale sorts its domain as text (#10 before #2): give it the order.
      color: {
        field: "combination",
        type: "nominal",
        title: null,
        scale: { domain: shown.map((i) => names[i]!) },
        legend: { labelLimit: 400 }
      }
    }
  }
}

/** What a chart adds to the compiled Vega spec, and what it does with the running view before it is drawn. */
interface RenderSteps {
  readonly patch: (compiled: import("vega").Spec) => void
  readonly prepare: (view: import("vega").View) => Promise<void>
}

/** Compiles a Vega-Lite spec and renders it to an SVG string, in Node, without a canvas. */
const renderSvg = async (spec: object, steps?: RenderSteps): Promise<string> => {
  const [vega, vegaLite] = await Promise.all([import("vega"), import("vega-lite")])
  const compiled = vegaLite.compile(spec as Parameters<typeof vegaLite.compile>[0]).spec
  steps?.patch(compiled)
  const view = new vega.View(vega.parse(compiled), { renderer: "none" })
  try {
    await steps?.prepare(view)
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

const POINT_LABELS = "point_labels"

/**
 * The scatter chart with each point's number beside it where it overlaps nothing (`placeLabels`): a text mark over
 * a data set filled once the chart has run and its scales give the points' pixels. Front points are placed first,
 * cheapest first, then the others in table order.
 */
const scatterSvg = (result: TuneResult): Promise<string> =>
  renderSvg(scatterSpec(result), {
    patch: (compiled) => {
      compiled.data = [...(compiled.data ?? []), { name: POINT_LABELS, values: [] }]
      compiled.marks = [...(compiled.marks ?? []), {
        type: "text",
        name: `${POINT_LABELS}_marks`,
        from: { data: POINT_LABELS },
        encode: {
          update: {
            x: { field: "x" },
            y: { field: "y" },
            text: { field: "text" },
            align: { field: "align" },
            baseline: { field: "baseline" },
            fontSize: { value: LABEL_FONT_SIZE },
            fill: { value: "#333" }
          }
        }
      }]
    },
    prepare: async (view) => {
      await view.runAsync()
      const x = view.scale("x") as (value: number) => number
      const y = view.scale("y") as (value: number) => number
      const onFront = (v: { readonly front: string }) => v.front === FRONT[0]
      const byPriority = scatterValues(result).sort((a, b) =>
        Number(onFront(b)) - Number(onFront(a)) || (onFront(a) ? a.tokensPerDay - b.tokensPerDay : 0)
      )
      const placed = placeLabels(
        byPriority.map((v) => ({ x: x(v.tokensPerDay), y: y(v.p95Hours), text: v.number })),
        { width: view.width(), height: view.height() }
      )
      await view.data(POINT_LABELS, placed).runAsync()
    }
  })

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" })[c]!)

const htmlTable = (result: TuneResult): string => {
  const columns = columnsFor(result.rows)
  const head = columns.map((c) => `<th>${escapeHtml(c.title)}</th>`).join("")
  const body = result.rows.map((r, i) =>
    `<tr${r.pareto ? " class=\"pareto\"" : ""}>${columns.map((c) => `<td>${escapeHtml(c.cell(r, i))}</td>`).join("")}</tr>`
  ).join("\n")
  return `<div class="table"><table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table></div>`
}

/** What the page says about the run, above the charts. */
export interface ReportContext {
  readonly source: string
  readonly engine: string
}

/** The whole report page: self-contained HTML, the charts as inline SVG. */
export const reportHtml = async (result: TuneResult, context: ReportContext): Promise<string> => {
  const [scatter, daily] = await Promise.all([scatterSvg(result), renderSvg(dailySpec(result))])
  const days = (result.end - result.start) / DAY
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>effect-compile-trigger tune: cost against freshness</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
/* The table fits the page: headings wrap, cells stay on one line; a grid too wide for the window scrolls in its box. */
.table { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 13px; }
th, td { padding: 3px 5px; text-align: right; border-bottom: 1px solid #e3e3e3; white-space: nowrap; }
th { background: #f5f5f5; white-space: normal; vertical-align: bottom; }
svg { max-width: 100%; height: auto; }
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
<figcaption>Lower is fresher, left is cheaper. Red points are on the Pareto front: no other combination is both as cheap and as fresh (p95). Numbers are the table's #; where one would cover another point or number it is left out.</figcaption></figure>
<figure id="daily">${daily}</figure>
<h2>All combinations</h2>
${htmlTable(result)}
</body>
</html>
`
}
