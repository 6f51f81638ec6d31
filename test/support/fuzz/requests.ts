/**
 * The fuzzer's requests and its oracle. Each generated request carries what the service must do with it: `accept`
 * with the exact counts per bank, or `reject` (a 4xx that changes nothing), or `read` (a 2xx or 4xx that changes
 * nothing). Valid bodies come from the API's own Schemas (`Arbitrary.make`); hostile ones from raw fast-check
 * generators. The oracle decides validity with the Schemas (the definition) over `JSON.parse`, so any drift in the
 * service's hand-written fast paths, body reader or guards shows up as a disagreement.
 */
import { Arbitrary, Either, FastCheck as fc, Schema } from "effect"
import {
  BankId,
  BatchRetainItem,
  BatchRetainRequest,
  MAX_BATCH_ITEMS,
  MAX_BODY_BYTES,
  PolicyRequest,
  RetainCount,
  RetainRequest
} from "../../../src/CompileTriggerApi.js"

export const TOKEN = "fuzz-token-Zq9"

/** How the request is put on the wire. */
export type Transport =
  | "whole" // Content-Length, keep-alive agent
  | "chunked" // Transfer-Encoding: chunked, the body split at random points
  | "cutoff" // Content-Length promised, only a prefix sent, then the connection dropped
  | "raw" // hand-written bytes on a fresh socket (malformed HTTP)

/** A policy as the service answers it: the fields it sets, as JSON. */
export type PolicyJson = Record<string, number | boolean>

export type Expectation =
  | {
    readonly _tag: "accept"
    /** Memories retained, per bank (repeats add up). */
    readonly counts: ReadonlyArray<readonly [string, number]>
    /** Memories forgotten, per bank. */
    readonly forgets?: ReadonlyArray<readonly [string, number]>
    /** The policy a PUT sets. */
    readonly policy?: { readonly bankId: string; readonly value: PolicyJson }
  }
  /** A 4xx that changes nothing; exactly `status` when one is given (401 before anything else is looked at). */
  | { readonly _tag: "reject"; readonly status?: number }
  | { readonly _tag: "read" }
  | { readonly _tag: "noAnswer" }

export interface FuzzRequest {
  readonly kind: string
  readonly method: string
  readonly path: string
  /** In order, repeats allowed. */
  readonly headers: ReadonlyArray<readonly [string, string]>
  readonly body: Buffer
  readonly transport: Transport
  /** `cutoff`: bytes sent before dropping; `chunked`: split points; `raw`: the whole request. */
  readonly cut: number
  readonly splits: ReadonlyArray<number>
  readonly raw?: Buffer | undefined
  readonly expect: Expectation
}

// --- oracle -------------------------------------------------------------------------------------------------------

const isRetainRequest = Schema.is(RetainRequest, { onExcessProperty: "error" })
const decodePolicy = Schema.decodeUnknownEither(PolicyRequest, { onExcessProperty: "error" })
const isBatchRequest = Schema.is(BatchRetainRequest, { onExcessProperty: "error" })
const BANK_ID = /^[A-Za-z0-9._:-]{1,200}$/

/** What Node hands the service: the first of repeated `authorization` headers, without surrounding blanks. */
const authorized = (headers: ReadonlyArray<readonly [string, string]>): boolean => {
  const first = headers.find(([name]) => name.toLowerCase() === "authorization")
  if (first === undefined) return false
  const value = first[1].replace(/^[ \t]+|[ \t]+$/g, "")
  return value.length > 7 && value.slice(0, 7).toLowerCase() === "bearer " && value.slice(7) === TOKEN
}

const jsonContentType = (headers: ReadonlyArray<readonly [string, string]>, hasBody: boolean): boolean => {
  const first = headers.find(([name]) => name.toLowerCase() === "content-type")
  if (first === undefined || !hasBody) return true
  const media = first[1].split(";", 1)[0]!.trim().toLowerCase()
  return media === "application/json" || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(media)
}

type Parsed = { readonly ok: true; readonly value: unknown } | { readonly ok: false }

const parseBody = (body: Buffer): Parsed => {
  const text = body.toString("utf8")
  // An empty body is no JSON value at all: `undefined` (a JSON `null` is `null`, and refused).
  if (text.trim() === "") return { ok: true, value: undefined }
  try {
    return { ok: true, value: JSON.parse(text) }
  } catch {
    return { ok: false }
  }
}

