/**
 * The bounds of the HTTP server's connections and their defaults: the deadlines for a request's headers and for the
 * whole request, the keep-alive idle deadline, the cap on open connections (from the open-file limit), and Node's
 * server options for them. No platform import: the service's configuration reads the defaults.
 *
 * @internal
 */
import { Duration, Option } from "effect"
import { readFileSync } from "node:fs"
import type { ServerOptions } from "node:http"

/** The bounds of the server's connections, in milliseconds and connections. */
export interface ConnectionLimits {
  /** From a connection's opening (or a request's first byte) to its complete headers; 0 = no limit. */
  readonly headersTimeoutMillis: number
  /** From a request's first byte to its last (body included); 0 = no limit. */
  readonly requestTimeoutMillis: number
  /** How long a kept-alive connection may sit idle between requests. */
  readonly keepAliveTimeoutMillis: number
  /** Open connections at most. */
  readonly maxConnections: number
}

/** Nginx's and Go's usual header deadline order of magnitude: a real client sends its headers within milliseconds. */
export const DEFAULT_HEADERS_TIMEOUT_MILLIS = 10_000
/** A 1 MiB body (the largest accepted) arrives in 30 s over a link of 35 KB/s. */
export const DEFAULT_REQUEST_TIMEOUT_MILLIS = 30_000
/** Node's own default. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MILLIS = 5_000
/** The cap's default where the open-file limit allows it (see `defaultMaxConnections`). */
export const MAX_CONNECTIONS_CEILING = 10_000

/**
 * The process's open-file limit (Linux: `/proc/self/limits`; Node raises its soft limit to the hard one at start),
 * or undefined where it cannot be read.
 */
export const openFileLimit = (): number | undefined => {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"))
    const soft = line === undefined ? NaN : Number(line.slice("Max open files".length).trim().split(/\s+/)[0])
    return Number.isSafeInteger(soft) && soft > 0 ? soft : undefined
  } catch {
    return undefined
  }
}

/**
 * 10,000 connections, or half the open-file limit when that is lower: the other half stays for the store, the
 * webhook's calls, cluster traffic and the process's own files, so a flood of connections never starves them.
 */
export const defaultMaxConnections = (limit: number | undefined = openFileLimit()): number =>
  limit === undefined ? MAX_CONNECTIONS_CEILING : Math.max(1, Math.min(MAX_CONNECTIONS_CEILING, Math.floor(limit / 2)))

/**
 * Node's options for the limits. Node checks its header and request deadlines every `connectionsCheckingInterval`
 * (30 s by default, which let a connection outlive a 10 s deadline threefold): here a quarter of the shorter
 * deadline, between 250 ms and 5 s.
 */
export const serverOptions = (limits: ConnectionLimits): ServerOptions => {
  const deadlines = [limits.headersTimeoutMillis, limits.requestTimeoutMillis].filter((ms) => ms > 0)
  const shortest = deadlines.length === 0 ? 30_000 : Math.min(...deadlines)
  return {
    headersTimeout: limits.headersTimeoutMillis,
    requestTimeout: limits.requestTimeoutMillis,
    connectionsCheckingInterval: Math.min(5_000, Math.max(250, Math.floor(shortest / 4)))
  }
}

/** The connection options of `CompileTriggerServer.layer` (see `ConnectionOptions` there). */
export interface ConnectionInput {
  readonly headersTimeout?: Duration.DurationInput | undefined
  readonly requestTimeout?: Duration.DurationInput | undefined
  readonly keepAliveTimeout?: Duration.DurationInput | undefined
  readonly maxConnections?: number | undefined
}

const millis = (name: string, input: Duration.DurationInput | undefined, fallback: number): number => {
  if (input === undefined) return fallback
  // Duration.decode silently turns negative numbers into zero: reject them before it sees them.
  const negative = (typeof input === "number" && input < 0) || (typeof input === "string" && /^\s*-/.test(input))
  const decoded = negative ? Option.none() : Duration.decodeUnknown(input)
  const ms = Option.isSome(decoded) ? Duration.toMillis(decoded.value) : NaN
  if (!(ms >= 0) || !Number.isFinite(ms)) throw new Error(`${name} must be a finite, non-negative duration, got ${String(input)}`)
  return Math.round(ms)
}

/** The limits with their defaults; an invalid option throws (a defect when the server is built) naming it. */
export const resolveLimits = (input: ConnectionInput): ConnectionLimits => {
  const headersTimeoutMillis = millis("headersTimeout", input.headersTimeout, DEFAULT_HEADERS_TIMEOUT_MILLIS)
  const requestTimeoutMillis = millis("requestTimeout", input.requestTimeout, DEFAULT_REQUEST_TIMEOUT_MILLIS)
  const keepAliveTimeoutMillis = millis("keepAliveTimeout", input.keepAliveTimeout, DEFAULT_KEEP_ALIVE_TIMEOUT_MILLIS)
  const maxConnections = input.maxConnections ?? defaultMaxConnections()
  if (!Number.isSafeInteger(maxConnections) || maxConnections < 1) {
    throw new Error(`maxConnections must be a positive integer, got ${String(maxConnections)}`)
  }
  // Node refuses a header deadline past the request's: the headers are part of the request.
  if (requestTimeoutMillis > 0 && headersTimeoutMillis > requestTimeoutMillis) {
    throw new Error(
      `headersTimeout (${headersTimeoutMillis} ms) must not be longer than requestTimeout (${requestTimeoutMillis} ms)`
    )
  }
  return { headersTimeoutMillis, requestTimeoutMillis, keepAliveTimeoutMillis, maxConnections }
}

