/**
 * The tuner's outputs without a browser: the table's p95 column tells every two different values apart (the Pareto
 * marks are judged on exact values), the daily chart's legend runs cheapest first, and the scatter chart's numbers
 * are placed where they cover no point and no other number. The page in Chromium is test/e2e/tunerReport.test.ts.
 */
import { describe, expect, it } from "vitest"
import { labelBox, placeLabels } from "../../src/internal/tuner/pointLabels.js"
import { chosen, formatTable, labels, p95Column, reportHtml } from "../../src/internal/tuner/report.js"
import { type CombinationReport, markPareto, type TuneResult } from "../../src/internal/tuner/tune.js"

const DAY = 86_400

interface Box {
  readonly x1: number
  readonly y1: number
  readonly x2: number
  readonly y2: number
}

/** A row with `size` as its only varying setting, its tokens and its p95. */
const row = (size: number, tokens: number, p95Seconds: number): Omit<CombinationReport, "pareto"> => ({
  settings: {
    sizeThreshold: size,
    stalenessDays: 1,
    stalenessMinMemories: 10,
    forgetThreshold: 1,
    forgetDelaySeconds: 0,
    maxWaitSeconds: 0,
    budgetTokens: null,
    budgetCompiles: null
  },
  compiles: { total: tokens / 1000, perDay: tokens / 1000 / 30, byReason: { size: tokens / 1000 } },
  tokens: { total: tokens, perDay: tokens / 30 },
  freshness: { p50Seconds: 3600, p95Seconds, maxSeconds: 26 * DAY },
  uncompiledMemories: 0,
  banksNeverCompiled: 0,
  lateness: null
})

const result = (rows: ReadonlyArray<Omit<CombinationReport, "pareto">>): TuneResult => ({
  rows: markPareto(rows),
  dailyCompiles: rows.map((_, i) => Array.from({ length: 30 }, (_, day) => 100 + i + day)),
  start: Date.UTC(2026, 10, 1),
  end: Date.UTC(2026, 11, 1),
  events: 600_000,
  banks: 2000
})

/** The table's cells of one column, row by row. */
const column = (table: string, title: string): Array<string> => {
  const [, header, ...lines] = table.trimEnd().split("\n")
  const start = header!.indexOf(title)
  const end = start + title.length
  // Right-aligned columns end where their title ends.
  return lines.map((line) => line.slice(0, end).split(/\s{2,}/).at(-1)!.trim())
}

describe("the table", () => {
  it("prints p95 with enough decimals that no row on the front looks beaten by a cheaper one", () => {
    // Four combinations on the front whose p95s all round to 2.3 d, cheaper ones staler.
    const rows = [row(20, 137_000_000, 1.95 * DAY + 25_000), row(50, 112_000_000, 2.27 * DAY), row(100, 105_000_000, 2.29 * DAY),
      row(200, 102_000_000, 2.31 * DAY)]
    const tuned = result(rows)
    expect(tuned.rows.every((r) => r.pareto)).toBe(true)
    expect(column(formatTable(tuned), "fresh p95")).toEqual(["2.24 d", "2.27 d", "2.29 d", "2.31 d"])
  })

  it("keeps the usual decimal when it shows the front as it is; a dearer row off the front may print the same", () => {
    const plain = result([row(20, 5_000_000, 30), row(50, 4_000_000, 600), row(100, 3_000_000, 7200), row(200, 2_000_000, 3 * DAY)])
    expect(p95Column(plain.rows)).toEqual(["30 s", "10.0 min", "2.0 h", "3.0 d"])
    // #2 costs more than #1 and is a little staler: off the front, and printing "2.3 d" like #1 contradicts nothing.
    const beaten = result([row(20, 3_000_000, 2.30 * DAY), row(50, 4_000_000, 2.31 * DAY), row(100, 2_000_000, 5 * DAY)])
    expect(beaten.rows.map((r) => r.pareto)).toEqual([true, false, true])
    expect(p95Column(beaten.rows)).toEqual(["2.3 d", "2.3 d", "5.0 d"])
    expect(p95Column(result([row(20, 2_000_000, 30.2), row(50, 1_000_000, 30.4)]).rows)).toEqual(["30.2 s", "30.4 s"])
    expect(p95Column(result([row(20, 2_000_000, null as unknown as number)]).rows)).toEqual(["—"])
  })
})

const overlaps = (a: Box, b: Box) => a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2

