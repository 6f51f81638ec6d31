/**
 * OpenTelemetry export end to end: the service with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/HTTP receiver
 * in this process (`test/support/otlpCollector.ts`), which collects every span it is sent.
 */
import { describe, expect, it } from "@effect/vitest"
import { eventually, spawnService, startService } from "../support/harness.js"
import { startCollector } from "../support/otlpCollector.js"

describe.concurrent("OpenTelemetry export", () => {
  it("a retain request's span and its compile's span (with bankId) reach the OTLP receiver", async () => {
    const collector = await startCollector()
    const service = await startService({
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint,
      COMPILE_SIZE_THRESHOLD: "3" // the dry-run engine compiles the bank at its third memory
    }, 60_000)
    try {
      expect(service.output()).toContain(`tracing: OTLP/HTTP to ${collector.endpoint} as effect-compile-trigger`)
      const retained = await fetch(`${service.base}/v1/banks/traced-1/retain`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ count: 3 })
      })
      expect(retained.status).toBe(202)
      await eventually(
        async () => (await (await fetch(`${service.base}/v1/banks/traced-1`)).json()) as { lastCompileAt: string | null },
        (bank) => bank.lastCompileAt !== null
      )
      // The batch processor exports every few seconds; the stop flushes whatever is left.
      expect(await service.stop()).toMatchObject({ code: 0 })

      const request = collector.spans.find((span) =>
        span.name === "http.server POST" && span.attributes["url.path"] === "/v1/banks/traced-1/retain"
      )
      expect(request, JSON.stringify(collector.spans.map((span) => span.name))).toBeDefined()
      expect(request!.attributes["http.response.status_code"]).toBe(202)
      expect(request!.attributes.bankId).toBe("traced-1")
      expect(request!.serviceName).toBe("effect-compile-trigger")
      const compile = collector.spans.find((span) => span.name === "CompileQueue.compile")
      expect(compile?.attributes.bankId).toBe("traced-1")
      expect(compile?.serviceName).toBe("effect-compile-trigger")
      expect([...collector.contentTypes]).toEqual(["application/json"])
    } finally {
      await service.stop(1000)
      await collector.close()
    }
  }, 120_000)

  it("OTEL_SERVICE_NAME names the service; a bad endpoint stops startup naming the variable", async () => {
    const collector = await startCollector()
    const named = await startService(
      { OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint, OTEL_SERVICE_NAME: "sidecar-7" },
      60_000
    )
    try {
      expect((await fetch(`${named.base}/v1/banks/named/retain`, { method: "POST" })).status).toBe(202)
      await named.stop()
      expect(collector.spans.length).toBeGreaterThan(0)
      expect(new Set(collector.spans.map((span) => span.serviceName))).toEqual(new Set(["sidecar-7"]))
    } finally {
      await named.stop(1000)
      await collector.close()
    }
    const bad = await spawnService({ OTEL_EXPORTER_OTLP_ENDPOINT: "localhost:4318" })
    expect((await bad.exited).code).toBe(1)
    expect(bad.output()).toMatch(/OTEL_EXPORTER_OTLP_ENDPOINT must be an http:\/\/ or https:\/\/ URL, got "localhost:4318"/)
  }, 120_000)
})
