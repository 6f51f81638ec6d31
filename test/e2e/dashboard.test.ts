/**
 * End-to-end: the dashboard in headless Chromium (Debian's, via playwright-core) against the built service and a
 * webhook receiver in this process — empty at first, then the bank, its compile with its reason, the queue figures,
 * a running compile, "compile now" and the banks list; with API_TOKEN, the token prompt, a wrong token and the right
 * one; a budget; 1,000,000 banks. Also `GET /v1/compiles` itself, through fetch and the typed client. Saves a
 * screenshot (DASHBOARD_SCREENSHOT, default under the OS temp dir).
 */
import { FetchHttpClient } from "@effect/platform"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { DateTime, Effect, Option, Redacted } from "effect"
import { mkdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import type { Browser, Page } from "playwright-core"
import { CompileTriggerClient } from "../../src/CompileTriggerApi.js"
import { CompileRecord } from "../../src/index.js"
import { chromiumAvailable, externalRequests, launchChromium, openRecordedPage, type RecordedPage } from "../support/browser.js"
import { startPgCluster } from "../support/pgCluster.js"
import {
  eventually,
  freePort,
  type ServiceProcess,
  startService,
  startWebhook,
  type WebhookReceiver
} from "../support/harness.js"

const THRESHOLD = 3
const API_TOKEN = "dashboard-secret-token"
const screenshotPath = process.env.DASHBOARD_SCREENSHOT ?? join(tmpdir(), "effect-compile-trigger-dashboard.png")

// In CI a missing browser is an error (.ci/run installs it); elsewhere these tests are skipped.
const runBrowser = chromiumAvailable() || process.env.CI !== undefined

let browser: Browser
let webhook: WebhookReceiver

const retain = (service: ServiceProcess, bankId: string, count: number, token?: string) =>
  fetch(`${service.base}/v1/banks/${bankId}/retain`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
    body: JSON.stringify({ count })
  })

/** The text of a table's body rows, one string per row. */
const rows = (page: Page, table: string) =>
  page.locator(`#${table} tbody tr`).evaluateAll((trs) => trs.map((tr) => (tr as unknown as { readonly innerText: string }).innerText))

const text = (page: Page, id: string) => page.locator(`#${id}`).innerText()

/** The activity chart's time-axis labels (drawn on a canvas; the page keeps them on the chart's element too). */
const timeLabels = async (page: Page): Promise<Array<string>> =>
  ((await page.locator("#chart").getAttribute("data-time-labels")) ?? "").split(" ").filter((label) => label !== "")

beforeAll(async () => {
  if (!runBrowser) return
  browser = await launchChromium()
  webhook = await startWebhook((bankId) => ({
    status: 200,
    body: JSON.stringify({ bankId, tokensUsed: 1234, pagesUpdated: 1 }),
    ...(bankId.startsWith("slow-") ? { delayMs: 4000 } : {})
  }))
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await webhook?.close()
})

