/**
 * The HTTP API of the compile-trigger service, as one `HttpApi` definition: the server, the OpenAPI document
 * (`/openapi.json`), Swagger UI (`/docs`) and the typed client (`CompileTriggerClient`) all derive from it.
 *
 * @since 0.1.0
 */
import {
  HttpApi,
  HttpApiClient,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpApiSecurity,
  HttpClient,
  HttpClientRequest
} from "@effect/platform"
import { Option, ParseResult, Redacted, Schema } from "effect"
import { BankCompileState, BankStatus } from "./BankCompileState.js"
import { BankPolicy } from "./BankPolicy.js"
import { CompileOutcome, CompileRecord, RunningCompile } from "./CompileHistory.js"
import { CompileBudgetState } from "./CompileBudget.js"
import { CompileTriggerConfig } from "./CompileTriggerConfig.js"
import { NextCompile, QueueFreshness } from "./Freshness.js"
import { StoreHealth } from "./StoreHealth.js"
import { mustBe, quote } from "./internal/core/inputRules.js"
import { apiDocs, documented, groupDocs } from "./internal/http/apiDocs.js"
import { MAX_SCOPE_LENGTH, MAX_SCOPES_PER_WRITE, WriteScopes } from "./DirtyScopes.js"
import { BANK_ID_PATTERN, isValidBatch } from "./internal/http/fastPath.js"

/** Largest request body the service reads. */
export const MAX_BODY_BYTES = 1024 * 1024

/** Largest `count` of one retain. */
export const MAX_RETAIN_COUNT = 1_000_000

/** Most items in one batch of retains. */
export const MAX_BATCH_ITEMS = 1000

const BANK_ID_JSON_SCHEMA = { type: "string", pattern: BANK_ID_PATTERN } as const
const COUNT_JSON_SCHEMA = { type: "integer", minimum: 1, maximum: MAX_RETAIN_COUNT } as const

const strict = { parseOptions: { onExcessProperty: "error" } } as const

/**
 * A bank id: 1 to 200 characters of `A–Z a–z 0–9 . _ : -`.
 *
 * @since 0.1.0
 */
export const BankId = Schema.String.pipe(Schema.pattern(new RegExp(BANK_ID_PATTERN))).annotations({
  identifier: "BankId",
  message: mustBe("bankId", "1 to 200 characters of A-Z a-z 0-9 . _ : -")
})

/**
 * How many memories one retain adds: an integer from 1 to 1,000,000 (default 1).
 *
 * @since 0.1.0
 */
export const RetainCount = Schema.Number.pipe(Schema.int(), Schema.between(1, MAX_RETAIN_COUNT)).annotations({
  identifier: "RetainCount",
  message: mustBe("count", `an integer from 1 to ${MAX_RETAIN_COUNT}`)
})

/** The message of a body that is not the JSON object a route takes (a Type issue; the fields say theirs). */
const objectBody = (example: string) => (issue: { readonly actual: unknown }) =>
  `the body must be a JSON object such as ${example}, got ${quote(issue.actual)}`

const SCOPES_JSON_SCHEMA = {
  type: "array",
  maxItems: MAX_SCOPES_PER_WRITE,
  items: { type: "string", minLength: 1, maxLength: MAX_SCOPE_LENGTH },
  description: "The scopes (tags, page keys) the memories touched: 1 to 128 characters each, no control characters."
} as const

/** `{ count?, scopes? }` with an empty body meaning `{}`: the body of the retain and forget routes. */
const countPayload = (identifier: string, what: string) => {
  const request = Schema.Struct({ count: Schema.optional(RetainCount), scopes: Schema.optional(WriteScopes) })
    .annotations({
      ...strict,
      identifier,
      message: objectBody(`{"count": 3, "scopes": ["page-a"]} (or an empty body)`)
    })
  // Decoded from `unknown` so that errors name only the object's problems.
  const payload = Schema.transformOrFail(
    Schema.Unknown.annotations({
      jsonSchema: {
        type: "object",
        description: `An empty body means {} (count 1): how many memories ${what}, and the scopes they touched.`,
        properties: { count: COUNT_JSON_SCHEMA, scopes: SCOPES_JSON_SCHEMA },
        additionalProperties: false
      }
    }),
    Schema.typeSchema(request),
    {
      strict: true,
      // `undefined` is an empty body (no JSON value at all); a JSON `null` is refused like any other non-object.
      decode: (body) => body === undefined ? ParseResult.succeed({}) : ParseResult.decodeUnknown(request)(body),
      encode: ParseResult.succeed
    }
  )
  return { request, payload }
}

