/**
 * The tuner's grid: every combination of the candidate settings, each replayed over the same workload, summarised as
 * the report's rows (the `--json` shape), with the Pareto front of cost against freshness marked.
 *
 * @internal
 */
import { type EngineModel, replay, type ReplayMeasures, type TuneSettings, type Workload } from "./replay.js"

/** The candidate values of each setting; the grid is their cartesian product. */
export interface SettingsGrid {
  readonly sizeThreshold: ReadonlyArray<number>
  readonly stalenessDays: ReadonlyArray<number>
  readonly stalenessMinMemories: ReadonlyArray<number>
  readonly forgetThreshold: ReadonlyArray<number>
  readonly forgetDelaySeconds: ReadonlyArray<number>
  readonly maxWaitSeconds: ReadonlyArray<number>
  readonly budgetTokens: ReadonlyArray<number | null>
  readonly budgetCompiles: ReadonlyArray<number | null>
}

/** Every combination, in a fixed order (the last setting varies fastest). */
export const combinations = (grid: SettingsGrid): Array<TuneSettings> => {
  const out: Array<TuneSettings> = []
  for (const sizeThreshold of grid.sizeThreshold) {
    for (const stalenessDays of grid.stalenessDays) {
      for (const stalenessMinMemories of grid.stalenessMinMemories) {
        for (const forgetThreshold of grid.forgetThreshold) {
          for (const forgetDelaySeconds of grid.forgetDelaySeconds) {
            for (const maxWaitSeconds of grid.maxWaitSeconds) {
              for (const budgetTokens of grid.budgetTokens) {
                for (const budgetCompiles of grid.budgetCompiles) {
                  out.push({
                    sizeThreshold,
                    stalenessDays,
                    stalenessMinMemories,
                    forgetThreshold,
                    forgetDelaySeconds,
                    maxWaitSeconds,
                    budgetTokens,
                    budgetCompiles
                  })
                }
              }
            }
          }
        }
      }
    }
  }
  return out
}

/** One row of the report: what one combination would have cost and how fresh it would have kept the pages. */
export interface CombinationReport {
  readonly settings: TuneSettings
  readonly compiles: {
    readonly total: number
    /** Per 24 hours of the replayed window. */
    readonly perDay: number | null
    /** Compiles by why the bank was queued ("size", "staleness", "forget"). */
    readonly byReason: Readonly<Record<string, number>>
  }
  readonly tokens: { readonly total: number; readonly perDay: number | null }
  /** Retain to the end of the compile that consumed it, over every compiled memory; null when none was compiled. */
  readonly freshness: {
    readonly p50Seconds: number | null
    readonly p95Seconds: number | null
    readonly maxSeconds: number | null
  }
  /** Memories retained and not compiled by the end of the window. */
  readonly uncompiledMemories: number
  /** Banks with at least one retain that never compiled. */
  readonly banksNeverCompiled: number
  /**
   * Against the `maxWaitSeconds` deadline (null when it is off): compiled memories whose compile started after it
   * (how many, and their share of the compiled ones) and the largest lateness, in seconds.
   */
  readonly lateness: {
    readonly lateMemories: number
    readonly lateShare: number
    readonly maxSeconds: number
  } | null
  /** No other combination is at most as costly (tokens) and at most as stale (p95), and better in one. */
  readonly pareto: boolean
}

const seconds = (millis: number): number | null => Number.isFinite(millis) ? millis / 1000 : null

const perDay = (total: number, days: number): number | null => days > 0 ? total / days : null

const row = (settings: TuneSettings, m: ReplayMeasures): Omit<CombinationReport, "pareto"> => ({
  settings,
  compiles: { total: m.compiles, perDay: perDay(m.compiles, m.days), byReason: m.compilesByReason },
  tokens: { total: m.tokens, perDay: perDay(m.tokens, m.days) },
  freshness: {
    p50Seconds: seconds(m.freshnessP50),
    p95Seconds: seconds(m.freshnessP95),
    maxSeconds: seconds(m.freshnessMax)
  },
  uncompiledMemories: m.uncompiledMemories,
  banksNeverCompiled: m.banksNeverCompiled,
  lateness: settings.maxWaitSeconds > 0
    ? {
      lateMemories: m.lateMemories,
      lateShare: m.compiledMemories === 0 ? 0 : m.lateMemories / m.compiledMemories,
      maxSeconds: m.latenessMax / 1000
    }
    : null
})

/** The staleness a combination is judged by on the front: p95, with "never compiled anything" as worst. */
const staleness = (r: Omit<CombinationReport, "pareto">): number => r.freshness.p95Seconds ?? Infinity

/** Marks the rows no other row dominates on (tokens, p95 freshness). */
export const markPareto = (rows: ReadonlyArray<Omit<CombinationReport, "pareto">>): Array<CombinationReport> =>
  rows.map((r) => ({
    ...r,
    pareto: !rows.some((o) =>
      o !== r && o.tokens.total <= r.tokens.total && staleness(o) <= staleness(r) &&
      (o.tokens.total < r.tokens.total || staleness(o) < staleness(r))
    )
  }))

/** Per combination: the settings, the row, and the daily compile counts (for the report page). */
export interface TuneResult {
  readonly rows: ReadonlyArray<CombinationReport>
  readonly dailyCompiles: ReadonlyArray<ReadonlyArray<number>>
  /** Epoch milliseconds of the window. */
  readonly start: number
  readonly end: number
  readonly events: number
  readonly banks: number
}

/** Progress of a whole grid: combination index (0-based), events replayed in it, events per combination. */
export type OnGridProgress = (combination: number, replayed: number) => void

/** Replays the workload once per combination, in order. Deterministic: same workload and grid, same result. */
export const tune = (
  workload: Workload,
  grid: ReadonlyArray<TuneSettings>,
  model: EngineModel,
  onProgress?: OnGridProgress
): TuneResult => {
  const rows: Array<Omit<CombinationReport, "pareto">> = []
  const dailyCompiles: Array<ReadonlyArray<number>> = []
  grid.forEach((settings, index) => {
    const measures = replay(workload, settings, model, onProgress && ((replayed) => onProgress(index, replayed)))
    rows.push(row(settings, measures))
    dailyCompiles.push(measures.dailyCompiles)
    onProgress?.(index, workload.length)
  })
  return {
    rows: markPareto(rows),
    dailyCompiles,
    start: workload.start,
    end: workload.end,
    events: workload.length,
    banks: workload.bankIds.length
  }
}
