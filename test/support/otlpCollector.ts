/**
 * An OTLP/HTTP trace receiver for the tests, on 127.0.0.1: the exporter (`@opentelemetry/exporter-trace-otlp-http`)
 * POSTs OTLP JSON to `/v1/traces`; every span is kept, flattened, with its resource's `service.name`.
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

interface OtlpValue {
  readonly stringValue?: string
  readonly intValue?: number | string
}
interface OtlpAttribute {
  readonly key: string
  readonly value: OtlpValue
}
interface OtlpSpan {
  readonly name: string
  readonly traceId: string
  readonly attributes: ReadonlyArray<OtlpAttribute>
}
interface OtlpRequest {
  readonly resourceSpans: ReadonlyArray<{
    readonly resource: { readonly attributes: ReadonlyArray<OtlpAttribute> }
    readonly scopeSpans: ReadonlyArray<{ readonly spans: ReadonlyArray<OtlpSpan> }>
  }>
}

export interface Span {
  readonly name: string
  readonly traceId: string
  readonly attributes: Record<string, string | number | undefined>
  readonly serviceName: string | undefined
}

const flatten = (attributes: ReadonlyArray<OtlpAttribute>): Record<string, string | number | undefined> =>
  Object.fromEntries(attributes.map(({ key, value }) => [key, value.stringValue ?? value.intValue]))

/** An OTLP/HTTP JSON receiver on 127.0.0.1 collecting the spans of every `POST /v1/traces`. */
export const startCollector = async () => {
  const spans: Array<Span> = []
  const contentTypes = new Set<string | undefined>()
  const server = createServer((request, response) => {
    let body = ""
    request.on("data", (chunk: Buffer) => (body += chunk.toString()))
    request.on("end", () => {
      if (request.method === "POST" && request.url === "/v1/traces") {
        contentTypes.add(request.headers["content-type"])
        for (const { resource, scopeSpans } of (JSON.parse(body) as OtlpRequest).resourceSpans) {
          const serviceName = flatten(resource.attributes)["service.name"]
          for (const { spans: batch } of scopeSpans) {
            for (const span of batch) {
              spans.push({
                name: span.name,
                traceId: span.traceId,
                attributes: flatten(span.attributes),
                serviceName: typeof serviceName === "string" ? serviceName : undefined
              })
            }
          }
        }
      }
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
