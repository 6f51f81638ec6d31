/**
 * The connection bounds and the bank limit as settings: their defaults (the cap from the open-file limit), Node's
 * server options for them, the checks of `CompileTriggerServer.layer`'s options, and the environment variables that
 * set them (`HTTP_*`, `COMPILE_MAX_BANKS`), each bad value an error naming its variable.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either } from "effect"
import {
  defaultMaxConnections,
  openFileLimit,
  resolveLimits,
  serverOptions
} from "../../src/internal/http/connectionLimits.js"
import * as ServiceConfig from "../../src/ServiceConfig.js"

const load = (env: Record<string, string>) =>
  Effect.withConfigProvider(ServiceConfig.config, ConfigProvider.fromMap(new Map(Object.entries(env))))

const failure = (env: Record<string, string>) =>
  Effect.map(Effect.either(load(env)), (result) =>
    Either.isLeft(result) ? ServiceConfig.formatConfigError(result.left) : "loaded")

describe("connection limits", () => {
  it("the cap: 10,000, or half the open-file limit when that is lower", () => {
    expect(defaultMaxConnections(1024)).toBe(512)
    expect(defaultMaxConnections(4096)).toBe(2048)
    expect(defaultMaxConnections(20_000)).toBe(10_000)
    expect(defaultMaxConnections(1_048_576)).toBe(10_000)
    expect(defaultMaxConnections(undefined)).toBe(10_000)
    expect(defaultMaxConnections(1)).toBe(1)
    // Linux: read from /proc/self/limits.
    if (process.platform === "linux") expect(openFileLimit()).toBeGreaterThan(0)
  })

  it("defaults: headers 10 s, request 30 s, keep-alive 5 s; Node checks the deadlines every quarter of the shorter", () => {
    const limits = resolveLimits({ maxConnections: 100 })
    expect(limits).toEqual({
      headersTimeoutMillis: 10_000,
      requestTimeoutMillis: 30_000,
      keepAliveTimeoutMillis: 5_000,
      maxConnections: 100
    })
    expect(serverOptions(limits)).toEqual({ headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 2_500 })
    expect(serverOptions(resolveLimits({ headersTimeout: "400 millis" })).connectionsCheckingInterval).toBe(250)
    expect(serverOptions(resolveLimits({ headersTimeout: 0, requestTimeout: 0 })).connectionsCheckingInterval).toBe(5_000)
  })

  it("the layer's options are checked: a clear error naming the option", () => {
    expect(() => resolveLimits({ headersTimeout: "1 minute", requestTimeout: "10 seconds" })).toThrow(
      "headersTimeout (60000 ms) must not be longer than requestTimeout (10000 ms)"
    )
    expect(() => resolveLimits({ maxConnections: 0 })).toThrow("maxConnections must be a positive integer, got 0")
    expect(() => resolveLimits({ keepAliveTimeout: -1 })).toThrow("keepAliveTimeout must be a finite, non-negative")
    expect(() => resolveLimits({ headersTimeout: "soon" as Duration.DurationInput })).toThrow("headersTimeout")
  })
})

describe("ServiceConfig: HTTP_* and COMPILE_MAX_BANKS", () => {
  it.effect("defaults, and in the startup line", () =>
    Effect.gen(function*() {
      const config = yield* load({})
      expect(Duration.toMillis(config.http.headersTimeout)).toBe(10_000)
      expect(Duration.toMillis(config.http.requestTimeout)).toBe(30_000)
      expect(Duration.toMillis(config.http.keepAliveTimeout)).toBe(5_000)
      expect(config.http.maxConnections).toBe(defaultMaxConnections())
      expect(config.maxBanks).toBe(1_000_000)
      const line = ServiceConfig.describe(config)
      expect(line).toContain("maxBanks=1000000")
      expect(line).toContain("httpHeadersTimeout=10s httpRequestTimeout=30s httpKeepAliveTimeout=5s")
      expect(line).toContain(`httpMaxConnections=${defaultMaxConnections()}`)
    }))

  it.effect("parses each variable", () =>
    Effect.gen(function*() {
      const config = yield* load({
        HTTP_HEADERS_TIMEOUT: "2 seconds",
        HTTP_REQUEST_TIMEOUT: "0",
        HTTP_KEEP_ALIVE_TIMEOUT: "65 seconds",
        HTTP_MAX_CONNECTIONS: "500",
        COMPILE_MAX_BANKS: "16777216"
      })
      expect(Duration.toMillis(config.http.headersTimeout)).toBe(2_000)
      expect(Duration.toMillis(config.http.requestTimeout)).toBe(0)
      expect(Duration.toMillis(config.http.keepAliveTimeout)).toBe(65_000)
      expect(config.http.maxConnections).toBe(500)
      expect(config.maxBanks).toBe(16_777_216)
    }))

  it.effect("a bad value is an error naming its variable", () =>
    Effect.gen(function*() {
      expect(yield* failure({ COMPILE_MAX_BANKS: "16777217" })).toContain(
        "COMPILE_MAX_BANKS must be an integer from 1 to 16777216, got \"16777217\""
      )
      expect(yield* failure({ COMPILE_MAX_BANKS: "0" })).toContain("COMPILE_MAX_BANKS")
      expect(yield* failure({ HTTP_MAX_CONNECTIONS: "0" })).toContain("HTTP_MAX_CONNECTIONS must be an integer >= 1")
      expect(yield* failure({ HTTP_KEEP_ALIVE_TIMEOUT: "0" })).toContain("HTTP_KEEP_ALIVE_TIMEOUT must be greater than zero")
      expect(yield* failure({ HTTP_HEADERS_TIMEOUT: "soon" })).toContain("HTTP_HEADERS_TIMEOUT must be a duration")
      expect(yield* failure({ HTTP_HEADERS_TIMEOUT: "1 minute", HTTP_REQUEST_TIMEOUT: "10 seconds" })).toContain(
        "HTTP_HEADERS_TIMEOUT (1m) must not be longer than HTTP_REQUEST_TIMEOUT (10s)"
      )
    }))
})
