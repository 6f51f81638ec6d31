/**
 * The package as a user gets it: `npm pack`, then the tarball installed into a temporary project with no TypeScript
 * tooling — first the core alone (plus effect), then the README's line of service peers. Installs use the local npm
 * cache (`--prefer-offline`). better-sqlite3 (the SQLite driver's native addon) is not compiled again: its installer,
 * prebuild-install, is pointed at a local prebuild made from this repository's own build of the same version — what
 * its GitHub download would give on a machine with that network access.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { execFile, execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { OPTIONAL_PEERS } from "../../src/internal/service/optionalPeers.js"
import { root } from "../support/build.js"
import { eventually, freePort } from "../support/harness.js"
import { startCollector } from "../support/otlpCollector.js"

const readme = readFileSync(join(root, "README.md"), "utf8")
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  readonly version: string
  readonly peerDependencies: Record<string, string>
  readonly peerDependenciesMeta: Record<string, { readonly optional: boolean }>
}

/** The `js` block right under a README heading. */
const readmeBlock = (heading: string): string => {
  const block = new RegExp(`${heading}\\s+\`\`\`js\\n([\\s\\S]*?)\`\`\``).exec(readme)?.[1]
  if (block === undefined) throw new Error(`README: no js block under ${heading}`)
  return block
}

/** The packages of the README's `npm i <first>@… …` line, as words. */
const readmeInstallLine = (first: string): ReadonlyArray<string> => {
  const line = new RegExp(`^npm i (${first.replace("/", "\\/")}@\\S+(?: [^\\s#]+)*)`, "m").exec(readme)?.[1]
  if (line === undefined) throw new Error(`README: no \`npm i ${first}@…\` line`)
  return line.split(" ")
}

/** Runs a command without blocking the test worker (its RPC with vitest times out otherwise); resolves with stdout. */
const run = async (
  file: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env?: NodeJS.ProcessEnv }
): Promise<string> =>
  (await promisify(execFile)(file, [...args], { ...options, encoding: "utf8", timeout: 600_000, maxBuffer: 1 << 26 }))
    .stdout

/** Its exit code and stderr, for a command expected to fail. */
const runFailing = (file: string, args: ReadonlyArray<string>, cwd: string, env: NodeJS.ProcessEnv = {}) =>
  run(file, args, { cwd, env: { ...process.env, ...env } }).then(
    () => ({ code: 0, stdout: "", stderr: "" }),
    (error: { code: number; stdout: string; stderr: string }) => error
  )

const npm = (cwd: string, args: ReadonlyArray<string>): Promise<string> => run("npm", args, { cwd })

const INSTALL = ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"]

/**
 * A directory holding better-sqlite3's prebuilt addon under the name prebuild-install looks for
 * (`npm_config_better_sqlite3_local_prebuilds`), packed from node_modules/better-sqlite3/build.
 */
