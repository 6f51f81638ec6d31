/**
 * The tuner's workloads: a JSON Lines log read into columns (checked line by line, in time order), or a synthetic
 * month — heavy-tailed activity across banks and a daily rhythm — from a seed.
 *
 * @internal
 */
import { Utils } from "effect"
import { invalidScopes } from "../../DirtyScopes.js"
import type { Workload } from "./replay.js"

const DAY = 86_400_000

/** Collects events into columns; `add` says what is wrong with a line, `build` finishes. */
export class WorkloadBuilder {
  private times = new Float64Array(1 << 16)
  private banks = new Int32Array(1 << 16)
  private counts = new Int32Array(1 << 16)
  private length = 0
  private readonly bankIds: Array<string> = []
  private readonly index = new Map<string, number>()
  /** Sparse: the scopes of the events that named some, by event index; and each bank's distinct scopes. */
  private readonly scopes = new Map<number, ReadonlyArray<string>>()
  private readonly bankScopeNames = new Map<number, Set<string>>()
  private lastTime = -Infinity
  private lastLine = 0

  private grow(): void {
    const size = this.times.length * 2
    const times = new Float64Array(size)
    times.set(this.times)
    const banks = new Int32Array(size)
    banks.set(this.banks)
    const counts = new Int32Array(size)
    counts.set(this.counts)
    this.times = times
    this.banks = banks
    this.counts = counts
  }

  /** Appends one event (count > 0 retain, < 0 forget), with the scopes it named; the caller keeps time order. */
  push(time: number, bankId: string, count: number, scopes?: ReadonlyArray<string>): void {
    if (this.length === this.times.length) this.grow()
    let bank = this.index.get(bankId)
    if (bank === undefined) {
      bank = this.bankIds.push(bankId) - 1
      this.index.set(bankId, bank)
    }
    this.times[this.length] = time
    this.banks[this.length] = bank
    this.counts[this.length] = count
    if (scopes !== undefined && scopes.length > 0) {
      this.scopes.set(this.length, scopes)
      let names = this.bankScopeNames.get(bank)
      if (names === undefined) this.bankScopeNames.set(bank, names = new Set())
      for (const scope of scopes) names.add(scope)
    }
    this.length++
    this.lastTime = time
  }

  /** One line of a log (1-based `line`): undefined when it was taken (or blank), else what is wrong with it. */
  addLine(text: string, line: number): string | undefined {
    if (text.trim().length === 0) return undefined
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      return `line ${line}: not JSON: ${text.length > 80 ? `${text.slice(0, 80)}…` : text}`
    }
    const event = checkEvent(value)
    if (typeof event === "string") return `line ${line}: ${event}`
    if (event.time < this.lastTime) {
      return `line ${line}: out of time order: ${new Date(event.time).toISOString()} is before line ${this.lastLine}'s ${
        new Date(this.lastTime).toISOString()
      } (the log must be sorted by t)`
    }
    this.push(event.time, event.bankId, event.forget ? -event.count : event.count, event.scopes)
    this.lastLine = line
    return undefined
  }

  /** Each bank's number of distinct scopes. */
  private distinctScopes(): Int32Array {
    const counts = new Int32Array(this.bankIds.length)
    for (const [bank, names] of this.bankScopeNames) counts[bank] = names.size
    return counts
  }

  get size(): number {
    return this.length
  }

  /** The workload; its window runs from `start` (default: the first event) to `end` (default: the last). */
  build(start?: number, end?: number): Workload {
    const n = this.length
    const first = n > 0 ? this.times[0]! : 0
    return {
      bankIds: this.bankIds,
      times: this.times.slice(0, n),
      banks: this.banks.slice(0, n),
      counts: this.counts.slice(0, n),
      ...(this.scopes.size === 0 ? {} : { scopes: this.scopes, bankScopes: this.distinctScopes() }),
      length: n,
      start: start ?? first,
      end: end ?? (n > 0 ? this.times[n - 1]! : first)
    }
  }
}

interface LogEvent {
  readonly time: number
  readonly bankId: string
  readonly count: number
  readonly forget: boolean
  readonly scopes: ReadonlyArray<string> | undefined
}

const ISO_DATE = /^\d{4}-\d{2}-\d{2}/