const retainBody = countPayload("RetainRequest", "were retained")

/**
 * Body of `POST /v1/banks/{bankId}/retain`. An empty body means `{}` (count 1).
 *
 * @since 0.1.0
 */
export const RetainRequest = retainBody.request

/**
 * The retain route's payload: `RetainRequest`, where an empty body means `{}`.
 *
 * @since 0.1.0
 */
export const RetainPayload = retainBody.payload

const forgetBody = countPayload("ForgetRequest", "were forgotten")

/**
 * Body of `POST /v1/banks/{bankId}/forget`: `{ count? }`, 1 to 1,000,000 (default 1). An empty body means `{}`.
 *
 * @since 0.1.0
 */
export const ForgetRequest = forgetBody.request

/**
 * The forget route's payload: `ForgetRequest`, where an empty body means `{}`.
 *
 * @since 0.1.0
 */
export const ForgetPayload = forgetBody.payload

const compileRequest = Schema.Struct({ scopes: Schema.optional(WriteScopes) }).annotations({
  ...strict,
  identifier: "CompileRequest",
  message: objectBody(`{"scopes": ["page-a"]} (or an empty body)`)
})

/**
 * Body of `POST /v1/banks/{bankId}/compile`: the scopes to rebuild (they join the bank's dirty scopes). An empty body
 * means `{}`.
 *
 * @since 0.1.0
 */
export const CompileRequest = compileRequest

/**
 * The compile route's payload: `CompileRequest`, where an empty body means `{}`.
 *
 * @since 0.1.0
 */
export const CompilePayload = Schema.transformOrFail(
  Schema.Unknown.annotations({
    jsonSchema: {
      type: "object",
      description: "An empty body means {}: compile the bank, telling the engine its dirty scopes.",
      properties: { scopes: SCOPES_JSON_SCHEMA },
      additionalProperties: false
    }
  }),
  Schema.typeSchema(compileRequest),
  {
    strict: true,
    decode: (body) => body === undefined ? ParseResult.succeed({}) : ParseResult.decodeUnknown(compileRequest)(body),
    encode: ParseResult.succeed
  }
)

/**
 * Body of `PUT /v1/banks/{bankId}/policy`: the `BankPolicy` fields, each optional; no other key.
 *
 * @since 0.1.0
 */
export const PolicyRequest = Schema.Struct(BankPolicy.fields).annotations({
  ...strict,
  identifier: "PolicyRequest",
  message: objectBody(`{"sizeThreshold": 20}`)
})

/**
 * A bank's policy and the config it yields (policy over the service's defaults).
 *
 * @since 0.1.0
 */
export class PolicyResponse extends Schema.Class<PolicyResponse>("PolicyResponse")({
  policy: BankPolicy,
  effective: CompileTriggerConfig
}) {}

/**
 * One item of `POST /v1/retains`.
 *
 * @since 0.1.0
 */
export const BatchRetainItem = Schema.Struct({
  bankId: BankId,
  count: Schema.optional(RetainCount),
  scopes: Schema.optional(WriteScopes)
}).annotations({
  ...strict,
  identifier: "BatchRetainItem",
  message: (issue) => `the item must be a JSON object such as {"bankId": "b-1", "count": 3}, got ${quote(issue.actual)}`
})

/**
 * Body of `POST /v1/retains`: 1 to 1,000 retains, checked as a whole before any is counted.
 *
 * @since 0.1.0
 */
export const BatchRetainRequest = Schema.Array(BatchRetainItem).annotations({
  message: (issue) =>
    `the body must be a JSON array of 1 to ${MAX_BATCH_ITEMS} items such as [{"bankId": "b-1", "count": 3}], ` +
    `got ${quote(issue.actual)}`
}).pipe(
  Schema.minItems(1, { message: () => "the batch must have at least one item, got none" }),
  Schema.maxItems(MAX_BATCH_ITEMS, {
    // Schema computes a message before it knows it needs it: `actual` may not be an array here.
    message: ({ actual }) =>
      `the batch must have at most ${MAX_BATCH_ITEMS} items, got ${Array.isArray(actual) ? actual.length : 0}`
  })
).annotations({ identifier: "BatchRetainRequest" })

/**
 * The batch route's payload, as the route decodes it: a hand-written check that accepts exactly what `BatchRetainRequest` accepts
 * (a 1,000-item Schema decode costs milliseconds), and the Schema itself for anything it rejects, so the error is the
 * Schema's.
 */
