/**
 * The optional peer dependencies: which are installed, and one clear error naming the missing ones and the `npm i`
 * line that installs them. Each optional peer is imported only by the module that needs it (a store driver, the
 * HTTP server, metrics, tracing), so the core loads none of them.
 *
 * @internal
 */
import { Effect, Layer } from "effect"
import { createRequire } from "node:module"

/** The optional peers and the ranges `package.json` declares for them (a test keeps the two in step). */
export const OPTIONAL_PEERS = {
  "@effect/platform-node": "^0.108.2",
  "@effect/sql-sqlite-node": "^0.53.0",
  "@effect/sql-pg": "^0.53.0",
  "prom-client": "^15.1.3",
  "@effect/opentelemetry": "^0.64.1",
  "@opentelemetry/sdk-trace-base": "^2.0.0",
  "@opentelemetry/exporter-trace-otlp-http": ">=0.200.0 <0.300.0",
  "@effect/cli": "^0.77.2",
  "@effect/printer": "^0.51.0",
  "@effect/printer-ansi": "^0.51.0",
  "@effect/typeclass": "^0.41.0",
  "vega": "^6.4.0",
  "vega-lite": "^6.4.3",
  "@effect/cluster": "^0.60.2",
  "@effect/rpc": "^0.76.2",
  "@effect/workflow": "^0.19.1"
} as const

export type OptionalPeer = keyof typeof OPTIONAL_PEERS

/** The peers the HTTP service imports statically (`bin.ts` checks them before loading `main.ts`). */
export const SERVICE_PEERS: ReadonlyArray<OptionalPeer> = ["@effect/platform-node", "prom-client"]

/** The peers of `effect-compile-trigger tune` (`bin.ts` checks them before loading the tuner). */
export const TUNER_PEERS: ReadonlyArray<OptionalPeer> = [
  "@effect/cli",
  "@effect/printer",
  "@effect/printer-ansi",
  "@effect/typeclass",
  "@effect/platform-node"
]

/** The peers of the tuner's report page (`tune --out`), imported only when a page is written. */
export const REPORT_PEERS: ReadonlyArray<OptionalPeer> = ["vega", "vega-lite"]

/** The peers of trace export (`OtlpTracing.ts`), loaded only when tracing is on. */
export const TRACING_PEERS: ReadonlyArray<OptionalPeer> = [
  "@effect/opentelemetry",
  "@opentelemetry/sdk-trace-base",
  "@opentelemetry/exporter-trace-otlp-http"
]

/** The peers of cluster mode (`ClusterCompileQueue.ts`), loaded only when `CLUSTER_RUNNER_ADDRESS` is set. */
export const CLUSTER_PEERS: ReadonlyArray<OptionalPeer> = [
  "@effect/cluster",
  "@effect/rpc",
  "@effect/workflow",
  "@effect/sql-pg",
  "@effect/platform-node"
]

const require = createRequire(import.meta.url)

/**
 * Whether a package can be found from here. Its `package.json` is resolved rather than its entry point, so that
 * neither an ESM-only package nor running it is involved; a package that does not export `./package.json` is there.
 */
const isInstalled = (name: string): boolean => {
  try {
    require.resolve(`${name}/package.json`)
    return true
  } catch (error) {
    return (error as { readonly code?: unknown }).code === "ERR_PACKAGE_PATH_NOT_EXPORTED"
  }
}

/** The ones of `peers` that are not installed. */
export const missingPeers = (peers: ReadonlyArray<OptionalPeer>): ReadonlyArray<OptionalPeer> =>
  peers.filter((name) => !isInstalled(name))

/** "<what> needs the optional peer dependency X (or …dependencies X, Y): npm i X@range Y@range" */
export const missingPeersMessage = (what: string, missing: ReadonlyArray<OptionalPeer>): string =>
  `${what} needs the optional peer ${missing.length === 1 ? "dependency" : "dependencies"} ${missing.join(", ")}: ` +
  `npm i ${missing.map((name) => `'${name}@${OPTIONAL_PEERS[name]}'`).join(" ")}`

/**
 * Imports a module that imports optional peers. When that fails because some of `peers` are missing, the promise
 * rejects with one `Error` naming them and how to install them; any other failure is passed on as it is.
 */
const importWithPeers = async <M>(
  what: string,
  peers: ReadonlyArray<OptionalPeer>,
  load: () => Promise<M>
): Promise<M> => {
  try {
    return await load()
  } catch (error) {
    const missing = missingPeers(peers)
    if (missing.length > 0) throw new Error(missingPeersMessage(what, missing))
    throw error
  }
}

/**
 * A layer from a module with optional peers, imported when the layer is built; an import failure (one naming the
 * missing peers, see `importWithPeers`) becomes the layer's error through `onError`.
 */
export const importLayer = <M, A, E, E2>(
  what: string,
  peers: ReadonlyArray<OptionalPeer>,
  load: () => Promise<M>,
  make: (module: M) => Layer.Layer<A, E>,
  onError: (error: unknown) => E2
): Layer.Layer<A, E | E2> =>
  Layer.unwrapEffect(
    Effect.map(Effect.tryPromise({ try: () => importWithPeers(what, peers, load), catch: onError }), make)
  )
