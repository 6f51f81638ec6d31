/**
 * The tuner's report page in a real browser: `tune --out report.html` as built, opened in headless Debian Chromium —
 * the cost-against-freshness chart has one mark per combination, and the page asked nothing of the network; a wide
 * grid fits a 1,400 px window and its points' numbers cover neither each other nor a point.
 */
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import type { Browser, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { chromiumAvailable, externalRequests, launchChromium, openRecordedPage } from "../support/browser.js"
import { root } from "../support/build.js"

const dir = mkdtempSync(join(tmpdir(), "tuner-report-"))
const report = join(dir, "report.html")
/** A wide grid with a budget dimension: every column of the table, and points close together. */
const wide = join(dir, "wide.html")
let browser: Browser | undefined

const tune = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [join(root, "dist/bin.js"), "tune", ...args], { cwd: dir, timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
    })
  })

beforeAll(async () => {
  // 3 sizes × 2 staleness settings = 6 combinations.
  const run = await tune([
    "--synthetic", "--banks", "300", "--days", "10", "--retains-per-day", "3000",
    "--size", "20,50,100", "--staleness-days", "1,7", "--out", report, "--json"
  ])
  expect(run.stderr).toContain(`report written to ${report}`)
  expect(run.code).toBe(0)
  // 8 sizes × 2 staleness settings × 2 token budgets = 32 combinations.
  const wideRun = await tune([
    "--synthetic", "--banks", "300", "--days", "10", "--retains-per-day", "3000",
    "--size", "20,25,30,40,50,60,80,100", "--staleness-days", "1,7", "--budget-tokens", "none,5000000",
    "--budget-period", "1 day", "--out", wide
  ])
  expect(wideRun.stderr).toContain(`report written to ${wide}`)
  expect(wideRun.code).toBe(0)
  if (chromiumAvailable()) browser = await launchChromium()
}, 180_000)

afterAll(async () => {
  await browser?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe.skipIf(!chromiumAvailable() && !process.env.CI)("tune --out report.html in Chromium", () => {
  it("draws one mark per combination, marks the Pareto front, and loads nothing from the network", async () => {
    const html = readFileSync(report, "utf8")
    expect(html).not.toMatch(/<script|<link|@import|src="http/i) // self-contained: charts are inline SVG
    const { consoleErrors, page, requests } = await openRecordedPage(browser!)
    await page.goto(pathToFileURL(report).href, { waitUntil: "load" })
    const marks = page.locator("#scatter svg g.combinations_marks path")
    expect(await marks.count()).toBe(6)
    const labels = await marks.evaluateAll((nodes) => nodes.map((node) => node.getAttribute("aria-label") ?? ""))
    expect(labels.filter((label) => label.includes("on the Pareto front")).length).toBeGreaterThan(0)
    expect(await page.locator("#daily svg").count()).toBe(1)
    expect(await page.locator("table tbody tr").count()).toBe(6)
    expect(await page.locator("table tbody tr.pareto").count()).toBe(
      labels.filter((label) => label.includes("on the Pareto front")).length
    )
    expect(requests.filter((url) => !url.startsWith("file:"))).toEqual([])
    expect(externalRequests(requests)).toEqual([])
    expect(consoleErrors).toEqual([])
  })
})

interface Rect {
  readonly x: number
  readonly y: number
  readonly width: number
  readonly height: number
}

/** The boxes Chromium drew for the elements `selector` matches (those not hidden by opacity 0). */
const boxes = (page: Page, selector: string): Promise<Array<Rect & { readonly text: string }>> =>
  page.locator(selector).evaluateAll((nodes) =>
    nodes.filter((node) => node.getAttribute("opacity") !== "0").map((node) => {
      const { x, y, width, height } = node.getBoundingClientRect()
      return { x, y, width, height, text: node.textContent ?? "" }
    })
  )

/** Overlap beyond half a pixel (antialiasing) either way. */
const overlap = (a: Rect, b: Rect) =>
  a.x + 0.5 < b.x + b.width && b.x + 0.5 < a.x + a.width && a.y + 0.5 < b.y + b.height && b.y + 0.5 < a.y + a.height

describe.skipIf(!chromiumAvailable() && !process.env.CI)("a wide grid's report in a 1,400 px window", () => {
  it("fits the window: the page never scrolls sideways, nor does the table within it", async () => {
    const { consoleErrors, page } = await openRecordedPage(browser!)
    await page.setViewportSize({ width: 1400, height: 900 })
    await page.goto(pathToFileURL(wide).href, { waitUntil: "load" })
    expect(await page.locator("table tbody tr").count()).toBe(32)
    expect(await page.locator("table thead th", { hasText: "budget tokens" }).count()).toBe(1)
    expect(await page.evaluate<number>("document.documentElement.scrollWidth")).toBeLessThanOrEqual(1400)
    const table = await page.locator("table").evaluate((node) => node.getBoundingClientRect().right)
    expect(table).toBeLessThanOrEqual(1400)
    expect(consoleErrors).toEqual([])
  })

  it("numbers its points without one number over another or over a point", async () => {
    const { page } = await openRecordedPage(browser!)
    await page.setViewportSize({ width: 1400, height: 900 })
    await page.goto(pathToFileURL(wide).href, { waitUntil: "load" })
    const points = await boxes(page, "#scatter svg g.combinations_marks path")
    expect(points).toHaveLength(32)
    const numbers = await boxes(page, "#scatter svg text")
      .then((all) => all.filter((label) => /^#\d+$/.test(label.text)))
    expect(numbers.length).toBeGreaterThan(8)
    expect(new Set(numbers.map((label) => label.text)).size).toBe(numbers.length)
    for (const [i, label] of numbers.entries()) {
      for (const other of numbers.slice(i + 1)) expect(overlap(label, other), `${label.text} over ${other.text}`).toBe(false)
      for (const point of points) expect(overlap(label, point), `${label.text} over a point`).toBe(false)
    }
  })
})
