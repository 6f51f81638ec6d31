/**
 * The OpenAPI document `/openapi.json` serves (`OpenApi.fromApi(CompileTriggerApi)`, what the server's
 * `middlewareOpenApi` serves), checked by third-party tools as a user's would: a validator of OpenAPI 3.1
 * (@readme/openapi-parser), and a client generated from it (openapi-typescript's types for openapi-fetch) that must
 * type-check with tsc, optional bodies and all. Then what a reader sees: the title, the package's version, a summary
 * and a description on every operation, one title per schema, and docs/library.md's list of the typed client's
 * methods, which must be the API's.
 */
import { HttpApi, OpenApi } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { validate } from "@readme/openapi-parser"
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import openapiTS, { astToString } from "openapi-typescript"
import ts from "typescript"
import { CompileTriggerApi } from "../../src/CompileTriggerApi.js"
import { PACKAGE_VERSION } from "../../src/internal/packageVersion.js"

const root = new URL("../..", import.meta.url).pathname
const packageJson = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { name: string; version: string }
const spec = OpenApi.fromApi(CompileTriggerApi)

interface Operation {
  readonly method: string
  readonly path: string
  readonly operationId: string
  readonly summary?: string
  readonly description?: string
  readonly requestBody?: { readonly required?: boolean }
}

const operations: ReadonlyArray<Operation> = Object.entries(spec.paths).flatMap(([path, item]) =>
  Object.entries(item as Record<string, Omit<Operation, "method" | "path">>).map(([method, operation]) => ({
    method,
    path,
    ...operation
  }))
)

/** Every endpoint of the API, from the definition itself: `group.endpoint` and its `METHOD /path`. */
const routes = (): Array<readonly [string, string]> => {
  const found: Array<readonly [string, string]> = []
  HttpApi.reflect(CompileTriggerApi, {
    onGroup: () => {},
    onEndpoint: ({ endpoint, group }) =>
      found.push([`${group.identifier}.${endpoint.name}`, `${endpoint.method} ${endpoint.path.replace(/:(\w+)/g, "{$1}")}`])
  })
  return found
}

const endpoints = (): Array<string> => routes().map(([name]) => name)

/** Calls through the generated types: what must compile, and (`@ts-expect-error`) what must not. */
const clientSource = (operationIds: ReadonlyArray<string>) => `
import createClient from "openapi-fetch"
import type { operations, paths } from "./schema.js"

/** Every operation of the document has its type. */
export type EveryOperation = [${operationIds.map((id) => `operations[${JSON.stringify(id)}]`).join(", ")}]

const client = createClient<paths>({ baseUrl: "http://127.0.0.1:8787", headers: { authorization: "Bearer t" } })
const bank = { params: { path: { bankId: "bank-1" } } }

export const use = async (): Promise<number> => {
  // An empty body means {}: the retain and forget bodies may be left out.
  const retained = await client.POST("/v1/banks/{bankId}/retain", bank)
  await client.POST("/v1/banks/{bankId}/retain", { ...bank, body: { count: 3 } })
  await client.POST("/v1/banks/{bankId}/forget", bank)
  const batch = await client.POST("/v1/retains", { body: [{ bankId: "a" }, { bankId: "b", count: 2 }] })
  await client.PUT("/v1/banks/{bankId}/policy", { ...bank, body: { sizeThreshold: 10, enabled: true } })
  await client.DELETE("/v1/banks/{bankId}/policy", bank)
  await client.POST("/v1/banks/{bankId}/compile", bank)
  const page = await client.GET("/v1/banks", { params: { query: { status: "pending" } } })
  const compiles = await client.GET("/v1/compiles", { params: { query: { outcome: "failure" } } })
  const queue = await client.GET("/v1/queue")
  await client.GET("/v1/budget")
  await client.GET("/readyz")
  // @ts-expect-error the batch must have a body
  await client.POST("/v1/retains", {})
  // @ts-expect-error a count is a number
  await client.POST("/v1/banks/{bankId}/retain", { ...bank, body: { count: "3" } })
  // @ts-expect-error a bank id is needed
  await client.GET("/v1/banks/{bankId}", {})
  const counts: Array<number | undefined> = [
    retained.data?.memoriesSinceLastCompile,
    batch.data?.accepted,
    page.data?.banks.length,
    compiles.data?.compiles.length,
    queue.data?.pending
  ]
  return counts.reduce<number>((sum, count) => sum + (count ?? 0), 0)
}
`

/**
 * Type-checks `files` (in `dir`, which sees this project's node_modules) with tsc: their diagnostics as text (not
 * those of the modules they import).
 */