export const BatchRetainPayload = Schema.transformOrFail(
  Schema.Unknown.annotations({
    jsonSchema: {
      type: "array",
      minItems: 1,
      maxItems: MAX_BATCH_ITEMS,
      items: {
        type: "object",
        required: ["bankId"],
        properties: { bankId: BANK_ID_JSON_SCHEMA, count: COUNT_JSON_SCHEMA, scopes: SCOPES_JSON_SCHEMA },
        additionalProperties: false
      }
    }
  }),
  // Checked above, once: a `typeSchema` here would walk all 1,000 items again.
  Schema.declare((input): input is typeof BatchRetainRequest.Type => Array.isArray(input), {
    identifier: "BatchRetainRequest"
  }),
  {
    strict: true,
    decode: (body) =>
      isValidBatch(body, MAX_BATCH_ITEMS, MAX_RETAIN_COUNT)
        ? ParseResult.succeed(body as typeof BatchRetainRequest.Type)
        : ParseResult.decodeUnknown(BatchRetainRequest)(body),
    encode: ParseResult.succeed
  }
)

/**
 * @since 0.1.0
 */
export class BatchRetainResponse extends Schema.Class<BatchRetainResponse>("BatchRetainResponse")({
  /** Items counted. */
  accepted: Schema.NonNegativeInt,
  /** Memories counted (the sum of the counts). */
  retains: Schema.NonNegativeInt
}) {}

/**
 * @since 0.1.0
 */
export class BankPage extends Schema.Class<BankPage>("BankPage")({
  banks: Schema.Array(BankCompileState),
  /** Pass as `cursor` to get the next page; `null` on the last page. */
  nextCursor: Schema.OptionFromNullOr(Schema.String)
}) {}

/**
 * @since 0.1.0
 */
export class QueueStats extends Schema.Class<QueueStats>("QueueStats")({
  /** Banks waiting in the queue or for a retry. */
  pending: Schema.NonNegativeInt,
  /** Compiles running now. */
  running: Schema.NonNegativeInt,
  /** Banks waiting in the queue (a subset of `pending`). */
  size: Schema.NonNegativeInt,
  /** Most banks that may wait in the queue; `null` when unbounded. */
  capacity: Schema.NullOr(Schema.NonNegativeInt),
  /** Banks the service knows. */
  banks: Schema.NonNegativeInt,
  /** The write-behind to the store (`null` without one). */
  store: Schema.NullOr(StoreHealth),
  /**
   * `single`: every figure is this process's. `cluster`: these counts are the whole cluster's (the node asks every
   * partition), while `/metrics` rates and the budget's levels are this node's.
   */
  mode: Schema.Literal("single", "cluster"),
  /** The trigger settings in force for every bank without a policy (a policy's fields override them). */
  defaults: CompileTriggerConfig,
  /**
   * Freshness now: ages of the banks' oldest uncompiled memories (largest, p50, p95), banks past their deadline, the
   * banks closest to it, and the queue's lanes. `null` in cluster mode (read each node's `/metrics`).
   */
  freshness: Schema.optionalWith(Schema.NullOr(QueueFreshness), { default: () => null })
}) {}

/**
 * `GET /v1/banks/{bankId}`: the bank's state and when it compiles next (`null` in cluster mode).
 *
 * @since 0.1.0
 */
export class BankView extends BankCompileState.extend<BankView>("BankView")({
  nextCompile: Schema.optionalWith(Schema.NullOr(NextCompile), { default: () => null })
}) {}

/** A page size in a query string: 1 to 1,000. */
const PageLimit = Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000)).annotations({
  message: mustBe("limit", "an integer from 1 to 1000")
})

const ListBanksParams = Schema.Struct({
  status: Schema.optional(BankStatus.annotations({ message: mustBe("status", "one of idle, pending, running") })),
  limit: Schema.optional(PageLimit),
  cursor: Schema.optional(Schema.String.annotations({ message: mustBe("cursor", "one string") }))
})

/**
 * `GET /v1/compiles`: the compiles running now (in the order they started) and the last finished ones, newest first.
 *
 * @since 0.1.0
 */
export class CompileHistoryResponse extends Schema.Class<CompileHistoryResponse>("CompileHistoryResponse")({
  running: Schema.Array(RunningCompile),
  compiles: Schema.Array(CompileRecord)
}) {}

const ListCompilesParams = Schema.Struct({
  /** Finished compiles to return, 1 to 1,000 (default 100). */
  limit: Schema.optional(PageLimit),
  bankId: Schema.optional(BankId),
  outcome: Schema.optional(
    CompileOutcome.annotations({ message: mustBe("outcome", "one of success, reported_error, failure") })
  )
})

