/**
 * In-process checks of the service's pieces: the hand-written fast paths agree with the Schemas they stand for, and
 * the environment configuration (defaults, parsing, errors naming the variable).
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, DateTime, Duration, Effect, Either, FastCheck, Option, Redacted, Schema } from "effect"
import { BankCompileState } from "../../src/BankCompileState.js"
import { BankPolicy } from "../../src/BankPolicy.js"
import { BatchRetainRequest, MAX_BATCH_ITEMS, MAX_RETAIN_COUNT, RetainPayload } from "../../src/CompileTriggerApi.js"
import { encodeBankState, isValidBatch, isValidRetain } from "../../src/internal/http/fastPath.js"
import * as ServiceConfig from "../../src/ServiceConfig.js"

describe("fast paths", () => {
  const bankId = FastCheck.oneof(
    FastCheck.stringMatching(/^[A-Za-z0-9._:-]{1,200}$/),
    FastCheck.string({ maxLength: 3 }),
    FastCheck.constantFrom("", "a b", "x".repeat(201), "ok/no", "é")
  )
  const count = FastCheck.oneof(
    FastCheck.integer({ min: 1, max: MAX_RETAIN_COUNT }),
    FastCheck.constantFrom(0, -1, 1.5, MAX_RETAIN_COUNT + 1, NaN, Infinity, "3", null, true)
  )
  const scopes = FastCheck.oneof(
    FastCheck.array(FastCheck.string({ minLength: 1, maxLength: 128 }), { maxLength: 32 }),
    FastCheck.array(FastCheck.constantFrom("a", "", "x".repeat(129), "bell\u0007", "nul\u0000", "é"), { maxLength: 4 }),
    FastCheck.array(FastCheck.constant("s"), { minLength: 32, maxLength: 34 }),
    FastCheck.constantFrom(null, "a", [1], {}, [["a"]])
  )
  const item = FastCheck.oneof(
    FastCheck.record({ bankId, count }, { requiredKeys: ["bankId"] }),
    FastCheck.record({ bankId, count, scopes }, { requiredKeys: ["bankId", "scopes"] }),
    FastCheck.record({ bankId, count, extra: FastCheck.integer() }, { requiredKeys: ["bankId", "extra"] }),
    FastCheck.constantFrom(null, 1, "bank", [])
  )
  const batch = FastCheck.oneof(
    FastCheck.array(item, { minLength: 0, maxLength: 5 }),
    FastCheck.array(FastCheck.record({ bankId: FastCheck.constant("b") }), { minLength: 999, maxLength: 1002 }),
    FastCheck.constantFrom(null, {}, "[]", 42)
  )
  const decodesBySchema = (input: unknown) => Either.isRight(Schema.decodeUnknownEither(BatchRetainRequest)(input))

  it("isValidBatch accepts exactly what BatchRetainRequest decodes", () => {
    FastCheck.assert(
      FastCheck.property(batch, (input) => {
        expect(isValidBatch(input, MAX_BATCH_ITEMS, MAX_RETAIN_COUNT)).toBe(decodesBySchema(input))
      }),
      { numRuns: 500 }
    )
  })

  it("isValidRetain accepts exactly what RetainPayload decodes", () => {
    const body = FastCheck.oneof(
      FastCheck.record({ count }, { requiredKeys: [] }),
      FastCheck.record({ count, scopes }, { requiredKeys: ["scopes"] }),
      FastCheck.record({ count, other: FastCheck.integer() }, { requiredKeys: ["other"] }),
      // `undefined` is an empty body; a JSON null is not one.
      FastCheck.constantFrom(undefined, null, [], [1], "1", 1, true)
    )
    FastCheck.assert(
      FastCheck.property(body, (input) => {
        expect(isValidRetain(input, MAX_RETAIN_COUNT)).toBe(
          Either.isRight(Schema.decodeUnknownEither(RetainPayload)(input))
        )
      }),
      { numRuns: 300 }
    )
  })

  it("encodeBankState is Schema.encode(BankCompileState)", () => {
    const state = FastCheck.record({
      bankId: FastCheck.string({ minLength: 1 }),
      memoriesSinceLastCompile: FastCheck.nat(),
      forgetsSinceLastCompile: FastCheck.nat(),
      lastCompileAt: FastCheck.option(FastCheck.integer({ min: 0, max: 4_102_444_800_000 })),
      firstRetainAt: FastCheck.option(FastCheck.integer({ min: 0, max: 4_102_444_800_000 })),
      status: FastCheck.constantFrom("idle" as const, "pending" as const, "running" as const),
      consecutiveFailures: FastCheck.nat(),
      lastError: FastCheck.option(FastCheck.string()),
      policy: FastCheck.option(FastCheck.record({
        enabled: FastCheck.boolean(),
        sizeThreshold: FastCheck.nat(),
        stalenessDays: FastCheck.double({ min: 0, max: 365, noNaN: true }),
        stalenessMinMemories: FastCheck.nat(),
        forgetThreshold: FastCheck.integer({ min: 1, max: 1000 }),
        forgetDelaySeconds: FastCheck.double({ min: 0, max: 3600, noNaN: true })
      }, { requiredKeys: [] })),
      dirtyScopes: FastCheck.option(FastCheck.record({
        all: FastCheck.boolean(),
        scopes: FastCheck.array(FastCheck.record({ scope: FastCheck.string(), memories: FastCheck.nat(), forgets: FastCheck.nat() }))
      }), { nil: undefined })
    }, { requiredKeys: ["bankId", "memoriesSinceLastCompile", "forgetsSinceLastCompile", "lastCompileAt", "firstRetainAt", "status", "consecutiveFailures", "lastError", "policy"] })
    FastCheck.assert(
      FastCheck.property(state, (fields) => {
        const time = (millis: number | null) => Option.map(Option.fromNullable(millis), DateTime.unsafeMake)
        const value = new BankCompileState({
          ...fields,
          lastCompileAt: time(fields.lastCompileAt),
          firstRetainAt: time(fields.firstRetainAt),
          lastError: Option.fromNullable(fields.lastError),
          policy: Option.map(Option.fromNullable(fields.policy), (policy) => new BankPolicy(policy))
        })
        expect(encodeBankState(value)).toEqual(Schema.encodeSync(BankCompileState)(value))
      }),
      { numRuns: 200 }
    )
  })
})

describe("ServiceConfig", () => {
  const load = (env: Record<string, string>) =>
    Effect.withConfigProvider(ServiceConfig.config, ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.effect("defaults: 127.0.0.1:8787, dry run, no auth, library thresholds", () =>
    Effect.gen(function*() {
      const config = yield* load({})
      expect(config).toMatchObject({ host: "127.0.0.1", port: 8787, maxQueueSize: 10_000, concurrency: 4, logFormat: "pretty" })
      expect(config.engine).toEqual({ _tag: "DryRun" })
      expect(Option.isNone(config.apiToken)).toBe(true)
      expect(config.trigger).toMatchObject({ sizeThreshold: 50, stalenessDays: 7, stalenessMinMemories: 10 })
      expect(config.trigger).toMatchObject({ enabled: true, forgetThreshold: 1, forgetDelaySeconds: 60 })
      expect(ServiceConfig.describe(config)).toContain("forgetDelay=1m")
      expect(Duration.toMillis(config.shutdownTimeout)).toBe(25_000)
      expect(ServiceConfig.describe(config)).toContain("maxQueueSize=10000")
    }))

  it.effect("parses every variable; empty values count as unset", () =>
    Effect.gen(function*() {
      const config = yield* load({
        HOST: "0.0.0.0",
        PORT: "9000",
        COMPILE_SIZE_THRESHOLD: "0",
        COMPILE_STALENESS_DAYS: "0.5",
        COMPILE_STALENESS_MIN_MEMORIES: "3",
        COMPILE_MAX_QUEUE_SIZE: "0",
        COMPILE_CONCURRENCY: "16",
        COMPILE_SWEEP_INTERVAL: "10 minutes",
        COMPILE_TIMEOUT: "1500",
        COMPILE_SHUTDOWN_TIMEOUT: "0 seconds",
        COMPILE_WEBHOOK_URL: "https://memory.example/compile?x=1",
        COMPILE_WEBHOOK_TOKEN: "hook",
        API_TOKEN: "api",
        LOG_FORMAT: "JSON",
        LOG_LEVEL: "warning",
        COMPILE_DEFAULT_ENABLED: "FALSE",
        COMPILE_FORGET_THRESHOLD: "5",
        COMPILE_FORGET_DELAY: "1500"
      })
      expect(config.trigger).toMatchObject({ enabled: false, forgetThreshold: 5, forgetDelaySeconds: 1.5 })
      expect((yield* load({ COMPILE_FORGET_DELAY: "0 seconds" })).trigger.forgetDelaySeconds).toBe(0)
      expect(config).toMatchObject({ host: "0.0.0.0", port: 9000, maxQueueSize: Infinity, concurrency: 16, logFormat: "json" })
      expect(config.logLevel._tag).toBe("Warning")
      expect(config.trigger).toMatchObject({ sizeThreshold: 0, stalenessDays: 0.5, stalenessMinMemories: 3 })
      expect(Duration.toMillis(config.sweepInterval)).toBe(600_000)
      expect(Duration.toMillis(config.compileTimeout)).toBe(1_500)
      expect(Duration.isZero(config.shutdownTimeout)).toBe(true)
      expect(config.engine._tag === "Webhook" && config.engine.url.href).toBe("https://memory.example/compile?x=1")
      expect(config.engine._tag === "Webhook" && Option.map(config.engine.token, Redacted.value)).toEqual(Option.some("hook"))
      expect(Option.map(config.apiToken, Redacted.value)).toEqual(Option.some("api"))
      expect((yield* load({ PORT: "", HOST: " " })).port).toBe(8787)
    }))

  it.effect("webhook guards: answer limit, read timeout and signing secrets (Redacted)", () =>
    Effect.gen(function*() {
      const url = { COMPILE_WEBHOOK_URL: "http://127.0.0.1:1/compile" }
      const defaults = (yield* load(url)).engine
      expect(defaults._tag === "Webhook" && defaults.maxResponseBytes).toBe(1024 * 1024)
      expect(defaults._tag === "Webhook" && Duration.toMillis(defaults.readTimeout)).toBe(30_000)
      expect(defaults._tag === "Webhook" && Option.isNone(defaults.secret)).toBe(true)
      const engine = (yield* load({
        ...url,
        COMPILE_WEBHOOK_MAX_RESPONSE: "4096",
        COMPILE_WEBHOOK_READ_TIMEOUT: "2 seconds",
        COMPILE_WEBHOOK_SECRET: "s-current",
        COMPILE_WEBHOOK_SECRET_PREVIOUS: "s-previous"
      })).engine
      if (engine._tag !== "Webhook") throw new Error("expected the webhook engine")
      expect(engine.maxResponseBytes).toBe(4096)
      expect(Duration.toMillis(engine.readTimeout)).toBe(2000)
      expect(Option.map(engine.secret, Redacted.value)).toEqual(Option.some("s-current"))
      expect(Option.map(engine.previousSecret, Redacted.value)).toEqual(Option.some("s-previous"))
      // Printed or serialized by accident, a secret shows as <redacted>.
      expect(`${JSON.stringify(engine)} ${String(Option.getOrThrow(engine.secret))}`).not.toMatch(/s-current|s-previous/)
      const message = (env: Record<string, string>) =>
        load({ ...url, ...env }).pipe(Effect.flip, Effect.map(ServiceConfig.formatConfigError))
      expect(yield* message({ COMPILE_WEBHOOK_MAX_RESPONSE: "0" })).toMatch(/COMPILE_WEBHOOK_MAX_RESPONSE must be an integer >= 1/)
      expect(yield* message({ COMPILE_WEBHOOK_READ_TIMEOUT: "never" })).toMatch(/COMPILE_WEBHOOK_READ_TIMEOUT must be a duration/)
      expect(yield* message({ COMPILE_WEBHOOK_SECRET: " " })).toMatch(/COMPILE_WEBHOOK_SECRET is set but empty/)
      expect(yield* message({ COMPILE_WEBHOOK_SECRET_PREVIOUS: "old" })).toMatch(
        /COMPILE_WEBHOOK_SECRET_PREVIOUS is set but COMPILE_WEBHOOK_SECRET is not/
      )
    }))

  it.effect("budget: unlimited by default; COMPILE_BUDGET_* parsed into the queue's budget option, bad values named", () =>
    Effect.gen(function*() {
      const unset = (yield* load({})).budget
      expect(ServiceConfig.budgetOptions(unset)).toEqual({
        tokens: undefined,
        compiles: undefined,
        bankTokens: undefined,
        period: Duration.hours(1)
      })
      expect(ServiceConfig.describe(yield* load({}))).toContain("budget=unlimited")
      const config = yield* load({
        COMPILE_BUDGET_TOKENS: "1000000",
        COMPILE_BUDGET_COMPILES: "60",
        COMPILE_BUDGET_BANK_TOKENS: "50000",
        COMPILE_BUDGET_PERIOD: "1 day"
      })
      expect(ServiceConfig.budgetOptions(config.budget)).toEqual({
        tokens: 1_000_000,
        compiles: 60,
        bankTokens: 50_000,
        period: Duration.days(1)
      })
      expect(ServiceConfig.describe(config)).toContain("budget=1000000 tokens,60 compiles,50000 tokens/bank/1d")
      const message = (env: Record<string, string>) =>
        load(env).pipe(Effect.flip, Effect.map(ServiceConfig.formatConfigError))
      expect(yield* message({ COMPILE_BUDGET_TOKENS: "0" })).toMatch(/COMPILE_BUDGET_TOKENS must be an integer >= 1/)
      expect(yield* message({ COMPILE_BUDGET_COMPILES: "1.5" })).toMatch(/COMPILE_BUDGET_COMPILES must be an integer >= 1/)
      expect(yield* message({ COMPILE_BUDGET_BANK_TOKENS: "x" })).toMatch(/COMPILE_BUDGET_BANK_TOKENS must be an integer/)
      expect(yield* message({ COMPILE_BUDGET_PERIOD: "0 seconds" })).toMatch(/COMPILE_BUDGET_PERIOD must be greater than zero/)
    }))

  it.effect("a bad value fails naming the variable; several are all named", () =>
    Effect.gen(function*() {
      const message = (env: Record<string, string>) =>
        load(env).pipe(Effect.flip, Effect.map(ServiceConfig.formatConfigError))
      expect(yield* message({ PORT: "65536" })).toBe(
        "invalid configuration: PORT must be an integer from 0 to 65535, got \"65536\""
      )
      expect(yield* message({ COMPILE_STALENESS_DAYS: "-1" })).toMatch(/COMPILE_STALENESS_DAYS must be a non-negative number/)
      expect(yield* message({ COMPILE_SWEEP_INTERVAL: "0 seconds" })).toMatch(/COMPILE_SWEEP_INTERVAL must be greater than zero/)
      expect(yield* message({ COMPILE_TIMEOUT: "soon" })).toMatch(/COMPILE_TIMEOUT must be a duration/)
      expect(yield* message({ COMPILE_WEBHOOK_URL: "ftp://x" })).toMatch(/COMPILE_WEBHOOK_URL must be an http/)
      expect(yield* message({ API_TOKEN: "" })).toMatch(/API_TOKEN is set but empty/)
      expect(yield* message({ COMPILE_DEFAULT_ENABLED: "yes" })).toMatch(/COMPILE_DEFAULT_ENABLED must be true or false/)
      expect(yield* message({ COMPILE_FORGET_THRESHOLD: "0" })).toMatch(/COMPILE_FORGET_THRESHOLD must be an integer >= 1/)
      expect(yield* message({ COMPILE_FORGET_DELAY: "-5 seconds" })).toMatch(/COMPILE_FORGET_DELAY must be a duration/)
      // Ten years at most, both; at the bound they load.
      expect(yield* message({ COMPILE_STALENESS_DAYS: "3650.5" })).toBe(
        "invalid configuration: COMPILE_STALENESS_DAYS must be a non-negative number of at most 3650, got \"3650.5\""
      )
      expect(yield* message({ COMPILE_FORGET_DELAY: "3651 days" })).toMatch(/COMPILE_FORGET_DELAY must be at most 3650d/)
      const bounds = yield* load({ COMPILE_STALENESS_DAYS: "3650", COMPILE_FORGET_DELAY: "3650 days" })
      expect(bounds.trigger).toMatchObject({ stalenessDays: 3650, forgetDelaySeconds: 315_360_000 })
      expect(yield* message({ LOG_FORMAT: "xml" })).toMatch(/LOG_FORMAT must be one of pretty, json/)
      const both = yield* message({ PORT: "x", COMPILE_CONCURRENCY: "0" })
      expect(both).toMatch(/PORT must be/)
      expect(both).toMatch(/COMPILE_CONCURRENCY must be/)
    }))
})