const typeCheck = (dir: string, files: ReadonlyArray<string>, paths?: Record<string, Array<string>>): Array<string> => {
  const roots = files.map((file) => join(dir, file))
  const program = ts.createProgram(roots, {
    ...(paths === undefined ? {} : { paths }),
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ["lib.es2022.d.ts"],
    types: ["node"],
    strict: true,
    exactOptionalPropertyTypes: true,
    noUnusedLocals: true,
    skipLibCheck: true,
    noEmit: true
  })
  return roots.flatMap((file) => ts.getPreEmitDiagnostics(program, program.getSourceFile(file))).map((diagnostic) =>
    `${diagnostic.file?.fileName ?? ""}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n")}`
  )
}

describe("the OpenAPI document, by third-party tools", () => {
  it("is valid OpenAPI 3.1 for @readme/openapi-parser, without warnings", async () => {
    const result = await validate(structuredClone(spec) as Parameters<typeof validate>[0])
    expect(result.valid ? [] : result.errors.map((error) => error.message)).toEqual([])
    expect(result.warnings).toEqual([])
    expect(spec.openapi).toBe("3.1.0")
  })

  it("generates a client (openapi-typescript + openapi-fetch) that type-checks with tsc", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ect-openapi-client-"))
    try {
      symlinkSync(join(root, "node_modules"), join(dir, "node_modules"), "dir")
      writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }))
      writeFileSync(join(dir, "schema.ts"), astToString(await openapiTS(structuredClone(spec) as never, { silent: true })))
      writeFileSync(join(dir, "client.ts"), clientSource(operations.map((operation) => operation.operationId)))
      expect(typeCheck(dir, ["schema.ts", "client.ts"])).toEqual([])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})

describe("the OpenAPI document, as a reader sees it", () => {
  it("is titled after the package, at the package's version", () => {
    expect(spec.info.title).toBe(packageJson.name)
    expect(spec.info.version).toBe(packageJson.version)
    expect(PACKAGE_VERSION).toBe(packageJson.version) // else: node scripts/write-version.mjs
    expect(spec.info.description).toMatch(/\S/)
  })

  it("has a summary and a description on every operation, and on every tag", () => {
    expect(operations.length).toBe(endpoints().length)
    for (const operation of operations) {
      expect(operation.summary, operation.operationId).toMatch(/^[A-Z].{5,80}$/)
      expect(operation.description, operation.operationId).toMatch(/\S{20}|\s\S.{30}/)
    }
    expect(new Set(operations.map((operation) => operation.summary)).size).toBe(operations.length)
    for (const tag of spec.tags) expect(tag.description, tag.name).toMatch(/\S/)
  })

  it("names each schema once: a component's title is its name, and no inline schema has one", () => {
    const schemas = spec.components.schemas as Record<string, { title?: string }>
    for (const [name, schema] of Object.entries(schemas)) expect(schema.title, name).toBe(name)
    const inlineTitles: Array<string> = []
    const walk = (node: unknown, path: string, isComponent: boolean): void => {
      if (typeof node !== "object" || node === null) return
      if (!isComponent && "title" in node && typeof node.title === "string" && path.includes("schema")) {
        inlineTitles.push(`${path}: ${node.title}`)
      }
      for (const [key, child] of Object.entries(node)) walk(child, `${path}/${key}`, false)
    }
    for (const [name, schema] of Object.entries(schemas)) walk(schema, `#/components/schemas/${name}`, true)
    walk(spec.paths, "#/paths", false)
    expect(inlineTitles).toEqual([])
  })

  it("marks the retain and forget bodies optional (an empty body means {}), the others required", () => {
    const body = (operationId: string) => operations.find((operation) => operation.operationId === operationId)!.requestBody
    expect(body("banks.retain")?.required).toBe(false)
    expect(body("banks.forget")?.required).toBe(false)
    expect(body("banks.retainBatch")?.required).toBe(true)
    expect(body("banks.setPolicy")?.required).toBe(true)
  })
})

describe("docs/library.md's typed client", () => {
  const section = /### The typed client\n([\s\S]*?)\n## /.exec(readFileSync(join(root, "docs/library.md"), "utf8"))?.[1] ?? ""

  it("lists every method of HttpApiClient.make(CompileTriggerApi) with its route, and no other", () => {
    const table = /\n\n(\| method[\s\S]*?)\n\n/.exec(section)?.[1] ?? ""
    const listed = [...table.matchAll(/^\| `client\.(\w+\.\w+)\(.*?\| `(\w+ \S+)` \|/gm)]
      .map((match) => [match[1]!, match[2]!] as const)
    expect(listed.sort()).toEqual(routes().sort())
  })

  it("has an example that type-checks against the package's source", () => {
    const example = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
    expect(example).toContain("HttpApiClient.make(CompileTriggerApi")
    const dir = mkdtempSync(join(tmpdir(), "ect-client-example-"))
    try {
      symlinkSync(join(root, "node_modules"), join(dir, "node_modules"), "dir")
      writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }))
      writeFileSync(join(dir, "example.ts"), example!)
      expect(typeCheck(dir, ["example.ts"], { "effect-compile-trigger/*": [join(root, "src/*.ts")] })).toEqual([])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