/** A parsed line as an event, or what is wrong with it. */
const checkEvent = (value: unknown): LogEvent | string => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "an event must be a JSON object"
  const { bankId, count = 1, op = "retain", scopes, t } = value as Record<string, unknown>
  let time: number
  if (typeof t === "number") time = t
  else if (typeof t === "string" && ISO_DATE.test(t)) time = Date.parse(t)
  else return `"t" must be an ISO time or epoch milliseconds, got ${JSON.stringify(t) ?? "nothing"}`
  if (!Number.isFinite(time)) return `"t" is not a valid time: ${JSON.stringify(t)}`
  if (typeof bankId !== "string" || bankId.length === 0) return `"bankId" must be a non-empty string`
  if (typeof count !== "number" || !Number.isSafeInteger(count) || count < 1 || count > 0x7fff_ffff) {
    return `"count" must be a positive integer, got ${JSON.stringify(count)}`
  }
  if (op !== "retain" && op !== "forget") return `"op" must be "retain" or "forget", got ${JSON.stringify(op)}`
  const badScopes = scopes === undefined ? undefined : invalidScopes(scopes)
  if (badScopes !== undefined) return `"scopes": ${badScopes}`
  return { time, bankId, count, forget: op === "forget", scopes: scopes as ReadonlyArray<string> | undefined }
}

/** How the synthetic generator draws a month. */
export interface SyntheticOptions {
  readonly banks: number
  readonly days: number
  readonly retainsPerDay: number
  readonly forgetsPerDay: number
  readonly seed: number
  /** Epoch milliseconds of the window's start (default 2026-11-01T00:00:00Z). */
  readonly start?: number | undefined
}

/** Bank activity falls off as rank^-ZIPF_EXPONENT: a few very active banks, most quiet. */
const ZIPF_EXPONENT = 1.1
/** Activity over the day: 1 + RHYTHM·cos(2π(h − PEAK_HOUR)/24), busiest at 15:00 UTC, quietest at 03:00. */
const RHYTHM = 0.8
const PEAK_HOUR = 15

/** Cumulative activity share by bank rank. */
const bankCdf = (banks: number): Float64Array => {
  const cdf = new Float64Array(banks)
  let sum = 0
  for (let i = 0; i < banks; i++) cdf[i] = sum += (i + 1) ** -ZIPF_EXPONENT
  for (let i = 0; i < banks; i++) cdf[i]! /= sum
  return cdf
}

/** The cumulative share of a day's activity at each minute boundary (1,441 values, 0 to 1). */
const dayCdf = (): Float64Array => {
  const cdf = new Float64Array(1441)
  for (let m = 0; m < 1440; m++) {
    const hour = (m + 0.5) / 60
    cdf[m + 1] = cdf[m]! + 1 + RHYTHM * Math.cos((2 * Math.PI * (hour - PEAK_HOUR)) / 24)
  }
  for (let m = 0; m <= 1440; m++) cdf[m]! /= cdf[1440]!
  return cdf
}

/** The first index whose cumulative value exceeds `u`. */
const pick = (cdf: Float64Array, u: number): number => {
  let lo = 0
  let hi = cdf.length - 1
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (cdf[mid]! > u) hi = mid
    else lo = mid + 1
  }
  return lo
}

/** A seeded synthetic workload: `retainsPerDay` retains and `forgetsPerDay` forgets each day, in time order. */
export const synthetic = (options: SyntheticOptions): Workload => {
  const random = new Utils.PCGRandom(options.seed)
  const start = options.start ?? Date.UTC(2026, 10, 1)
  const banksCdf = bankCdf(options.banks)
  const minutes = dayCdf()
  const perDay = options.retainsPerDay + options.forgetsPerDay
  const forgetShare = perDay === 0 ? 0 : options.forgetsPerDay / perDay
  const builder = new WorkloadBuilder()
  const ids = Array.from({ length: options.banks }, (_, i) => `bank-${String(i + 1).padStart(5, "0")}`)
  const draws = new Float64Array(perDay)
  for (let day = 0; day < options.days; day++) {
    for (let n = 0; n < perDay; n++) draws[n] = random.number()
    draws.sort()
    let minute = 0
    for (let n = 0; n < perDay; n++) {
      const u = draws[n]!
      while (minutes[minute + 1]! <= u && minute < 1439) minute++
      const within = (u - minutes[minute]!) / (minutes[minute + 1]! - minutes[minute]!)
      const time = start + day * DAY + Math.floor((minute + Math.min(within, 0.999_999)) * 60_000)
      const bank = pick(banksCdf, random.number())
      builder.push(time, ids[bank]!, random.number() < forgetShare ? -1 : 1)
    }
  }
  return builder.build(start, start + options.days * DAY)
}
