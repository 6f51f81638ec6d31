/**
 * The core's dirty scopes driven directly: a compile cut off puts them back, a stored row loads back as it was
 * (a restart, a partition handed to another runner), and a bank without scopes holds nothing beside the table.
 */
import { describe, expect, it } from "@effect/vitest"
import { CompileCore } from "../../src/internal/core/compileCore.js"
import { ScopeSets, scopesColumn, scopesFromColumn } from "../../src/internal/core/dirtyScopes.js"
import { CompileTriggerConfig } from "../../src/CompileTriggerConfig.js"

const TOKEN = { epoch: 1, sequence: 1 }

const makeCore = () => {
  const fifo: Array<number> = []
  const core = new CompileCore({
    config: new CompileTriggerConfig({ sizeThreshold: 100, maxScopesPerBank: 4 }),
    maxAttempts: 3,
    baseDelayMillis: 1000,
    maxQueueSize: Infinity,
    persistent: true,
    offer: (i) => fifo.push(i) > 0,
    budget: undefined
  })
  const scoped = (id: string, scopes: ReadonlyArray<string>, count = 1) => {
    const i = core.table.index.get(id) ?? core.add(id)
    core.table.scopes.note(i, scopes, count, 0, core.config.maxScopesPerBank)
    if (!core.isCounted(i)) core.firstRetain(i, 0)
    core.retain(i, count, 0)
    return i
  }
  const run = (i: number) => {
    core.request(i)
    fifo.splice(fifo.indexOf(i), 1)
    const start = core.start(i)
    if (start._tag !== "Run") throw new Error(`expected a run, got ${start._tag}`)
    return { taken: start.memories, job: core.job(i, start.memories, TOKEN) }
  }
  return { core, scoped, run }
}

describe("dirty scopes in the core", () => {
  it("a compile cut off by shutdown consumes nothing: its scopes are dirty again, merged with later writes", () => {
    const { core, run, scoped } = makeCore()
    const i = scoped("b", ["a", "b"])
    const { job } = run(i)
    expect(job.scopes).toEqual(["a", "b"])
    scoped("b", ["c", "a"])
    core.interrupted(i)
    expect(core.snapshot(i).dirtyScopes).toEqual({
      all: false,
      scopes: [
        { scope: "a", memories: 2, forgets: 0 },
        { scope: "b", memories: 1, forgets: 0 },
        { scope: "c", memories: 1, forgets: 0 }
      ]
    })
    expect(core.table.scopes.taken.size).toBe(0)
  })

  it("a stored row, a running compile's scopes included, loads back as it was (restart, partition hand-over)", () => {
    const first = makeCore()
    const i = first.scoped("b", ["a"], 2)
    first.run(i)
    first.scoped("b", ["z"], 1)
    const row = first.core.row(i)
    expect(row.scopes).toEqual({ all: false, namedMemories: 3, namedForgets: 0, scopes: [["a", 2, 0], ["z", 1, 0]] })
    // Through the stores' column and back.
    const stored = { ...row, scopes: scopesFromColumn(scopesColumn(row.scopes)) }
    const second = makeCore()
    const [j] = second.core.restore([stored], 0)
    expect(second.core.snapshot(j!).dirtyScopes).toEqual(first.core.snapshot(i).dirtyScopes)
    // The restored bank compiles with them, and no write is taken as one that named no scope.
    expect(second.run(j!).job.scopes).toEqual(["a", "z"])
  })

  it("an \"all\" bank stays all across a row round trip", () => {
    const { core, scoped } = makeCore()
    const i = scoped("b", ["1", "2", "3", "4", "5"])
    const row = core.row(i)
    expect(row.scopes?.all).toBe(true)
    expect(scopesFromColumn(scopesColumn(row.scopes))).toEqual(row.scopes)
  })

  it("an unreadable column loads as no scopes", () => {
    expect(scopesFromColumn("{not json")).toBeNull()
    expect(scopesFromColumn(JSON.stringify({ all: false, namedMemories: 1, namedForgets: 0, scopes: [["a", -1, 0]] })))
      .toBeNull()
    expect(scopesFromColumn(null)).toBeNull()
  })

  it("banks whose writes name no scope hold nothing beside the table", () => {
    const { core, run } = makeCore()
    const i = core.add("plain")
    core.firstRetain(i, 0)
    core.retain(i, 3, 0)
    const { job, taken } = run(i)
    expect("scopes" in job).toBe(false)
    core.succeeded(i, taken, 1, undefined)
    expect(core.table.scopes.dirty.size + core.table.scopes.taken.size).toBe(0)
    expect(core.row(i).scopes).toBeNull()
  })

  it("sets of banks far apart in the table (a sparse array) are kept, found and dropped exactly", () => {
    const sets = new ScopeSets()
    const banks = [0, 7, 1_000_003, 65_536, 2_000_000]
    for (const i of banks) sets.note(i, [`page-${i}`], 2, 0, 4)
    expect(sets.dirty.size).toBe(banks.length)
    for (const i of banks) expect(sets.noteKnown(i, [`page-${i}`], 1, 0, 4)).toBe(true)
    expect(sets.noteKnown(8, ["page-0"], 1, 0, 4)).toBe(false) // a bank with no set
    sets.take(1_000_003, 3, 0)
    expect(sets.dirty.size).toBe(banks.length - 1)
    expect(sets.jobScopes(1_000_003)).toEqual(["page-1000003"])
    expect(sets.state(2_000_000)).toEqual({ all: false, scopes: [{ scope: "page-2000000", memories: 3, forgets: 0 }] })
  })
})