describe.skipIf(!runBrowser)("dashboard (headless Chromium)", () => {
  it("shows an empty service, then the bank, its compile with its reason, the queue figures and the banks", async () => {
    const service = await startService({
      COMPILE_WEBHOOK_URL: webhook.url,
      COMPILE_SIZE_THRESHOLD: String(THRESHOLD),
      COMPILE_BUDGET_TOKENS: "100000",
      COMPILE_BUDGET_PERIOD: "1 day"
    })
    let recorded: RecordedPage | undefined
    try {
      recorded = await openRecordedPage(browser)
      const { page } = recorded
      await page.setViewportSize({ width: 1360, height: 1500 })
      await page.goto(`${service.base}/`)
      await page.locator("#main").waitFor({ state: "visible" })
      await expect.poll(() => text(page, "q-banks")).toBe("0")
      expect(await text(page, "history-empty")).toBe("No compile has finished yet.")
      expect(await text(page, "banks-empty")).toBe("No bank yet: retains create them.")
      expect(await text(page, "running-empty")).toBe("No compile is running.")
      expect(await page.locator("#auth").isHidden()).toBe(true)
      await page.locator("#budget").waitFor({ state: "visible" })

      // Retain until the bank compiles: the webhook receives it, the page shows it.
      for (let n = 0; n < THRESHOLD; n++) expect((await retain(service, "support-bot", 1)).status).toBe(202)
      const call = await webhook.waitForCall("support-bot")
      expect(call.body).toMatchObject({ reason: "size", memories: THRESHOLD })
      await expect.poll(() => rows(page, "history"), { timeout: 10_000 }).toEqual([
        expect.stringMatching(/support-bot\s+size\s+success\s+.+\s+3\s+0\s+1,234/)
      ])
      await expect.poll(() => rows(page, "banks")).toEqual([expect.stringMatching(/^support-bot\s+idle\s+0\s+0\s/)])
      await expect.poll(() => text(page, "q-banks")).toBe("1")
      expect(await text(page, "q-size")).toBe("0")
      expect(await text(page, "q-capacity")).toBe("of 10,000")

      // A slow compile shows as running, with its elapsed time.
      for (const bankId of ["billing-agent", "research-notes", "slow-archive"]) await retain(service, bankId, THRESHOLD)
      await retain(service, "onboarding", 2)
      await expect.poll(() => rows(page, "running"), { timeout: 10_000 }).toEqual([
        expect.stringMatching(/^slow-archive\s+size\s+1\s+3\s+\d+(\.\d)? (ms|s)$/)
      ])
      await expect.poll(() => text(page, "q-running")).toBe("1")
      await expect.poll(() => text(page, "rate-retains")).not.toBe("–")

      // The bank lookup and "compile now".
      await page.locator("#banks tbody button", { hasText: "support-bot" }).click()
      await expect.poll(() => text(page, "lookup-id")).toBe("support-bot")
      expect(await text(page, "lookup-status")).toBe("idle")
      expect(await text(page, "lookup-policy")).toMatch(new RegExp(`sizeThreshold\\s+${THRESHOLD} \\(default\\)`))
      expect(await text(page, "lookup-scopes")).toMatch(/none named since the last compile/)
      await expect.poll(() => rows(page, "lookup-compiles")).toHaveLength(1)
      await page.locator("#compile-now").click()
      await eventually(async () => webhook.calls.filter((c) => c.bankId === "support-bot").length, (n) => n === 2)
      await expect.poll(() => rows(page, "lookup-compiles"), { timeout: 10_000 }).toEqual([
        expect.stringMatching(/manual\s+success/),
        expect.stringMatching(/size\s+success/)
      ])

      // Filters of the history: by outcome, then by bank.
      await expect.poll(() => rows(page, "history"), { timeout: 10_000 }).toHaveLength(5)
      await page.locator("#history-bank").fill("billing-agent")
      await expect.poll(() => rows(page, "history")).toEqual([expect.stringMatching(/^\S+\s+billing-agent\s+size\s+success/)])
      await page.locator("#history-bank").fill("")
      await page.locator("#history-outcome").selectOption("failure")
      await expect.poll(() => text(page, "history-empty")).toBe("No compile matches the filter.")
      await page.locator("#history-outcome").selectOption("")

      // The banks list by status, page by page.
      await page.locator("#banks-status").selectOption("idle")
      await expect.poll(async () => (await rows(page, "banks")).every((row) => /\sidle\s/.test(row))).toBe(true)
      await page.locator("#banks-status").selectOption("")
      await expect.poll(async () => (await rows(page, "banks")).length).toBe(5)

      await expect.poll(() => page.locator("#budget-levels [data-bucket=tokens]").innerText()).toMatch(/93,8\d\d \/ 100,000/)
      await page.waitForTimeout(2500) // one more poll, for the chart
      mkdirSync(dirname(screenshotPath), { recursive: true })
      await page.screenshot({ path: screenshotPath, fullPage: true })
      expect(externalRequests(recorded.requests)).toEqual([])
      expect(recorded.consoleErrors).toEqual([])
    } finally {
      await recorded?.page.context().close()
      await service.stop()
    }
  }, 120_000)

  it("with API_TOKEN: asks for the token, says clearly when it is wrong, then shows data; the token stays out of the page, URLs and logs", async () => {
    const service = await startService({
      COMPILE_WEBHOOK_URL: webhook.url,
      COMPILE_SIZE_THRESHOLD: String(THRESHOLD),
      API_TOKEN
    })
    let recorded: RecordedPage | undefined
    try {
      expect((await retain(service, "secured-bank", 1, API_TOKEN)).status).toBe(202)
      recorded = await openRecordedPage(browser)
      const { page } = recorded
      // The page and its assets need no token.
      const answer = await page.goto(`${service.base}/ui`)
      expect(answer?.status()).toBe(200)
      await page.locator("#auth").waitFor({ state: "visible" })
      expect(await text(page, "auth-message")).toContain("This service requires an API token")
      expect(await page.locator("#main").isHidden()).toBe(true)

      await page.locator("#token-input").fill("not-the-token")
      await page.locator("#token-submit").click()
      await expect.poll(() => text(page, "auth-message")).toContain("Wrong API token: the service refused it (401)")
      expect(await page.locator("#main").isHidden()).toBe(true)
      expect(await page.evaluate<number>("sessionStorage.length")).toBe(0)

      await page.locator("#token-input").fill(API_TOKEN)
      await page.locator("#token-input").press("Enter")
      await page.locator("#main").waitFor({ state: "visible" })
      await expect.poll(() => rows(page, "banks")).toEqual([expect.stringMatching(/^secured-bank\s+idle\s+1\s/)])
      await expect.poll(() => text(page, "q-banks")).toBe("1")
      expect(await page.locator("#budget").isHidden()).toBe(true) // no budget set

      // Kept for the tab only; not in the page, any URL or the service's output.
      expect(await page.evaluate<Array<string>>("Object.values(sessionStorage)")).toEqual([API_TOKEN])
      expect(await page.content()).not.toContain(API_TOKEN)
      expect(await page.locator("#token-input").inputValue()).toBe("")
      expect(recorded.requests.filter((url) => url.includes(API_TOKEN))).toEqual([])
      expect(page.url()).not.toContain(API_TOKEN)
      expect(service.output()).not.toContain(API_TOKEN)

      // A reload in the same tab keeps the token; "Forget token" drops it.
      await page.reload()
      await page.locator("#main").waitFor({ state: "visible" })
      await page.locator("#sign-out").click()
      await page.locator("#auth").waitFor({ state: "visible" })
      expect(await page.evaluate<number>("sessionStorage.length")).toBe(0)
      expect(externalRequests(recorded.requests)).toEqual([])
      // The two refused calls are the only console errors (Chromium logs every 401).
      expect(recorded.consoleErrors.filter((line) => !line.includes("401"))).toEqual([])
    } finally {
      await recorded?.page.context().close()
      await service.stop()
    }
  }, 120_000)

  it("with a budget: its levels, and the bank deferred for its own budget", async () => {
    const service = await startService({
      COMPILE_WEBHOOK_URL: webhook.url,
      COMPILE_SIZE_THRESHOLD: String(THRESHOLD),
      COMPILE_BUDGET_TOKENS: "5000",
      COMPILE_BUDGET_BANK_TOKENS: "1000",
      COMPILE_BUDGET_PERIOD: "1 day"
    })
    let recorded: RecordedPage | undefined
    try {
      recorded = await openRecordedPage(browser)
      const { page } = recorded
      await page.goto(`${service.base}/`)
      await page.locator("#budget").waitFor({ state: "visible" })
      const level = (bucket: string) => page.locator(`#budget-levels [data-bucket="${bucket}"]`).innerText()
      expect(await level("tokens")).toMatch(/5,000 \/ 5,000\s+full/)
      expect(await level("per bank")).toMatch(/1,000 tokens/)
      expect(await page.locator("#budget-levels [data-bucket=compiles]").count()).toBe(0) // unlimited: no bucket

      await retain(service, "costly-bank", THRESHOLD) // uses 1,234 tokens: 234 over its own 1,000
      await webhook.waitForCall("costly-bank")
      await expect.poll(() => level("tokens"), { timeout: 10_000 }).toMatch(/^tokens\s+3,76\d \/ 5,000\s+full again at/i)
      await fetch(`${service.base}/v1/banks/costly-bank/compile`, { method: "POST" })
      await expect.poll(() => rows(page, "budget-deferred"), { timeout: 10_000 }).toEqual([
        // The refill time: with its date when it falls on another day (a run in the evening).
        expect.stringMatching(/^costly-bank\s+-2\d\d \/ 1,000\s+(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d$/)
      ])
      expect(await level("per bank")).toMatch(/0 waiting for the budget, 1 deferred/)
      expect(recorded.consoleErrors).toEqual([])
    } finally {
      await recorded?.page.context().close()
      await service.stop()
    }
  }, 120_000)

  it("with its store down: the store card says failing, and an alert says what a crash would lose; then healthy again", async () => {
    const pg = await startPgCluster()
    if (pg === undefined) throw new Error("PostgreSQL server binaries not found: .ci/run installs them")
    let service: ServiceProcess | undefined
    let recorded: RecordedPage | undefined
    try {
      service = await startService({ DATABASE_URL: pg.url, COMPILE_SIZE_THRESHOLD: "1000", COMPILE_FLUSH_INTERVAL: "200 millis" })
      recorded = await openRecordedPage(browser)
      const { page } = recorded
      await page.goto(`${service.base}/`)
      await page.locator("#store-card").waitFor({ state: "visible" })
      expect(await text(page, "store-state")).toBe("healthy")
      expect(await page.locator("#store-alert").isHidden()).toBe(true)
      pg.stopServer()
      for (let n = 0; n < 3; n++) await retain(service, `kept-${n}`, 1)
      await expect.poll(() => text(page, "store-state"), { timeout: 15_000 }).toBe("failing")
      expect(await text(page, "store-detail")).toMatch(/^3 unflushed, oldest ≤ \d+ s$/)
      expect(await text(page, "store-alert")).toMatch(/^The store has failed since .*: 3 unflushed changes are only in memory/)
      await page.screenshot({ path: screenshotPath.replace(/\.png$/, "-store.png"), fullPage: true })
      await pg.restart()
      await expect.poll(() => text(page, "store-state"), { timeout: 20_000 }).toBe("healthy")
      expect(await text(page, "store-detail")).toBe("every change stored")
      expect(await page.locator("#store-alert").isHidden()).toBe(true)
      expect(recorded.consoleErrors).toEqual([])
    } finally {
      await recorded?.page.context().close()
      await service?.stop()
      pg.stop()
    }
  }, 120_000)

  it("keeps a 200-character bank id inside the window (cut short, whole in a tooltip), labels the time axis with distinct times, and shows a bank without a policy on the defaults", async () => {
    const service = await startService({ COMPILE_WEBHOOK_URL: webhook.url, COMPILE_SIZE_THRESHOLD: String(THRESHOLD) })
    let recorded: RecordedPage | undefined
    try {
      recorded = await openRecordedPage(browser)
      const { page } = recorded
      const width = 1280
      await page.setViewportSize({ width, height: 900 })
      await page.goto(`${service.base}/`)
      await page.locator("#main").waitFor({ state: "visible" })
      // A fresh page: a few samples seconds apart. Every label of the time axis is a different time.
      await expect.poll(async () => (await timeLabels(page)).length, { timeout: 10_000 }).toBeGreaterThan(1)
      await page.waitForTimeout(2500) // one more sample
      const labels = await timeLabels(page)
      expect(labels.every((label) => /^\d\d:\d\d:\d\d$/.test(label)), labels.join(" ")).toBe(true)
      expect(new Set(labels).size, labels.join(" ")).toBe(labels.length)

      // A slow compile of a bank whose id is as long as ids go: in the running table, the history and the banks.
      const longId = `slow-${"0123456789abcdef".repeat(13)}`.slice(0, 200)
      expect((await retain(service, longId, THRESHOLD)).status).toBe(202)
      await expect.poll(() => page.locator("#running tbody button").count(), { timeout: 10_000 }).toBe(1)
      await expect.poll(() => page.locator("#history tbody button").count(), { timeout: 15_000 }).toBe(1)
      await page.locator("#banks tbody button").first().click()
      await expect.poll(() => text(page, "lookup-id")).toBe(longId)
      expect(await page.evaluate<number>("document.documentElement.scrollWidth")).toBeLessThanOrEqual(width)
      for (const link of await page.locator("button.link").all()) expect(await link.getAttribute("title")).toBe(longId)
      expect(await page.locator("#lookup-id").getAttribute("title")).toBe(longId)

      // No policy: each setting shown with the service's default value.
      const settings = ["enabled", "sizeThreshold", "stalenessDays", "stalenessMinMemories", "forgetThreshold", "forgetDelaySeconds"]
      await expect.poll(() => text(page, "lookup-policy")).toMatch(/default/)
      const facts = await text(page, "lookup-policy")
      for (const setting of settings) expect(facts).toMatch(new RegExp(`${setting}\\s+\\S+ \\(default\\)`))
      expect(facts).toMatch(new RegExp(`sizeThreshold\\s+${THRESHOLD} \\(default\\)`))
      // With one: its own value marked "own", the rest with their values, marked "default".
      const put = await fetch(`${service.base}/v1/banks/${longId}/policy`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ sizeThreshold: 7 })
      })
      expect(put.status).toBe(200)
      await expect.poll(() => text(page, "lookup-policy"), { timeout: 10_000 }).toMatch(/sizeThreshold\s+7 \(own\)/)
      expect(await text(page, "lookup-policy")).toMatch(/stalenessDays\s+7 \(default\)/)
      // A single service: nothing says "this node".
      expect(await page.locator("main").innerText()).not.toContain("this node")
      expect(recorded.consoleErrors).toEqual([])
    } finally {
      await recorded?.page.context().close()
      await service.stop()
    }
  }, 120_000)

  it("freshness: the oldest memory's age, the banks past their deadline, and a bank's next compile with its rules", async () => {
    const service = await startService({
      COMPILE_WEBHOOK_URL: webhook.url,
      COMPILE_SIZE_THRESHOLD: String(THRESHOLD),
      COMPILE_MAX_WAIT: "2 seconds"
    })
    let recorded: RecordedPage | undefined
    try {
      recorded = await openRecordedPage(browser)
      const { page } = recorded
      await page.setViewportSize({ width: 1360, height: 1500 })
      await page.goto(`${service.base}/`)
      await page.locator("#freshness").waitFor({ state: "visible" })
      expect(await text(page, "fresh-overdue")).toBe("0")
      // A bank whose own max wait is an hour: its next compile is that deadline, or two more memories.
      const put = await fetch(`${service.base}/v1/banks/calm/policy`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ maxWaitSeconds: 3600 })
      })
      expect(put.status).toBe(200)
      expect((await retain(service, "calm", 1)).status).toBe(202)
      // A slow bank: due 2 s after its retain, then compiling for 4 s — past its deadline meanwhile.
      expect((await retain(service, "slow-late", 1)).status).toBe(202)
      await expect.poll(() => text(page, "fresh-overdue"), { timeout: 10_000 }).toBe("1")
      expect(await rows(page, "fresh-closest")).toEqual([
        expect.stringMatching(/^slow-late\s+running\s.*\d+ s late$/),
        expect.stringMatching(/^calm\s+idle\s/)
      ])
      expect(await text(page, "fresh-waiting")).toBe("2 banks with uncompiled memories")
      await page.locator("#fresh-closest tbody button", { hasText: "calm" }).click()
      await expect.poll(() => text(page, "lookup-next")).toMatch(/^Next compile: next: deadline at \S+, or size after 2 more memories$/)
      const rules = await text(page, "lookup-rules")
      expect(rules).toMatch(/size\s+after 2 more memories/)
      expect(rules).toMatch(/deadline \(first\)\s+at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/)
      expect(await text(page, "lookup-state")).toMatch(/oldest uncompiled memory\s+\d{4}-/)
      expect(recorded.consoleErrors).toEqual([])
    } finally {
      await recorded?.page.context().close()
      await service.stop()
    }
  }, 120_000)

  it("in cluster mode: says that retains/s, compiles/min, the chart and the budget are this node's", async () => {
    const pg = await startPgCluster()
    if (pg === undefined) throw new Error("PostgreSQL server binaries not found: .ci/run installs them")
    let node: ServiceProcess | undefined
    let recorded: RecordedPage | undefined
    try {
      node = await startService({
        DATABASE_URL: pg.url,
        CLUSTER_RUNNER_ADDRESS: `127.0.0.1:${await freePort()}`,
        COMPILE_WEBHOOK_URL: webhook.url,
        COMPILE_SIZE_THRESHOLD: String(THRESHOLD),
        COMPILE_BUDGET_TOKENS: "100000"
      }, 90_000)
      recorded = await openRecordedPage(browser)
      const { page } = recorded
      await page.goto(`${node.base}/`)
      await page.locator("#main").waitFor({ state: "visible" })
      await expect.poll(() => text(page, "rate-retains-scope"), { timeout: 10_000 }).toBe("last 10 s, this node")
      expect(await text(page, "rate-compiles-scope")).toBe("last 60 s, this node")
      expect(await text(page, "q-banks-scope")).toBe("in the whole cluster")
      expect(await text(page, "chart-scope")).toContain("this node")
      await page.locator("#budget").waitFor({ state: "visible" })
      await expect.poll(() => text(page, "budget-period"), { timeout: 10_000 }).toContain("this node's buckets")
      expect(recorded.consoleErrors).toEqual([])
    } finally {
      await recorded?.page.context().close()
      await node?.stop()
      pg.stop()
    }
  }, 180_000)

  it("with 1,000,000 banks: reads them 25 at a time, pages forward and back", async () => {
    const service = await startService({ COMPILE_WEBHOOK_URL: webhook.url, COMPILE_SIZE_THRESHOLD: "1000" })
    let recorded: RecordedPage | undefined
    try {
      const batch = (from: number) =>
        JSON.stringify(Array.from({ length: 1000 }, (_, k) => ({ bankId: `bank-${String(from + k).padStart(7, "0")}` })))
      for (let from = 0; from < 1_000_000; from += 1000) {
        const response = await fetch(`${service.base}/v1/retains`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: batch(from)
        })
        expect(response.status).toBe(202)
      }
      recorded = await openRecordedPage(browser)
      const { page } = recorded
      await page.goto(`${service.base}/`)
      await expect.poll(() => text(page, "q-banks"), { timeout: 20_000 }).toBe("1,000,000")
      await expect.poll(async () => (await rows(page, "banks"))[0]).toMatch(/^bank-0000000\s+idle\s+1\s/)
      expect(await rows(page, "banks")).toHaveLength(25)
      await page.locator("#banks-next").click()
      await expect.poll(async () => (await rows(page, "banks"))[0]).toMatch(/^bank-0000025\s/)
      expect(await text(page, "banks-page")).toBe("page 2")
      await page.locator("#banks-prev").click()
      await expect.poll(async () => (await rows(page, "banks"))[0]).toMatch(/^bank-0000000\s/)
      await page.waitForTimeout(2500)
      const bankReads = recorded.requests.filter((url) => new URL(url).pathname === "/v1/banks")
      expect(bankReads.length).toBeGreaterThan(2)
      expect(bankReads.every((url) => new URL(url).searchParams.get("limit") === "25")).toBe(true)
      expect(recorded.consoleErrors).toEqual([])
    } finally {
      await recorded?.page.context().close()
      await service.stop(30_000)
    }
  }, 300_000)
})

