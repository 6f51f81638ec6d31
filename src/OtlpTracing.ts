/**
 * Trace export over OTLP/HTTP (JSON) with the OpenTelemetry SDK 2.x, through `@effect/opentelemetry`: the spans of the
 * service's HTTP requests and the `CompileQueue.compile` span of each engine run (attribute `bankId`). Import it from
 * `effect-compile-trigger/OtlpTracing`; its optional peers are `@effect/opentelemetry`,
 * `@opentelemetry/sdk-trace-base` and `@opentelemetry/exporter-trace-otlp-http`.
 *
 * @since 0.1.0
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import type * as Resource from "@effect/opentelemetry/Resource"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
import type { Duration, Layer } from "effect"

/**
 * @since 0.1.0
 */
export interface Options {
  /** The `service.name` resource attribute. */
  readonly serviceName: string
  /**
   * Where to POST the spans, e.g. `http://127.0.0.1:4318/v1/traces`. Unset, the exporter reads
   * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`.
   */
  readonly url?: string | undefined
  /** How long the last export may take when the layer's scope closes (default 3 seconds). */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
}

/**
 * Installs an OpenTelemetry tracer that batches spans and exports them; its scope's end flushes what is left.
 * Provide it beneath the layers whose spans it should see (they check for a tracer when they are built).
 *
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Resource.Resource> =>
  NodeSdk.layer(() => ({
    resource: { serviceName: options.serviceName },
    spanProcessor: new BatchSpanProcessor(new OTLPTraceExporter(options.url === undefined ? {} : { url: options.url })),
    shutdownTimeout: options.shutdownTimeout
  }))
