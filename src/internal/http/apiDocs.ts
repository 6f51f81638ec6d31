/**
 * What the OpenAPI document (`/openapi.json`, Swagger UI at `/docs`) says about the API: its title and version, a
 * summary and a description of every operation and group, optional request bodies, and one title per schema.
 *
 * @internal
 */
import { OpenApi } from "@effect/platform"
import type { Context } from "effect"
import { PACKAGE_VERSION } from "../packageVersion.js"

interface OperationDocs {
  readonly summary: string
  readonly description: string
}

const OPEN = "Open: no token needed."

/** Per endpoint of `CompileTriggerApi`, by its name (a test checks that every operation has both). */
const operations = {
  retain: {
    summary: "Count retained memories of a bank",
    description: "Adds `count` (default 1) to the bank's new memories and queues a compile when the bank's rule " +
      "holds. An empty body means `{}`. Answers the bank's state after counting; a bank is created by its first " +
      "retain."
  },
  retainBatch: {
    summary: "Count retains of many banks at once",
    description: "1 to 1,000 items `{ bankId, count? }`, checked as a whole before any is counted: one bad item " +
      "refuses the batch and counts nothing. Answers how many items and memories were counted."
  },
  forget: {
    summary: "Count forgotten memories of a bank",
    description: "Adds `count` (default 1) to the bank's forgotten memories; `forgetThreshold` of them queue a " +
      "compile, after `forgetDelaySeconds`. An empty body means `{}`. Answers the bank's state after counting."
  },
  setPolicy: {
    summary: "Set a bank's own policy",
    description: "Replaces the bank's policy with the fields given, each optional (a field left out falls back to " +
      "the service's default), and re-checks the bank at once. Answers the policy and the config it yields."
  },
  getPolicy: {
    summary: "Read a bank's policy",
    description: "The bank's own policy and the effective config it yields over the service's defaults; " +
      "404 `PolicyNotFound` when the bank has none."
  },
  deletePolicy: {
    summary: "Remove a bank's policy",
    description: "The bank falls back to the service's defaults. Answers 204, also for a bank without a policy."
  },
  compile: {
    summary: "Queue a compile of a bank now",
    description: "Queues the bank whatever its thresholds (reason `manual`); it compiles when a worker and the cost " +
      "budget allow. Answers the bank's state."
  },
  getBank: {
    summary: "Read a bank's state",
    description: "Its counters since the last compile, the last compile's time, its status (`idle`, `pending`, " +
      "`running`), failures, last error and policy, its oldest uncompiled memory and deadline, and `nextCompile`: " +
      "which rule fires when, or what holds it (disabled, budget, parked, queue full, running, its place in the " +
      "queue); 404 `BankNotFound` for a bank the service does not know."
  },
  listBanks: {
    summary: "List banks, a page at a time",
    description: "In first-seen order, optionally only those with a `status`; `limit` 1 to 1,000 (default 100). " +
      "Pass `nextCursor` as `cursor` for the next page; it is `null` on the last one."
  },
  queue: {
    summary: "Read the queue's figures",
    description: "Banks pending and running, banks waiting in the queue and its capacity, banks known, and the " +
      "health of the write-behind to the store (`null` without a store), and `freshness`: the age of the oldest " +
      "uncompiled memory (largest, p50 and p95 across banks), banks past their deadline, the banks closest to it " +
      "and the queue's lanes."
  },
  listCompiles: {
    summary: "List running and recent compiles",
    description: "The compiles running now, in start order, and the last finished ones, newest first; both " +
      "filtered by `bankId`, the finished ones by `outcome` too; `limit` 1 to 1,000 (default 100)."
  },
  budget: {
    summary: "Read the cost budget",
    description: "Tokens and compiles left in the current period (`null` when unlimited), the per-bank token " +
      "budget, how many banks wait for the budget and the deferred ones in due order (the first 1,000)."
  },
  healthz: {
    summary: "Liveness: the process serves",
    description: `Answers 200 \`{ "status": "ok" }\` while the process serves HTTP. ${OPEN}`
  },
  readyz: {
    summary: "Readiness: the service takes writes",
    description: "Answers 200 `ready`, or `degraded` while flushes to the store fail in `ACK_MODE=memory`; 503 " +
      `\`NotReady\` while starting or shutting down, and in \`ACK_MODE=durable\` while the store fails. ${OPEN}`
  },
  metrics: {
    summary: "Prometheus metrics",
    description: `Every metric of the service in the Prometheus text format 0.0.4. ${OPEN}`
  }
} satisfies Record<string, OperationDocs>