/** The routes that take a body (every one in CompileTriggerApi.ts: retain, forget, the batch, the policy). */
type Route =
  | { readonly _tag: "retain" | "forget" | "policy"; readonly bankId: string }
  | { readonly _tag: "batch" }
  | { readonly _tag: "other" }

const BANK_ROUTES: ReadonlyArray<readonly [string, RegExp, "retain" | "forget" | "policy"]> = [
  ["POST", /^\/v1\/banks\/([^/]+)\/retain$/, "retain"],
  ["POST", /^\/v1\/banks\/([^/]+)\/forget$/, "forget"],
  ["PUT", /^\/v1\/banks\/([^/]+)\/policy$/, "policy"]
]

const route = (method: string, path: string): Route => {
  const bare = path.split("?", 1)[0]!
  if (method === "POST" && bare === "/v1/retains") return { _tag: "batch" }
  for (const [verb, pattern, _tag] of BANK_ROUTES) {
    const match = method === verb ? pattern.exec(bare) : null
    if (match === null) continue
    try {
      return { _tag, bankId: decodeURIComponent(match[1]!) }
    } catch {
      return { _tag: "other" }
    }
  }
  return { _tag: "other" }
}

/**
 * Whether a policy leaves its bank uncompiled under the fuzz's service (thresholds no count reaches): disabled, or
 * lowering no threshold. The generators make only such valid policies (`drafts` filters the others out).
 */
export const isInert = (policy: PolicyJson): boolean =>
  policy.enabled === false ||
  (policy.sizeThreshold === undefined && policy.stalenessDays === undefined && policy.forgetThreshold === undefined)

/** A policy's fields as the service answers them (JSON: -0 is 0), in a fixed key order. */
export const policyJson = (value: object): PolicyJson =>
  Object.fromEntries(Object.entries(JSON.parse(JSON.stringify(value)) as PolicyJson).sort(([a], [b]) => a < b ? -1 : 1))

/** What a valid body of a bank route does to its bank. */
const bankExpectation = (target: Route & { readonly bankId: string }, value: unknown): Expectation => {
  if (!BANK_ID.test(target.bankId)) return { _tag: "reject" }
  if (target._tag === "policy") {
    const policy = decodePolicy(value)
    return Either.isRight(policy)
      ? { _tag: "accept", counts: [], policy: { bankId: target.bankId, value: policyJson(policy.right) } }
      : { _tag: "reject" }
  }
  const count = value === undefined ? 1 : isRetainRequest(value) ? value.count ?? 1 : undefined
  if (count === undefined) return { _tag: "reject" }
  return target._tag === "retain"
    ? { _tag: "accept", counts: [[target.bankId, count]] }
    : { _tag: "accept", counts: [], forgets: [[target.bankId, count]] }
}

/** What the service must do with a request sent whole or chunked. */
export const expectationOf = (
  method: string,
  path: string,
  headers: ReadonlyArray<readonly [string, string]>,
  body: Buffer,
  chunked: boolean
): Expectation => {
  const target = route(method, path)
  if (target._tag === "other") return method === "GET" ? { _tag: "read" } : { _tag: "reject" }
  // The token is checked first: without it nothing else is looked at.
  if (!authorized(headers)) return { _tag: "reject", status: 401 }
  const valid = body.length <= MAX_BODY_BYTES && jsonContentType(headers, body.length > 0 || chunked)
  const parsed = valid ? parseBody(body) : { ok: false as const }
  if (!parsed.ok) return { _tag: "reject" }
  if (target._tag !== "batch") return bankExpectation(target, parsed.value)
  return isBatchRequest(parsed.value)
    ? { _tag: "accept", counts: parsed.value.map((item) => [item.bankId, item.count ?? 1] as const) }
    : { _tag: "reject" }
}

// --- generators ---------------------------------------------------------------------------------------------------

/** Bank ids the requests draw from: generated by the `BankId` Schema, plus names that trip naive maps. */
export const bankPool = (seed: number): ReadonlyArray<string> => [
  ...new Set([
    ...fc.sample(Arbitrary.make(BankId), { seed, numRuns: 120 }),
    ..."__proto__ constructor prototype toString hasOwnProperty valueOf . .. : - _ 0 NaN 1e3 a A".split(" "),
    "x".repeat(200)
  ])
]

const INVALID_BANK_IDS = ["", " ", "a b", "é", "a/b", "x".repeat(201), "a\u0000b", "🙂", "a%b", "<script>"]

