/**
 * The tuner's report page in a real browser: `tune --out report.html` as built, opened in headless Debian Chromium —
 * the cost-against-freshness chart has one mark per combination, and the page asked nothing of the network.
 */
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import type { Browser } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { chromiumAvailable, externalRequests, launchChromium, openRecordedPage } from "../support/browser.js"
import { root } from "../support/build.js"

const dir = mkdtempSync(join(tmpdir(), "tuner-report-"))
const report = join(dir, "report.html")
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
  if (chromiumAvailable()) browser = await launchChromium()
}, 120_000)

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
