// Test support: headless Debian Chromium driven by playwright-core, with a record of every request a page made.
import { chromium, type Browser, type Page } from "playwright-core"
import { existsSync } from "node:fs"

/** Where `.ci/run` puts Debian's Chromium (package `chromium`); overridable for local runs. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"

export const chromiumAvailable = (): boolean => existsSync(chromiumPath)

// Without the background-networking flags Chromium keeps dialling Google's hosts, which this closed network refuses.
const launchArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage"
]

export const launchChromium = (): Promise<Browser> =>
  chromium.launch({ executablePath: chromiumPath, args: launchArgs, headless: true })

/** A page in a fresh context, and every URL it requested (to prove it loaded nothing from the network). */
export interface RecordedPage {
  readonly page: Page
  readonly requests: Array<string>
  readonly consoleErrors: Array<string>
}

export const openRecordedPage = async (browser: Browser): Promise<RecordedPage> => {
  const context = await browser.newContext()
  const page = await context.newPage()
  const requests: Array<string> = []
  const consoleErrors: Array<string> = []
  page.on("request", (request) => {
    requests.push(request.url())
  })
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text())
  })
  page.on("pageerror", (error) => {
    consoleErrors.push(String(error))
  })
  return { page, requests, consoleErrors }
}

/** Requests that left the machine: anything but file:, data:, blob:, about: and loopback http(s). */
export const externalRequests = (requests: ReadonlyArray<string>): Array<string> =>
  requests.filter((url) => {
    if (/^(file|data|blob|about):/.test(url)) return false
    try {
      const host = new URL(url).hostname
      return !(host === "127.0.0.1" || host === "localhost" || host === "[::1]")
    } catch {
      return true
    }
  })