/** `fc.constantFrom(...values)` without its reverse index (rebuilt per draw, it cost most of the generation). */
const pick = <A>(values: ReadonlyArray<A>): fc.Arbitrary<A> => fc.nat(values.length - 1).map((at) => values[at]!)

const weighted = <A>(...entries: ReadonlyArray<readonly [number, fc.Arbitrary<A>]>): fc.Arbitrary<A> =>
  fc.oneof(...entries.map(([weight, arbitrary]) => ({ weight, arbitrary })))

const authorizations: fc.Arbitrary<ReadonlyArray<string>> = weighted(
  [20, fc.constantFrom([`Bearer ${TOKEN}`], [`bearer ${TOKEN}`], [`BEARER ${TOKEN}`], [`\tBearer ${TOKEN} `])],
  [1, fc.constant([])],
  [3, fc.constantFrom(
    [""],
    ["Bearer"],
    ["Bearer "],
    [`Bearer  ${TOKEN}`],
    [`Bearer ${TOKEN}x`],
    [`Bearer ${TOKEN.toUpperCase()}`],
    [`Basic ${Buffer.from(`u:${TOKEN}`).toString("base64")}`],
    [`Token ${TOKEN}`],
    [TOKEN],
    [`Bearer ${"A".repeat(6000)}`],
    ["Bearer \u00ff\u00fe\u0080"],
    [`Bearer ${TOKEN}`, "Bearer wrong"],
    ["Bearer wrong", `Bearer ${TOKEN}`]
  )],
  // Any bytes Node lets through in a header value (tab, printable ASCII, Latin-1).
  [1, fc.array(fc.array(fc.integer({ min: 0x20, max: 0xff }), { maxLength: 40 }), { minLength: 1, maxLength: 3 }).map(
    (values) => values.map((codes) => String.fromCharCode(...codes.map((code) => (code === 0x7f ? 0x09 : code))))
  )]
)

const contentTypes: fc.Arbitrary<string | undefined> = weighted(
  [12, fc.constant("application/json")],
  [2, fc.constant(undefined)],
  [3, fc.constantFrom(
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    " application/json ",
    "application/vnd.api+json",
    "application/json;",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
    "application/jsonx",
    "json",
    "text/json",
    "application/ json"
  )]
)

/** Every byte as `%XX`, in random case: the same id as the service decodes it. */
const encodePath = (id: string, every: boolean): string =>
  every ? [...Buffer.from(id, "utf8")].map((byte) => `%${byte.toString(16).padStart(2, "0")}`).join("") : encodeURIComponent(id)

const bankSegment = (pool: ReadonlyArray<string>): fc.Arbitrary<string> =>
  weighted(
    [16, fc.tuple(pick(pool), fc.boolean()).map(([id, every]) => encodePath(id, every))],
    [2, fc.constantFrom(...INVALID_BANK_IDS).map((id) => encodeURIComponent(id))],
    [1, fc.constantFrom("%ZZ", "%E0%A4%A", "%", "%C0%80", "..", "%2e%2e", "a%2Fb")]
  )

const json = (value: unknown): string => JSON.stringify(value)

/** Numbers as JSON text: exact, fractional, huge, negative, written in every JSON spelling. */
const countTexts = fc.constantFrom(
  "1", "2", "999999", "1000000", "1000001", "0", "-0", "-1", "1.5", "0.999999999", "1.0", "1e0", "1E6", "1e6", "100e-2",
  "1e-7", "1e400", "-1e400", "9007199254740993", "123456789012345678901234567890", "5e-324", "\"1\"", "null", "true",
  "[]", "{}", "[1]", "0x10", "1_000", "+1", ".5", "01", "NaN", "Infinity"
)

const retainBodies: fc.Arbitrary<string> = weighted(
  [10, Arbitrary.make(RetainRequest).map(json)],
  [2, fc.constantFrom("", " ", "\n\t", "{}", "null", "\ufeff")],
  [4, fc.oneof(countTexts, Arbitrary.make(RetainCount).map(String)).map((count) => `{"count":${count}}`)],
  [2, fc.tuple(countTexts, countTexts).map(([a, b]) => `{"count":${a},"count":${b}}`)],
  [2, fc.constantFrom(
    `{"count":1,"x":1}`, `{"__proto__":{"count":2}}`, `{"constructor":1}`, `{"bankId":"a"}`, `{"COUNT":1}`,
    `{"count":1}{"count":1}`, `[{"count":1}]`, `"count"`, `{"count":1,}`, `{'count':1}`, `{"count" 1}`, `{"count":1`
  )]
)