/**
 * @since 0.1.0
 */
export class Health extends Schema.Class<Health>("Health")({
  /** `degraded`: ready, but flushes to the store fail (`ACK_MODE=memory` keeps answering writes from memory). */
  status: Schema.Literal("ok", "ready", "degraded"),
  /** `/readyz` with a store: the write-behind's state. */
  store: Schema.optional(StoreHealth),
  /** Why the service is degraded. */
  message: Schema.optional(Schema.String)
}) {}

// --- errors -----------------------------------------------------------------------------------------------------

/**
 * The service knows no bank with this id.
 *
 * @since 0.1.0
 */
export class BankNotFound extends Schema.TaggedError<BankNotFound>()(
  "BankNotFound",
  { bankId: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/**
 * The bank has no policy.
 *
 * @since 0.1.0
 */
export class PolicyNotFound extends Schema.TaggedError<PolicyNotFound>()(
  "PolicyNotFound",
  { bankId: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/**
 * Missing or wrong `Authorization: Bearer` token.
 *
 * @since 0.1.0
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/**
 * The service is starting or shutting down.
 *
 * @since 0.1.0
 */
export class NotReady extends Schema.TaggedError<NotReady>()(
  "NotReady",
  { state: Schema.Literal("starting", "shutting_down", "store_unhealthy"), message: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}

/**
 * `ACK_MODE=durable`: the write was counted in memory, but the flush that should have stored it failed, so it is not
 * acknowledged. Later flushes still retry it: after a retry of the request it may count twice.
 *
 * @since 0.1.0
 */
export class StoreUnavailable extends Schema.TaggedError<StoreUnavailable>()(
  "StoreUnavailable",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}

/**
 * The write or policy named a bank the service does not know yet, and it already holds its maximum number of banks
 * (`COMPILE_MAX_BANKS`; in cluster mode, the bank's partition its share of it). Nothing was counted or changed: not
 * even the other items of a batch (in cluster mode, those of other partitions may have been counted: see
 * docs/service.md). Banks the service knows are never refused.
 *
 * @since 0.1.0
 */
export class BankLimitReached extends Schema.TaggedError<BankLimitReached>()(
  "BankLimitReached",
  {
    message: Schema.String,
    /** The bank refused (in a batch, the first). */
    bankId: Schema.String
  },
  HttpApiSchema.annotations({ status: 507 })
) {}

/**
 * The body is not JSON, or not of the JSON content type.
 *
 * @since 0.1.0
 */
export class MalformedRequest extends Schema.TaggedError<MalformedRequest>()(
  "MalformedRequest",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/**
 * The body is larger than 1 MiB.
 *
 * @since 0.1.0
 */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()(
  "PayloadTooLarge",
  { message: Schema.String, limitBytes: Schema.Number },
  HttpApiSchema.annotations({ status: 413 })
) {}

// --- security -----------------------------------------------------------------------------------------------------

/**
 * Guards every `/v1` route. With `API_TOKEN` set it requires `Authorization: Bearer <API_TOKEN>`; unset, it lets
 * every request through.
 *
 * @since 0.1.0
 */
export class Authorization extends HttpApiMiddleware.Tag<Authorization>()("effect-compile-trigger/Authorization", {
  failure: Unauthorized,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

// --- endpoints ----------------------------------------------------------------------------------------------------

const bankPath = Schema.Struct({ bankId: BankId })

/**
 * `/v1`: counting retains and forgets, per-bank policies, compiling, reading state. Guarded by `Authorization`.
 *
 * @since 0.1.0
 */
export class BanksGroup extends HttpApiGroup.make("banks").annotateContext(groupDocs.banks)
  .add(
    HttpApiEndpoint.post("retain", "/banks/:bankId/retain")
      .annotateContext(documented("retain", { optionalBody: true }))
      .setPath(bankPath)
      .setPayload(RetainPayload)
      .addSuccess(BankCompileState, { status: 202 })
      .addError(NotReady)
      .addError(StoreUnavailable)
      .addError(BankLimitReached)
  )
  .add(
    HttpApiEndpoint.post("retainBatch", "/retains")
      .annotateContext(documented("retainBatch"))
      .setPayload(BatchRetainPayload)
      .addSuccess(BatchRetainResponse, { status: 202 })
      .addError(NotReady)
      .addError(StoreUnavailable)
      .addError(BankLimitReached)
  )
  .add(
    HttpApiEndpoint.post("forget", "/banks/:bankId/forget")
      .annotateContext(documented("forget", { optionalBody: true }))
      .setPath(bankPath)
      .setPayload(ForgetPayload)
      .addSuccess(BankCompileState, { status: 202 })
      .addError(NotReady)
      .addError(StoreUnavailable)
      .addError(BankLimitReached)
  )
  .add(
    HttpApiEndpoint.put("setPolicy", "/banks/:bankId/policy")
      .annotateContext(documented("setPolicy"))
      .setPath(bankPath)
      .setPayload(PolicyRequest)
      .addSuccess(PolicyResponse)
      .addError(NotReady)
      .addError(StoreUnavailable)
      .addError(BankLimitReached)
  )
  .add(
    HttpApiEndpoint.get("getPolicy", "/banks/:bankId/policy")
      .annotateContext(documented("getPolicy"))
      .setPath(bankPath)
      .addSuccess(PolicyResponse)
      .addError(PolicyNotFound)
  )
  .add(
    HttpApiEndpoint.del("deletePolicy", "/banks/:bankId/policy")
      .annotateContext(documented("deletePolicy"))
      .setPath(bankPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(StoreUnavailable)
  )
  .add(
    HttpApiEndpoint.post("compile", "/banks/:bankId/compile")
      .annotateContext(documented("compile", { optionalBody: true }))
      .setPath(bankPath)
      .setPayload(CompilePayload)
      .addSuccess(BankCompileState, { status: 202 })
      .addError(NotReady)
      .addError(StoreUnavailable)
      .addError(BankLimitReached)
  )
  .add(
    HttpApiEndpoint.get("getBank", "/banks/:bankId")
      .annotateContext(documented("getBank"))
      .setPath(bankPath)
      .addSuccess(BankView)
      .addError(BankNotFound)
  )
  .add(
    HttpApiEndpoint.get("listBanks", "/banks")
      .annotateContext(documented("listBanks"))
      .setUrlParams(ListBanksParams)
      .addSuccess(BankPage)
  )
  .add(HttpApiEndpoint.get("queue", "/queue").annotateContext(documented("queue")).addSuccess(QueueStats))
  .add(
    HttpApiEndpoint.get("listCompiles", "/compiles")
      .annotateContext(documented("listCompiles"))
      .setUrlParams(ListCompilesParams)
      .addSuccess(CompileHistoryResponse)
  )
  .add(HttpApiEndpoint.get("budget", "/budget").annotateContext(documented("budget")).addSuccess(CompileBudgetState))
  .middleware(Authorization)
  .prefix("/v1")
{}

/**
 * Open routes for orchestrators and scrapers.
 *
 * @since 0.1.0
 */
export class HealthGroup extends HttpApiGroup.make("health").annotateContext(groupDocs.health)
  .add(HttpApiEndpoint.get("healthz", "/healthz").annotateContext(documented("healthz")).addSuccess(Health))
  .add(HttpApiEndpoint.get("readyz", "/readyz").annotateContext(documented("readyz")).addSuccess(Health).addError(NotReady))
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .annotateContext(documented("metrics"))
      .addSuccess(
        Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/plain; version=0.0.4" }))
      )
  )
{}

/**
 * The whole API.
 *
 * @since 0.1.0
 */
export class CompileTriggerApi extends HttpApi.make("compile-trigger").annotateContext(apiDocs)
  .add(BanksGroup)
  .add(HealthGroup)
  .addError(MalformedRequest)
  .addError(PayloadTooLarge)
{}

/**
 * The typed client for TypeScript callers: `client.banks.retain({ path: { bankId }, payload: { count } })`.
 *
 * ```ts
 * const client = yield* CompileTriggerClient.make({ baseUrl: "http://127.0.0.1:8787", token: Redacted.make("…") })
 * const state = yield* client.banks.retain({ path: { bankId: "bank-1" }, payload: { count: 3 } })
 * ```
 *
 * @since 0.1.0
 */
export const CompileTriggerClient = {
  /** Needs an `HttpClient` (`FetchHttpClient.layer`, `NodeHttpClient.layer`, …). */
  make: (options: { readonly baseUrl: string | URL; readonly token?: Redacted.Redacted | undefined }) =>
    HttpApiClient.make(CompileTriggerApi, {
      baseUrl: options.baseUrl,
      transformClient: (client) =>
        Option.match(Option.fromNullable(options.token), {
          onNone: () => client,
          onSome: (token) => HttpClient.mapRequest(client, HttpClientRequest.bearerToken(Redacted.value(token)))
        })
    })
}
