/**
 * End-to-end: the first scrape of a service that has just started lists exactly the `compile_trigger_*` series
 * docs/service.md's metrics table documents — the budget's too, with no budget set — each of its documented type and
 * at its documented starting value.
 */
import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import parsePrometheusTextFormat from "parse-prometheus-text-format"
import { root } from "../support/build.js"
import { startService } from "../support/harness.js"

interface DocumentedSeries {
  readonly name: string
  readonly type: string
  readonly atStart: string
}

/** The rows of the table under "## Metrics" in docs/service.md. */
const documentedSeries = (): Array<DocumentedSeries> => {
  const text = readFileSync(join(root, "docs/service.md"), "utf8")
  const section = text.slice(text.indexOf("\n## Metrics\n"), text.indexOf("\n## ", text.indexOf("\n## Metrics\n") + 1))
  return Array.from(
    section.matchAll(/^\| `(compile_trigger_[a-z0-9_]+)` \| (counter|gauge|histogram) \| ([^|]+?) \|/gm),
    ([, name, type, atStart]) => ({ name: name!, type: type!, atStart: atStart! })
  )
}

describe("GET /metrics of a service that just started", () => {
  it("has every documented series, of its type, at its documented value — and no undocumented one", async () => {
    const documented = documentedSeries()
    expect(documented.length).toBeGreaterThanOrEqual(17)
    const startedAt = Date.now()
    const service = await startService({})
    try {
      const families = parsePrometheusTextFormat(await (await fetch(`${service.base}/metrics`)).text())
      const scraped = new Map(families.filter((f) => f.name.startsWith("compile_trigger_")).map((f) => [f.name, f]))
      expect([...scraped.keys()].sort()).toEqual(documented.map((series) => series.name).sort())
      for (const { atStart, name, type } of documented) {
        const family = scraped.get(name)!
        expect(family.type, name).toBe(type.toUpperCase())
        const values = family.metrics.map((sample) => Number(type === "histogram" ? sample.count : sample.value))
        expect(values.length, name).toBeGreaterThan(0)
        for (const value of values) {
          if (atStart === "start time") {
            expect(value, name).toBeGreaterThanOrEqual(Math.floor(startedAt / 1000) - 1)
            expect(value, name).toBeLessThanOrEqual(Date.now() / 1000 + 1)
          } else expect(value, name).toBe(Number(atStart))
        }
      }
    } finally {
      await service.stop()
    }
  }, 90_000)
})