/** `BatchRetainItem` with its bank id drawn from the pool (so that banks repeat and their counts add up). */
const batchItems = (pool: ReadonlyArray<string>) =>
  fc.tuple(Arbitrary.make(Schema.Struct({ count: BatchRetainItem.fields.count })), pick(pool))
    .map(([item, bankId]) => ({ bankId, ...item }))

/** A value that breaks one item of an otherwise valid batch. */
const badItems: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    {}, { count: 1 }, { bankId: "" }, { bankId: "a b" }, { bankId: 5 }, { bankId: "a", count: 0 },
    { bankId: "a", count: 1.5 }, { bankId: "a", count: 1_000_001 }, { bankId: "a", count: "1" },
    { bankId: "a", extra: true }, { bankId: "a", count: null }, null, "a", 1, [], [{ bankId: "a" }]
  ),
  fc.constantFrom(...INVALID_BANK_IDS).map((bankId) => ({ bankId }))
)

const batchBodies = (pool: ReadonlyArray<string>): fc.Arbitrary<string> =>
  weighted(
    [20, fc.array(batchItems(pool), { minLength: 1, maxLength: 12 }).map(json)],
    [1, fc.array(batchItems(pool), { minLength: 900, maxLength: MAX_BATCH_ITEMS }).map(json)],
    [8, fc.tuple(fc.array(batchItems(pool), { maxLength: 8 }), badItems, fc.nat()).map(([items, bad, at]) => {
      const all: Array<unknown> = [...items]
      all.splice(at % (items.length + 1), 0, bad)
      return json(all)
    })],
    [2, fc.constantFrom("[]", "{}", "null", "", `{"bankId":"a"}`, "[", `[{"bankId":"a"},]`)],
    [1, fc.constant(json(Array.from({ length: MAX_BATCH_ITEMS + 1 }, () => ({ bankId: "a" }))))],
    [2, fc.tuple(countTexts, pick(pool)).map(([count, id]) => `[{"bankId":${json(id)},"count":${count}}]`)],
    [2, pick(pool).map((id) => `[{"bankId":"zz","bankId":${json(id)},"count":2}]`)]
  )

/** Values that break one field of a policy: wrong types, fractions, negatives, past the ten-year bounds. */
const badPolicyFields: fc.Arbitrary<readonly [string, string]> = fc.oneof(
  fc.tuple(
    fc.constantFrom("sizeThreshold", "stalenessMinMemories", "forgetThreshold", "bankTokens", "stalenessDays", "forgetDelaySeconds"),
    fc.constantFrom("-1", "1.5", "\"7\"", "null", "true", "[]", "{}", "1e400", "-1e400", "9007199254740993.5")
  ),
  fc.constantFrom<readonly [string, string]>(
    ["forgetThreshold", "0"], ["bankTokens", "0"], ["stalenessDays", "3650.001"], ["stalenessDays", "1e6"],
    ["forgetDelaySeconds", "315360001"], ["forgetDelaySeconds", "1e12"], ["enabled", "\"false\""], ["enabled", "0"],
    ["enabled", "null"], ["colour", "\"red\""], ["__proto__", "{}"], ["count", "1"]
  )
)

/** Policies, all disabled when valid (so that none compiles), and ones broken in one field or as a whole. */
const policyBodies: fc.Arbitrary<string> = weighted(
  [10, Arbitrary.make(PolicyRequest).map((policy) => json({ ...policy, enabled: false }))],
  [2, fc.constantFrom("{}", `{"enabled":false}`, `{"stalenessMinMemories":3}`, `{"bankTokens":500}`)],
  [8, fc.tuple(Arbitrary.make(PolicyRequest), badPolicyFields).map(([policy, [field, value]]) => {
    const text = json({ ...policy, enabled: false })
    return `${text.slice(0, -1)}${text === "{}" ? "" : ","}${JSON.stringify(field)}:${value}}`
  })],
  [3, fc.constantFrom(
    "", " ", "null", "[]", "[{}]", `"{}"`, "1", "true", `{"enabled":false`, `{"enabled":false,}`,
    `{'enabled':false}`, `{"enabled":false}{}`, `{"stalenessDays":3650,"stalenessDays":-1,"enabled":false}`
  )]
)