describe("the report page", () => {
  // Twelve combinations on the front: #12 is the cheapest, #1 the dearest.
  const twelve = result(Array.from({ length: 12 }, (_, i) => row(10 * (i + 1), (20 - i) * 1_000_000, (i + 1) * 3600)))

  it("lists the daily chart's combinations cheapest first, as numbers (#12 before #9, not #1, #10, #12)", async () => {
    const html = await reportHtml(twelve, { source: "test", engine: "test" })
    const daily = html.slice(html.indexOf("<figure id=\"daily\">"), html.indexOf("</figure>", html.indexOf("<figure id=\"daily\">")))
    const legend = [...daily.matchAll(/<text[^>]*>(#\d+ [^<]*)<\/text>/g)].map((match) => match[1])
    const names = labels(twelve.rows)
    const expected = chosen(twelve.rows).map((i) => names[i])
    expect(legend).toEqual(expected)
    expect(legend[0]).toMatch(/^#12 /)
    const tokens = chosen(twelve.rows).map((i) => twelve.rows[i]!.tokens.total)
    expect(tokens).toEqual([...tokens].sort((a, b) => a - b))
  })

  it("writes each point's number in the scatter chart once at most, none covering another", async () => {
    // Points packed along one line: not every number fits, none overlaps.
    const crowded = result(Array.from({ length: 40 }, (_, i) => row(i + 1, 100_000_000 - i * 10_000, 2 * DAY + i * 60)))
    const html = await reportHtml(crowded, { source: "test", engine: "test" })
    const scatter = html.slice(html.indexOf("<figure id=\"scatter\">"), html.indexOf("</figure>"))
    // Each number's box, as a 10 px sans-serif draws it (0.6 em a character, from 0.8 em above the baseline to 0.2 below).
    const drawn = [...scatter.matchAll(/<text [^>]*text-anchor="(\w+)" transform="translate\(([\d.-]+),([\d.-]+)\)"[^>]*>(#\d+)<\/text>/g)]
      .map(([, anchor, x, y, text]) => {
        const width = 6 * text!.length
        const x1 = Number(x) - (anchor === "end" ? width : anchor === "middle" ? width / 2 : 0)
        return { text, x1, x2: x1 + width, y1: Number(y) - 8, y2: Number(y) + 2 }
      })
    const numbers = drawn.map((label) => label.text)
    expect(numbers.length).toBeGreaterThan(3)
    expect(new Set(numbers).size).toBe(numbers.length)
    for (const [i, box] of drawn.entries()) {
      for (const other of drawn.slice(i + 1)) expect(overlaps(box, other), `${box.text} and ${other.text}`).toBe(false)
    }
  })
})

describe("placeLabels", () => {
  const area = { width: 560, height: 360 }

  it("labels every point of a sparse chart, above right of it", () => {
    const points = [{ x: 100, y: 100, text: "#1" }, { x: 300, y: 200, text: "#2" }]
    expect(placeLabels(points, area)).toEqual([
      { x: 108, y: 92, text: "#1", align: "left", baseline: "bottom" },
      { x: 308, y: 192, text: "#2", align: "left", baseline: "bottom" }
    ])
  })

  it("in a crowded chart: no number over another, none over a point, all inside; the first ones placed first", () => {
    // A seeded grid of 200 points, some nearly on top of each other.
    let seed = 7
    const random = () => (seed = (seed * 48_271) % 2_147_483_647) / 2_147_483_647
    const points = Array.from({ length: 200 }, (_, i) => ({ x: random() * 560, y: random() * 360, text: `#${i + 1}` }))
    points.push({ x: 280, y: 180, text: "#201" }, { x: 283, y: 181, text: "#202" })
    const placed = placeLabels(points, area)
    const boxes = placed.map(labelBox)
    expect(placed.length).toBeGreaterThan(20)
    expect(placed.length).toBeLessThan(points.length)
    for (const [i, box] of boxes.entries()) {
      expect(box.x1 >= 0 && box.y1 >= 0 && box.x2 <= area.width && box.y2 <= area.height).toBe(true)
      for (const other of boxes.slice(i + 1)) expect(overlaps(box, other)).toBe(false)
      for (const point of points) {
        expect(overlaps(box, { x1: point.x - 5.4, y1: point.y - 5.4, x2: point.x + 5.4, y2: point.y + 5.4 })).toBe(false)
      }
    }
    expect(placed[0]!.text).toBe("#1")
  })
})