const localPrebuilds = (into: string): string => {
  const addon = join(root, "node_modules/better-sqlite3")
  const { version } = JSON.parse(readFileSync(join(addon, "package.json"), "utf8")) as { readonly version: string }
  const prebuilds = join(into, "prebuilds")
  mkdirSync(prebuilds)
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`
  execFileSync("tar", ["-czf", join(prebuilds, name), "-C", addon, "build/Release/better_sqlite3.node"])
  return prebuilds
}

const dir = mkdtempSync(join(tmpdir(), "ect-package-"))
const project = join(dir, "project")
let tarball = ""
let coreInstallMs = 0

beforeAll(async () => {
  // dist/ is fresh (globalSetup), so the pack skips `prepare` rather than build again beside running tests.
  const packed = JSON.parse(await npm(root, ["pack", "--json", "--ignore-scripts", "--pack-destination", dir])) as Array<{
    readonly filename: string
    readonly files: ReadonlyArray<{ readonly path: string }>
  }>
  tarball = join(dir, packed[0]!.filename)
  mkdirSync(project)
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", private: true }))
  const started = Date.now()
  await npm(project, [...INSTALL, tarball, "effect@3.22.4"])
  coreInstallMs = Date.now() - started
  console.log(`core install (tarball + effect@3.22.4, npm cache warm): ${(coreInstallMs / 1000).toFixed(1)} s`)
}, 600_000)

afterAll(() => rm(dir, { recursive: true, force: true }), 300_000)

const installed = (name: string): boolean => {
  try {
    readFileSync(join(project, "node_modules", name, "package.json"))
    return true
  } catch {
    return false
  }
}

/**
 * `npx effect-compile-trigger` in the project on a free port, once `/readyz` answers. npx runs the command through
 * `sh -c`: Debian's dash stays in between and dies of a SIGTERM sent to npx, leaving the service running without the
 * signal; bash execs a single command, so the signal reaches the service.
 */
const startNpx = async (env: Record<string, string>) => {
  const port = await freePort()
  const child = spawn("npx", ["--no-install", "effect-compile-trigger"], {
    cwd: project,
    env: {
      ...process.env,
      npm_config_script_shell: "/bin/bash",
      HOST: "127.0.0.1",
      PORT: String(port),
      DATA_DIR: join(dir, "data"),
      ...env
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  const base = `http://127.0.0.1:${port}`
  const ready = (status: number) => status === 200 || child.exitCode !== null
  await eventually(() => fetch(`${base}/readyz`).then((r) => r.status, () => 0), ready, 60_000)
  const retain = (bankId: string, count: number) =>
    fetch(`${base}/v1/banks/${bankId}/retain`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ count })
    })
  /** SIGTERM to npx; resolves with its exit code. */
  const stop = () => {
    child.kill("SIGTERM")
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000)
    return exited.finally(() => clearTimeout(timer))
  }
  return { base, retain, stop, output: () => output, kill: () => child.exitCode === null && child.kill("SIGKILL") }
}