/** Hostile bodies for any route. */
const hostileBodies: fc.Arbitrary<string | Buffer> = weighted<string | Buffer>(
  [6, fc.jsonValue({ maxDepth: 4 }).map(json)],
  [4, fc.tuple(fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 4000, max: 12_000 })), fc.constantFrom("[", `{"a":`, `[{"bankId":"a","c":`), fc.boolean())
    .map(([depth, open, closed]) => {
      const close = open === "[" ? "]" : "}"
      return open.repeat(depth) + (open === "[" ? "" : "1") + (closed ? close.repeat(depth) : "")
    })],
  [4, fc.tuple(fc.string({ unit: "binary", maxLength: 500 }), fc.oneof({ weight: 6, arbitrary: fc.nat(1000) }, { weight: 1, arbitrary: fc.nat(300_000) })).map(
    ([text, pad]) => json({ count: 1, note: text + "x".repeat(pad) })
  )],
  [2, fc.string({ unit: "binary", maxLength: 300 }).map(json)],
  [4, fc.tuple(fc.constantFrom(`{"count":2}`, `[{"bankId":"a","count":2}]`), fc.uint8Array({ minLength: 1, maxLength: 6 }), fc.nat())
    .map(([text, junk, at]) => {
      const bytes = Buffer.from(text)
      const cut = at % (bytes.length + 1)
      return Buffer.concat([bytes.subarray(0, cut), Buffer.from(junk), bytes.subarray(cut)])
    })],
  // Broken UTF-8 inside a string, where JSON.parse would accept it: the id becomes U+FFFD and must be refused.
  [2, fc.constantFrom(Buffer.from([0xff]), Buffer.from([0xc3]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xe2, 0x82]))
    .map((junk) => Buffer.concat([Buffer.from(`[{"bankId":"a`), junk, Buffer.from(`"}]`)]))],
  [1, fc.integer({ min: MAX_BODY_BYTES - 64, max: MAX_BODY_BYTES + 4096 }).map((size) => {
    const head = `[{"bankId":"a","count":1}`
    return head + " ".repeat(Math.max(0, size - head.length - 1)) + "]"
  })]
)

const queryStrings = fc.oneof(
  fc.constantFrom("", "?limit=1", "?limit=1000", "?limit=0", "?limit=1001", "?limit=1.5", "?limit=abc", "?limit=%ZZ",
    "?status=idle", "?status=pending", "?status=nope", "?status=idle&status=running", "?cursor=", "?cursor=zzz",
    "?cursor=%E0", "?limit=1&limit=2", "?x=1", "?__proto__=1", "?limit=1e3"),
  fc.string({ maxLength: 40 }).map((text) => `?cursor=${encodeURIComponent(text)}`)
)

interface Draft {
  readonly kind: string
  readonly method: string
  readonly path: string
  readonly body: string | Buffer
  readonly auth: ReadonlyArray<string>
  readonly contentType: string | undefined
}

const drafts = (pool: ReadonlyArray<string>): fc.Arbitrary<Draft> => {
  const common = { auth: authorizations, contentType: contentTypes }
  return weighted(
    [30, fc.record({ ...common, segment: bankSegment(pool), body: retainBodies, query: fc.constantFrom("", "", "?count=9") })
      .map(({ query, segment, ...rest }) => ({ ...rest, kind: "retain", method: "POST", path: `/v1/banks/${segment}/retain${query}` }))],
    [8, fc.record({ ...common, segment: bankSegment(pool), body: retainBodies })
      .map(({ segment, ...rest }) => ({ ...rest, kind: "forget", method: "POST", path: `/v1/banks/${segment}/forget` }))],
    [8, fc.record({ ...common, segment: bankSegment(pool), body: policyBodies })
      .map(({ segment, ...rest }) => ({ ...rest, kind: "policy", method: "PUT", path: `/v1/banks/${segment}/policy` }))],
    [24, fc.record({ ...common, body: batchBodies(pool) })
      .map((rest) => ({ ...rest, kind: "batch", method: "POST", path: "/v1/retains" }))],
    [12, fc.record({
      ...common,
      body: hostileBodies,
      target: fc.constantFrom("retains", "retain", "forget", "policy"),
      segment: bankSegment(pool)
    }).map(({ segment, target, ...rest }) => ({
      ...rest,
      kind: "hostile",
      method: target === "policy" ? "PUT" : "POST",
      path: target === "retains" ? "/v1/retains" : `/v1/banks/${segment}/${target}`
    }))],
    [8, fc.record({
      auth: authorizations,
      path: fc.oneof(
        bankSegment(pool).map((segment) => `/v1/banks/${segment}`),
        // With a small page mostly: encoding 100 bank states per answer would cost more than the rest of the fuzz.
        fc.tuple(queryStrings, fc.boolean()).map(([query, small]) =>
          `/v1/banks${query}${small ? `${query === "" ? "?" : "&"}limit=3` : ""}`
        ),
        fc.constantFrom("/v1/queue", "/healthz", "/readyz", "/v1", "/", "/v1/banks/", "/nothing", "/v1/retains")
      )
    }).map((rest) => ({ ...rest, kind: "read", method: "GET", body: "", contentType: undefined }))],
    // Compiles would consume counts: only ones that must be refused (no valid token).
    [2, fc.record({ segment: bankSegment(pool), auth: fc.constantFrom([], ["Bearer wrong"], [TOKEN]) }).map(
      ({ auth, segment }) => ({
        kind: "compile",
        method: "POST",
        path: `/v1/banks/${segment}/compile`,
        body: "",
        auth,
        contentType: undefined
      })
    )],
    [2, fc.record({
      ...common,
      method: fc.constantFrom("PUT", "DELETE", "PATCH", "GET", "OPTIONS"),
      path: fc.constantFrom("/v1/retains", "/v1/banks/a/retain")
    }).map((rest) => ({ ...rest, kind: "method", body: `{"count":1}` }))]
  )
}