/** The summary and description of the endpoint `name`, as `HttpApiEndpoint.annotateContext` takes them. */
export const documented = (
  name: keyof typeof operations,
  extra?: { readonly optionalBody?: boolean }
): Context.Context<never> =>
  OpenApi.annotations({
    ...operations[name],
    ...(extra?.optionalBody === true ? { transform: optionalBody } : {})
  })

/**
 * Marks the request body optional: `HttpApi` marks every body required, but an empty retain or forget body means `{}`
 * (so a generated client may leave it out).
 */
const optionalBody = (operation: Record<string, unknown>): Record<string, unknown> => ({
  ...operation,
  requestBody: { ...(operation.requestBody as object), required: false }
})

/** A group's description: its tag's in the document. */
export const groupDocs = {
  banks: OpenApi.annotations({
    description: "Counting retains and forgets, per-bank policies, compiling and reading state. With `API_TOKEN` " +
      "set every route needs `Authorization: Bearer <API_TOKEN>`."
  }),
  health: OpenApi.annotations({ description: `For orchestrators and scrapers. ${OPEN}` })
}

/** Keys whose value is a schema, a list of schemas or a map of schemas, in a JSON Schema. */
const SUBSCHEMA = ["items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else"]
const SUBSCHEMA_LISTS = ["allOf", "anyOf", "oneOf", "prefixItems"]
const SUBSCHEMA_MAPS = ["properties", "patternProperties", "$defs"]

type Json = Record<string, unknown>

const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value)

const mapValues = (record: Json, f: (value: unknown) => unknown): Json =>
  Object.fromEntries(Object.entries(record).map(([key, value]) => [key, f(value)]))

/**
 * `schema` without the titles Schema puts on refinements (`int`, `finite`, `positive`, …): they named unrelated
 * schemas alike (`Int` and `NonNegativeInt` were both "int" in Swagger UI) and say less than the type beside them.
 */
const untitled = (schema: unknown): unknown => {
  if (!isObject(schema)) return schema
  const { title: _, ...rest } = schema
  return Object.fromEntries(Object.entries(rest).map(([key, value]) => {
    if (SUBSCHEMA.includes(key)) return [key, untitled(value)]
    if (SUBSCHEMA_LISTS.includes(key) && Array.isArray(value)) return [key, value.map(untitled)]
    if (SUBSCHEMA_MAPS.includes(key) && isObject(value)) return [key, mapValues(value, untitled)]
    return [key, value]
  }))
}

/** A request body or a response with its media types' schemas untitled. */
const untitledContent = (holder: unknown): unknown =>
  isObject(holder) && isObject(holder.content)
    ? { ...holder, content: mapValues(holder.content, untitledIn) }
    : holder

/** A media type or a parameter with its `schema` untitled. */
const untitledIn = (holder: unknown): unknown => isObject(holder) ? { ...holder, schema: untitled(holder.schema) } : holder

/** The schemas of one operation's parameters, body and responses, untitled. */
const untitledOperation = (operation: unknown): unknown => {
  if (!isObject(operation)) return operation
  return {
    ...operation,
    ...(Array.isArray(operation.parameters) ? { parameters: operation.parameters.map(untitledIn) } : {}),
    ...(operation.requestBody === undefined ? {} : { requestBody: untitledContent(operation.requestBody) }),
    ...(isObject(operation.responses) ? { responses: mapValues(operation.responses, untitledContent) } : {})
  }
}

/** One title per schema: each component is titled by its name; inline schemas carry none. */
const oneTitlePerSchema = (spec: Json): Json => {
  const components = isObject(spec.components) ? spec.components : {}
  const schemas = isObject(components.schemas) ? components.schemas : {}
  const paths = isObject(spec.paths) ? spec.paths : {}
  return {
    ...spec,
    paths: mapValues(paths, (item) => isObject(item) ? mapValues(item, untitledOperation) : item),
    components: {
      ...components,
      schemas: Object.fromEntries(
        Object.entries(schemas).map(([name, schema]) => [name, { title: name, ...(untitled(schema) as Json) }])
      )
    }
  }
}

/** The document's title, version (package.json's), description and schema titles. */
export const apiDocs: Context.Context<never> = OpenApi.annotations({
  title: "effect-compile-trigger",
  version: PACKAGE_VERSION,
  description: "Decides when an agent-memory bank must be recompiled and runs those compiles in the background. " +
    "With `API_TOKEN` set every `/v1` route needs `Authorization: Bearer <API_TOKEN>`; `/healthz`, `/readyz` and " +
    "`/metrics` are open.",
  transform: oneTitlePerSchema
})