describe("GET /v1/compiles", () => {
  let service: ServiceProcess
  let receiver: WebhookReceiver
  beforeAll(async () => {
    receiver = await startWebhook((bankId) => ({
      status: bankId.startsWith("fail-") ? 500 : 200,
      body: JSON.stringify({ bankId, tokensUsed: 7 })
    }))
    service = await startService({
      COMPILE_WEBHOOK_URL: receiver.url,
      COMPILE_SIZE_THRESHOLD: "2",
      API_TOKEN
    })
  }, 60_000)
  afterAll(async () => {
    await service?.stop()
    await receiver?.close()
  })

  const get = (path: string, token: string | null = API_TOKEN) =>
    fetch(`${service.base}${path}`, token === null ? {} : { headers: { authorization: `Bearer ${token}` } })

  it("lists the finished compiles newest first, filtered by bank and outcome, with the running ones", async () => {
    for (const bankId of ["h-1", "h-2", "fail-1"]) {
      await retain(service, bankId, 2, API_TOKEN)
      await receiver.waitForCall(bankId)
      await eventually(
        async () => (await (await get(`/v1/compiles?bankId=${bankId}`)).json()) as { compiles: Array<unknown> },
        (body) => body.compiles.length >= 1
      )
    }
    const all = await (await get("/v1/compiles")).json() as {
      running: Array<unknown>
      compiles: Array<Record<string, unknown>>
    }
    expect(all.running).toEqual([])
    expect(all.compiles.map((record) => record.bankId).slice(-2)).toEqual(["h-2", "h-1"])
    expect(all.compiles.at(-1)).toEqual({
      bankId: "h-1",
      reason: "size",
      startedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      endedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      outcome: "success",
      memories: 2,
      forgets: 0,
      tokensUsed: 7,
      error: null,
      memoryWait: { meanSeconds: expect.any(Number), oldestSeconds: expect.any(Number) }
    })
    const failure = all.compiles.find((record) => record.bankId === "fail-1")
    expect(failure).toMatchObject({ outcome: "failure", tokensUsed: 0, error: expect.stringContaining("HTTP 500") })
    const one = await (await get("/v1/compiles?bankId=h-2&limit=5")).json() as { compiles: Array<{ bankId: string }> }
    expect(one.compiles.map((record) => record.bankId)).toEqual(["h-2"])
    const successes = await (await get("/v1/compiles?outcome=success&limit=1")).json() as {
      compiles: Array<{ bankId: string }>
    }
    expect(successes.compiles.map((record) => record.bankId)).toEqual(["h-2"])
  })

  it.effect("the typed client reads them as CompileRecords, and /openapi.json lists the route", () =>
    Effect.gen(function*() {
      const client = yield* CompileTriggerClient.make({ baseUrl: service.base, token: Redacted.make(API_TOKEN) })
      const { compiles, running } = yield* client.banks.listCompiles({ urlParams: { bankId: "h-1" } })
      expect(running).toEqual([])
      expect(compiles).toHaveLength(1)
      expect(compiles[0]).toBeInstanceOf(CompileRecord)
      expect(compiles[0]).toMatchObject({ bankId: "h-1", reason: "size", outcome: "success", error: Option.none() })
      expect(DateTime.toEpochMillis(compiles[0]!.endedAt)).toBeGreaterThanOrEqual(DateTime.toEpochMillis(compiles[0]!.startedAt))
      const spec = yield* Effect.promise(() => fetch(`${service.base}/openapi.json`).then((r) => r.json()))
      expect(Object.keys((spec as { paths: Record<string, unknown> }).paths)).toContain("/v1/compiles")
    }).pipe(Effect.provide(FetchHttpClient.layer)))

  it("refuses a bad limit, bank id or outcome with a 400 naming it, and a missing token with a 401", async () => {
    for (const [query, message] of [
      ["limit=0", /limit must be an integer from 1 to 1000/],
      ["limit=1001", /limit must be an integer from 1 to 1000/],
      ["limit=x", /limit/],
      ["bankId=has%20space", /bankId must be 1 to 200 characters/],
      ["outcome=maybe", /outcome/]
    ] as const) {
      const response = await get(`/v1/compiles?${query}`)
      expect(response.status, query).toBe(400)
      expect(await response.text(), query).toMatch(message)
    }
    expect((await get("/v1/compiles", null)).status).toBe(401)
    expect((await get("/v1/compiles", "wrong")).status).toBe(401)
  })

  it("serves the page and its assets without a token, with a strict Content-Security-Policy", async () => {
    for (const path of ["/", "/ui", "/ui/"]) {
      const response = await fetch(`${service.base}${path}`)
      expect(response.status, path).toBe(200)
      expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8")
      expect(response.headers.get("content-security-policy")).toContain("script-src 'self'")
      expect(await response.text()).toContain("<title>effect-compile-trigger · dashboard</title>")
    }
    for (const path of ["/ui/dashboard.js", "/ui/dashboard.css", "/ui/vendor/uPlot.iife.min.js", "/ui/vendor/uPlot.min.css"]) {
      expect((await fetch(`${service.base}${path}`)).status, path).toBe(200)
    }
    expect((await fetch(`${service.base}/ui/../package.json`)).status).toBe(404)
    expect((await fetch(`${service.base}/ui/nothing.js`)).status).toBe(404)
  })
})