/** Malformed HTTP that Node's parser itself must refuse (with a JSON 400 from the service's handler). */
const rawRequests: fc.Arbitrary<Buffer> = fc.constantFrom(
  "POST /v1/banks/a/retain HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
  "POST /v1/banks/a/retain HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
  "POST /v1/banks/a/retain HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
  "POST /v1/banks/a/retain HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
  "GARBAGE\r\n\r\n",
  "POST /v1/banks/a/retain HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
  "POST /v1/banks/a/retain HTTP/1.1\r\nHost: x\r\nX: a\u0000b\r\n\r\n",
  "POST /v1/banks/a/retain HTTP/9.9\r\nHost: x\r\n\r\n",
  `GET /healthz HTTP/1.1\r\nHost: x\r\nX: ${"a".repeat(20_000)}\r\n\r\n`
).map((text) => Buffer.from(text, "latin1"))

const headersOf = (draft: Draft): ReadonlyArray<readonly [string, string]> => [
  ...draft.auth.map((value) => ["authorization", value] as const),
  ...(draft.contentType === undefined ? [] : [["content-type", draft.contentType] as const])
]

/** Every kind of request, with the transport and the expectation attached. */
export const fuzzRequests = (pool: ReadonlyArray<string>): fc.Arbitrary<FuzzRequest> =>
  weighted<FuzzRequest>(
    [96, fc.tuple(drafts(pool), weighted([14, fc.constant("whole" as const)], [3, fc.constant("chunked" as const)], [1, fc.constant("cutoff" as const)]), fc.array(fc.nat(), { maxLength: 4 }), fc.nat())
      .map(([draft, transport, splits, cut]) => {
        const body = typeof draft.body === "string" ? Buffer.from(draft.body) : draft.body
        const headers = headersOf(draft)
        const sent = transport === "cutoff" && body.length === 0 ? "whole" : transport
        return {
          kind: draft.kind,
          method: draft.method,
          path: draft.path,
          headers,
          body,
          transport: sent,
          cut: body.length === 0 ? 0 : cut % body.length,
          splits: splits.map((at) => (body.length === 0 ? 0 : at % body.length)).sort((a, b) => a - b),
          expect: sent === "cutoff"
            ? { _tag: "noAnswer" as const }
            : expectationOf(draft.method, draft.path, headers, body, sent === "chunked")
        }
      })
      // A valid policy that could compile its bank would change counts the model does not follow.
      .filter(({ expect }) => expect._tag !== "accept" || expect.policy === undefined || isInert(expect.policy.value))],
    [2, rawRequests.map((raw) => ({
      kind: "malformed-http",
      method: "RAW",
      path: raw.toString("latin1").split(" ", 2)[1] ?? "",
      headers: [],
      body: Buffer.alloc(0),
      transport: "raw" as const,
      cut: 0,
      splits: [],
      raw,
      expect: { _tag: "reject" as const }
    }))]
  )