describe.sequential("the packed package", () => {
  it("holds dist/, README and LICENSE only", () => {
    const listing = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).trim().split("\n")
    const outside = listing.filter((path) =>
      !/^package\/(dist\/.+|README\.md|LICENSE|package\.json)$/.test(path)
    )
    expect(outside).toEqual([])
    expect(listing).toContain("package/dist/index.js")
    expect(listing).toContain("package/dist/index.d.ts")
    expect(listing).toContain("package/dist/index.js.map")
    expect(listing).toContain("package/dist/bin.js")
    // The dashboard: its static files and the vendored uPlot with its licence (scripts/copy-ui.mjs).
    for (const file of ["index.html", "dashboard.js", "dashboard.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.LICENSE"]) {
      expect(listing).toContain(`package/dist/ui/${file}`)
    }
    expect(listing).toContain("package/README.md")
    expect(listing).toContain("package/LICENSE")
  })

  it("declares effect and @effect/* as peers, the drivers and the HTTP stack as optional ones", () => {
    for (const [name, range] of Object.entries(OPTIONAL_PEERS)) {
      expect(pkg.peerDependencies[name], name).toBe(range)
      expect(pkg.peerDependenciesMeta[name]?.optional, name).toBe(true)
    }
    const optional = Object.keys(pkg.peerDependenciesMeta).filter((name) => pkg.peerDependenciesMeta[name]!.optional)
    expect(optional.sort()).toEqual(Object.keys(OPTIONAL_PEERS).sort())
    expect(pkg.peerDependencies.effect).toBe("^3.22.4")
    expect(pkg.peerDependenciesMeta.effect).toBeUndefined()
  })

  it("the core installs without the optional peers: no better-sqlite3 built, no pg, no prom-client, no HTTP server", () => {
    for (const name of ["better-sqlite3", "@effect/sql-sqlite-node", "pg", "@effect/sql-pg", "prom-client"]) {
      expect(installed(name), name).toBe(false)
    }
    expect(installed("@effect/platform-node")).toBe(false)
    expect(installed("@effect/opentelemetry")).toBe(false)
    expect(coreInstallMs).toBeGreaterThan(0)
  })

  it("npm ls finds exactly one effect", async () => {
    const paths = (await npm(project, ["ls", "effect", "--all", "--parseable"])).trim().split("\n")
    expect(new Set(paths).size).toBe(1)
    expect(JSON.parse(readFileSync(join(paths[0]!, "package.json"), "utf8")).version).toBe("3.22.4")
  })

  it("the README usage example runs with plain node", async () => {
    writeFileSync(join(project, "app.mjs"), readmeBlock("### Quick start"))
    const output = await run(process.execPath, ["app.mjs"], { cwd: project })
    expect(output).toContain("compiling bank-1")
  }, 60_000)

  it("a consumer type-checks against the shipped .d.ts", async () => {
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          exactOptionalPropertyTypes: true,
          noEmit: true,
          types: [],
          // Effect's own .d.ts need not be checked again; the expect-error below fails if ours resolved to `any`.
          skipLibCheck: true
        },
        files: ["consumer.ts"]
      })
    )
    writeFileSync(
      join(project, "consumer.ts"),
      `import { Effect, Layer, Option } from "effect"
import {
  BankStateStore,
  type BankCompileState,
  type BankStoreError,
  CompileEngine,
  CompileQueue,
  CompileResult,
  CompileTriggerConfig
} from "effect-compile-trigger"

const Engine: Layer.Layer<CompileEngine> = CompileEngine.layer((bankId) => Effect.succeed(new CompileResult({ bankId })))
// A store that cannot be read fails the layer with a typed BankStoreError.
const Trigger: Layer.Layer<CompileQueue, BankStoreError> = CompileQueue.layer({ config: { sizeThreshold: 5 } }).pipe(
  Layer.provide(Engine),
  Layer.provide(BankStateStore.memory)
)
export const program: Effect.Effect<Option.Option<BankCompileState>, BankStoreError> = Effect.gen(function*() {
  const queue = yield* CompileQueue
  yield* queue.notifyRetain("bank-1", 3)
  return yield* queue.bankState("bank-1")
}).pipe(Effect.provide(Trigger))
export const threshold: number = new CompileTriggerConfig({}).sizeThreshold
// @ts-expect-error: the count is a number
export const wrong = Effect.flatMap(CompileQueue, (queue) => queue.notifyRetain("bank-1", "3"))
`
    )
    const tsc = join(root, "node_modules/typescript/bin/tsc")
    const result = await runFailing(process.execPath, [tsc, "-p", "tsconfig.json"], project)
    expect(result.stdout).toBe("")
    expect(result.code).toBe(0)
  }, 120_000)

  it("without the service's peers, the bin says which to install", async () => {
    const result = await runFailing("npx", ["--no-install", "effect-compile-trigger"], project)
    expect(result.code).toBe(1)
    expect(result.stderr.trim()).toBe(
      "effect-compile-trigger: the service needs the optional peer dependencies @effect/platform-node, prom-client: " +
        `npm i '@effect/platform-node@${OPTIONAL_PEERS["@effect/platform-node"]}' 'prom-client@${OPTIONAL_PEERS["prom-client"]}'`
    )
  }, 60_000)

  it("without the tuner's peers, `effect-compile-trigger tune` says which to install", async () => {
    const result = await runFailing("npx", ["--no-install", "effect-compile-trigger", "tune", "--synthetic"], project)
    expect(result.code).toBe(1)
    const peers = ["@effect/cli", "@effect/printer", "@effect/printer-ansi", "@effect/typeclass", "@effect/platform-node"] as const
    expect(result.stderr.trim()).toBe(
      `effect-compile-trigger: tune needs the optional peer dependencies ${peers.join(", ")}: ` +
        `npm i ${peers.map((name) => `'${name}@${OPTIONAL_PEERS[name]}'`).join(" ")}`
    )
  }, 60_000)

  it("a store driver that is not installed fails the layer with a BankStoreError naming it", async () => {
    writeFileSync(
      join(project, "store.mjs"),
      `import { Effect } from "effect"
import { BankStateStore } from "effect-compile-trigger"
const exit = await Effect.runPromiseExit(Effect.provide(BankStateStore, BankStateStore.sqlite({ filename: "x/db" })))
const { _tag, operation, message } = exit.cause.error
console.log(JSON.stringify({ _tag, operation, message }))
`
    )
    const output = await run(process.execPath, ["store.mjs"], { cwd: project })
    expect(JSON.parse(output)).toMatchObject({
      _tag: "BankStoreError",
      operation: "open",
      message: expect.stringContaining("needs the optional peer dependency @effect/sql-sqlite-node: npm i")
    })
  }, 60_000)

  it("with the README's line of service peers, npx effect-compile-trigger serves, counts, and stops on SIGTERM", async () => {
    const started = Date.now()
    await run("npm", [...INSTALL, ...readmeInstallLine("@effect/platform-node")], {
      cwd: project,
      env: { ...process.env, npm_config_better_sqlite3_local_prebuilds: localPrebuilds(dir) }
    })
    console.log(`service peers install (README line): ${((Date.now() - started) / 1000).toFixed(1)} s`)
    expect(new Set((await npm(project, ["ls", "effect", "--all", "--parseable"])).trim().split("\n")).size).toBe(1)

    const service = await startNpx({})
    try {
      expect((await service.retain("packaged", 7)).status).toBe(202)
      const metrics = await (await fetch(`${service.base}/metrics`)).text()
      expect(metrics).toMatch(/^compile_trigger_retains_total 7$/m)
      // The dashboard is served from the installed package, uPlot included.
      expect(await (await fetch(`${service.base}/`)).text()).toContain("/ui/dashboard.js")
      expect((await fetch(`${service.base}/ui/vendor/uPlot.iife.min.js`)).status).toBe(200)
      expect(await service.stop(), service.output()).toBe(0)
      expect(service.output()).toContain("shutting down: not ready")
    } finally {
      service.kill()
    }

    // Tracing's peers are not installed here: asking for it stops startup with one line naming them.
    const traced = await runFailing("npx", ["--no-install", "effect-compile-trigger"], project, {
      PORT: "0",
      DATA_DIR: join(dir, "data"),
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318"
    })
    expect(traced.code).toBe(1)
    expect(traced.stderr).toContain(
      "startup failed: tracing (OTEL_EXPORTER_OTLP_ENDPOINT) needs the optional peer dependencies " +
        "@effect/opentelemetry, @opentelemetry/sdk-trace-base, @opentelemetry/exporter-trace-otlp-http: npm i"
    )
  }, 900_000)

  it("with the README's tracing line, the service exports the spans of a retain and of its compile", async () => {
    await npm(project, [...INSTALL, ...readmeInstallLine("@effect/opentelemetry")])
    expect(new Set((await npm(project, ["ls", "effect", "--all", "--parseable"])).trim().split("\n")).size).toBe(1)
    const collector = await startCollector()
    const service = await startNpx({ OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint, COMPILE_SIZE_THRESHOLD: "2" })
    try {
      expect((await service.retain("traced", 2)).status).toBe(202)
      await eventually(() => Promise.resolve(service.output()), (output) => output.includes("dry run: would compile"))
      expect(await service.stop(), service.output()).toBe(0)
      const names = collector.spans.map((span) => span.name)
      expect(names, JSON.stringify(names)).toContain("http.server POST")
      expect(collector.spans.find((span) => span.name === "CompileQueue.compile")?.attributes.bankId).toBe("traced")
    } finally {
      service.kill()
      await collector.close()
    }
  }, 600_000)
})
