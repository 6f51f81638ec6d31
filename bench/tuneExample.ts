/**
 * Regenerates the worked example of the threshold tuner (docs/tuner.md): runs `tune` on a synthetic month (the command in
 * docs/tuner.md), writes docs/tune-example.html and screenshots its charts with Chromium (test/support/browser.ts) into
 * docs/tune-scatter.png and docs/tune-daily.png. `node --import tsx bench/tuneExample.ts` (after `npm run build`).
 */
import { execFileSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { externalRequests, launchChromium, openRecordedPage } from "../test/support/browser.js"
import { root } from "../test/support/build.js"

const args = [
  "tune", "--synthetic", "--banks", "2000", "--days", "30", "--retains-per-day", "20000", "--forgets-per-day", "200",
  "--seed", "1", "--size", "20,50,100,200", "--staleness-days", "1,7", "--compile-seconds", "60",
  "--tokens-base", "2000", "--tokens-per-memory", "100", "--out", "docs/tune-example.html"
]
const table = execFileSync(process.execPath, [join(root, "dist/bin.js"), ...args], { cwd: root, encoding: "utf8" })
writeFileSync(join(root, "docs/tune-example.txt"), table)
process.stdout.write(table)

const browser = await launchChromium()
try {
  const { consoleErrors, page, requests } = await openRecordedPage(browser)
  await page.setViewportSize({ width: 1000, height: 900 })
  await page.goto(pathToFileURL(join(root, "docs/tune-example.html")).href)
  await page.locator("#scatter").screenshot({ path: join(root, "docs/tune-scatter.png") })
  await page.locator("#daily").screenshot({ path: join(root, "docs/tune-daily.png") })
  if (externalRequests(requests).length > 0 || consoleErrors.length > 0) throw new Error("the page asked for more than itself")
} finally {
  await browser.close()
}
