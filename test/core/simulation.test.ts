/**
 * Deterministic simulation of the compile queue over its core alone: no runtime, no fibers, no TestClock. A small
 * event loop plays the runtime's part as the runtime does it — the bounded bank queue (a bank handed straight to an
 * idle worker, else buffered), the core's waiting room for retries and restored banks (`requeue`, `fillRoom` after
 * every take), `concurrency` workers, the cost budget (a worker waits while the global budget is spent and takes the
 * held head first; deferred banks come back at their due time; each compile is charged), retry timers, the staleness
 * watcher, the sweep timer and `compileTimeout` — and
 * fast-check generates the same scenarios and commands as test/runtime/model.test.ts (seeded retains, clock steps, engine
 * outcomes). After every step it checks the model test's invariants: nothing lost or counted twice
 * (`retained = consumed + counter`), failures counted, pending/running sets agree with statuses, single flight,
 * `running ≤ concurrency`, `queued ≤ maxQueueSize`, queued before `notifyRetain` returns iff the rule holds, parking,
 * and at the end every bank the rule says is due gets compiled. With policies, forgets and disabled banks: forgotten =
 * consumed + counter, never queued or compiled while disabled (unless by compileNow), forget delays honoured. And the
 * core's own invariants (`invariantViolations`: statuses and sets agree, waiting banks are pending, counts ≥ 0).
 *
 * Replay: `SIM_SEED=<seed> npx vitest run test/core/simulation.test.ts`; `SIM_RUNS=<n>` runs more cases.
 */
import { describe, it } from "@effect/vitest"
import { type BankCompileState, BankPolicy, compileReason, CompileTriggerConfig, shouldTrigger } from "../../src/index.js"
import { DateTime, FastCheck as fc } from "effect"
import { type Answer, CompileCore, DELAY, RECHECK } from "../../src/internal/core/compileCore.js"
import { DROP_WARNED, MANUAL, PARKED } from "../../src/internal/core/bankTable.js"
import { type Command as ScenarioCommand, commandsOf, type Scenario, scenarioArb } from "../support/scenarios.js"
import { prng } from "../support/random.js"
import type { PolicyFields } from "../support/utils.js"


const HOUR_MILLIS = 3_600_000
const DAY_MILLIS = 24 * HOUR_MILLIS

type Outcome = "ok" | "okWithError" | "fail" | "hang"

type Command = ScenarioCommand<Outcome>

// the model's "fail", "die", "throw" and "interrupt" all reach the core as a failure
const commandArb = commandsOf<Outcome>(["ok", "ok", "ok", "okWithError", "fail", "fail", "fail", "fail", "hang"])

const fail = (message: string): never => {
  throw new Error(message)
}

const ensure = (ok: boolean, message: string): void => {
  if (!ok) fail(message)
}


/** A cost budget for the simulation: the core's limits and what each compile uses. */
interface SimBudget {
  readonly tokens: number
  readonly compiles: number
  readonly bankTokens: number
  readonly periodMillis: number
  readonly tokensPerCompile: number
}

const budgetArb: fc.Arbitrary<SimBudget | undefined> = fc.option(
  fc.record({
    tokens: fc.constantFrom(Infinity, 50, 200),
    compiles: fc.constantFrom(Infinity, 2, 5),
    bankTokens: fc.constantFrom(Infinity, 20, 60),
    periodMillis: fc.constantFrom(HOUR_MILLIS, DAY_MILLIS),
    tokensPerCompile: fc.integer({ min: 0, max: 40 })
  }),
  { nil: undefined, freq: 2 }
)

interface Run {
  readonly i: number
  readonly taken: number
  readonly forgets: number
  readonly deadline: number
  hung: boolean
}

/** The runtime's part, played synchronously: queue, workers, timers. */
class World {
  now = 0
  /** Banks handed straight to an idle worker (Effect's `unsafeOffer` with a waiting taker), then the buffer. */
  readonly handedOff: Array<number> = []
  readonly buffer: Array<number> = []
  readonly runs: Array<Run> = []
  /** Workers between taking a bank and starting it. */
  private taking = 0
  readonly timers: Array<{ readonly at: number; readonly i: number }> = []
  /** Forget delays armed (the runtime's timer fibers). */
  readonly forgetTimers: Array<{ readonly at: number; readonly i: number }> = []
  /** Banks that were pending or running when a policy disabled them: they may still be in the queue (then skipped). */
  readonly graced = new Set<number>()
  nextSweep: number
  healthy = false
  readonly violations: Array<string> = []
  readonly core: CompileCore
  readonly capacity: number
  private readonly jitter: () => number

  constructor(
    readonly scenario: Scenario,
    readonly config: CompileTriggerConfig,
    readonly model: Model,
    readonly budget: SimBudget | undefined
  ) {
    this.capacity = scenario.maxQueueSize <= 0 ? Infinity : scenario.maxQueueSize
    this.nextSweep = scenario.sweepInterval
    this.jitter = prng(scenario.randomSeed)
    this.core = new CompileCore({
      config,
      maxAttempts: scenario.maxAttempts,
      baseDelayMillis: scenario.baseDelay,
      maxQueueSize: this.capacity,
      persistent: false,
      offer: (i) => this.offer(i),
      budget
    })
  }

  /**
   * The bank queue's `unsafeOffer`: straight to a worker waiting in `take` (one is idle, and not waiting for the
   * global budget or about to take the held head), else into the buffer while there is room.
   */
  private offer(i: number): boolean {
    const idle = this.runs.length + this.handedOff.length + this.taking < this.scenario.concurrency
    if (this.buffer.length === 0 && idle && !this.budgetClosed() && this.core.nextHeld() === -1) {
      this.handedOff.push(i)
      return true
    }
    if (this.buffer.length >= this.capacity) return false
    this.buffer.push(i)
    return true
  }

  idOf(i: number): string {
    return this.core.table.ids[i]!
  }

  /** Carries out an answer as the runtime does: a policy bank's exact re-check, a forget delay to arm. */
  answer(i: number, answer: Answer): void {
    if (answer === RECHECK) answer = this.core.recheck(i, this.now)
    if (answer === DELAY) {
      const delay = this.core.armForget(i, this.now)
      this.forgetTimers.push({ at: this.now + delay, i })
    }
  }

  /** The global budget is spent: workers wait for it to open (the runtime's `budgetWait`). */
  private budgetClosed(): boolean {
    return this.core.budget.globalLimited && this.core.budget.opensAt(this.now) > this.now
  }

  /** One worker's turn, as `compileWorker.ts` takes: the held head first, else the queue (then the room fills). */
  private takeOne(): boolean {
    // A bank handed to a worker waiting in `take` is its to start, open budget or not (it may be held then).
    if (this.handedOff.length > 0) return this.taken(this.handedOff.shift()!)
    if (this.budgetClosed()) return false
    const held = this.core.nextHeld()
    if (held !== -1) return this.start(held)
    return this.buffer.length > 0 && this.taken(this.buffer.shift()!)
  }

  /** A worker took bank `i` from the queue: the room fills, then it starts. */
  private taken(i: number): boolean {
    this.taking++ // this worker is not waiting in `take` while the room fills
    this.core.fillRoom()
    this.taking--
    this.start(i)
    return true
  }

  /** Workers take what they can; a healthy engine finishes at once; due zero-delay timers fire. */
  settle(): void {
    for (let changed = true; changed;) {
      changed = false
      while (this.runs.length < this.scenario.concurrency && this.takeOne()) changed = true
      if (this.healthy && this.runs.length > 0) {
        for (const run of this.runs.splice(0)) this.finish(run, "ok")
        changed = true
      }
      const due = this.timers.findIndex((t) => t.at <= this.now)
      if (due >= 0) {
        this.core.requeue(this.timers.splice(due, 1)[0]!.i)
        changed = true
      }
      for (const i of this.core.deferredDue(this.now)) {
        this.core.requeue(i)
        changed = true
      }
      const forgetDue = this.forgetTimers.findIndex((t) => t.at <= this.now)
      if (forgetDue >= 0) {
        const timer = this.forgetTimers.splice(forgetDue, 1)[0]!
        this.answer(timer.i, this.core.forgetDelayOver(timer.i, timer.at, this.now))
        changed = true
      }
    }
  }

  /** A worker starts bank `i`: true when the worker moves on (it ran, was skipped or deferred), false when it waits. */
  private start(i: number): boolean {
    if (this.runs.some((r) => r.i === i)) this.violations.push(`two runs of ${this.idOf(i)} at once`)
    const manual = this.core.table.reasons.get(i) === MANUAL
    const disabled = !this.core.configOf(i).enabled
    const start = this.core.start(i, this.now)
    if (start._tag === "WaitBudget") return false
    if (start._tag === "Deferred") return true
    if (start._tag === "Skipped") {
      if (!disabled || manual) this.violations.push(`${this.idOf(i)} skipped while enabled or asked for`)
      this.model.skipped(this.idOf(i))
      return true
    }
    const taken = start.memories
    if (disabled && !manual) this.violations.push(`${this.idOf(i)} compiled while disabled`)
    const expected = this.model.waitOf(this.idOf(i), taken, this.now)
    const got = start.memoryWait
    if (
      (expected === undefined) !== (got === undefined) ||
      (expected !== undefined && got !== undefined &&
        (Math.abs(expected.meanSeconds - got.meanSeconds) > 1e-6 || expected.oldestSeconds !== got.oldestSeconds))
    ) this.violations.push(`${this.idOf(i)}: memory wait ${JSON.stringify(got)}, the model says ${JSON.stringify(expected)}`)
    const job = this.core.job(i, taken, { epoch: 0, sequence: 1 })
    const timeout = this.scenario.compileTimeout
    this.runs.push({
      i,
      taken,
      forgets: job.forgets,
      deadline: timeout === undefined ? Infinity : this.now + timeout,
      hung: false
    })
    return true
  }

  finish(run: Run, outcome: "ok" | "okWithError" | "fail"): void {
    const id = this.idOf(run.i)
    if (outcome !== "fail") {
      this.model.succeeded(id, run.taken, run.forgets)
      if (this.budget !== undefined) this.core.charge(run.i, this.budget.tokensPerCompile, this.now)
      this.answer(
        run.i,
        this.core.succeeded(run.i, run.taken, this.now, outcome === "okWithError" ? "partial compile" : undefined)
      )
      return
    }
    this.model.failed(id, this.scenario.maxAttempts)
    const { attempt, retry } = this.core.failed(run.i, "engine failed")
    if (retry) this.timers.push({ at: this.now + this.core.retryDelay(attempt, 0.5 + this.jitter()), i: run.i })
  }

  /** The next timer of any kind: staleness, compile timeout, retry, sweep. */
  private nextEvent(): number {
    let next = Math.min(this.nextSweep, this.core.nextStaleDue || Infinity, this.core.freshness.nextDue || Infinity)
    for (const run of this.runs) next = Math.min(next, run.deadline)
    for (const timer of this.timers) next = Math.min(next, timer.at)
    for (const timer of this.forgetTimers) next = Math.min(next, timer.at)
    next = Math.min(next, this.core.nextDeferredDue || Infinity)
    if (this.budgetClosed() && this.waitingForWorkers()) next = Math.min(next, this.core.budget.opensAt(this.now))
    return next
  }

  /** Something waits for a worker: the held head, or banks in the queue. */
  waitingForWorkers(): boolean {
    return this.core.nextHeld() !== -1 || this.handedOff.length + this.buffer.length > 0
  }

  /** How far to move the clock for the budget to let what waits go on (0: nothing waits for it). */
  budgetJump(): number {
    const deferred = this.core.nextDeferredDue
    const opens = this.budgetClosed() && this.waitingForWorkers() ? this.core.budget.opensAt(this.now) - this.now : 0
    return Math.max(opens, deferred === deferred ? deferred - this.now : 0)
  }

  advance(millis: number): void {
    const target = this.now + millis
    for (let at = this.nextEvent(); at <= target; at = this.nextEvent()) {
      this.now = Math.max(this.now, at)
      this.core.staleDue(this.now)
      this.deadlinesDue()
      for (const run of this.runs.filter((r) => r.deadline <= this.now)) {
        this.runs.splice(this.runs.indexOf(run), 1)
        this.finish(run, "fail")
      }
      this.settle()
      if (this.nextSweep <= this.now) {
        this.core.sweep(this.now)
        this.nextSweep += this.scenario.sweepInterval
        this.model.sweptAt()
      }
      this.settle()
    }
    this.now = target
    this.core.staleDue(this.now)
    this.deadlinesDue()
    this.settle()
  }

  /** The deadline watcher's round: banks whose deadline came are re-checked (queued for `deadline`). */
  private deadlinesDue(): void {
    for (const i of this.core.freshness.due(this.now)) this.answer(i, this.core.recheck(i, this.now))
  }
}

/** What the test knows independently of the core. */
class Model {
  readonly retained = new Map<string, number>()
  readonly consumed = new Map<string, number>()
  readonly forgotten = new Map<string, number>()
  readonly consumedForgets = new Map<string, number>()
  readonly failures = new Map<string, number>()
  readonly attempts = new Map<string, number>()
  /** Retries spent: only a sweep or compileNow queues it again; undefined = unknown (a sweep ran). */
  readonly parked = new Map<string, boolean | undefined>()

  private add(map: Map<string, number>, id: string, n: number): void {
    map.set(id, (map.get(id) ?? 0) + n)
  }
  /** Each bank's uncompiled memories in arrival order: [time, count] batches. */
  readonly arrivals = new Map<string, Array<[number, number]>>()
  retain(id: string, n: number, now: number): void {
    this.add(this.retained, id, n)
    if (!this.parked.has(id)) this.parked.set(id, false)
    const batches = this.arrivals.get(id) ?? []
    batches.push([now, n])
    this.arrivals.set(id, batches)
  }
  /** The wait of the `taken` oldest uncompiled memories at `now` (seconds), straight from their retain times. */
  waitOf(id: string, taken: number, now: number): { meanSeconds: number; oldestSeconds: number } | undefined {
    const batches = this.arrivals.get(id) ?? []
    if (taken === 0 || batches.length === 0) return undefined
    let left = taken
    let total = 0
    for (const [at, count] of batches) {
      const k = Math.min(left, count)
      total += k * Math.max(0, now - at)
      if ((left -= k) === 0) break
    }
    return { meanSeconds: total / taken / 1000, oldestSeconds: Math.max(0, now - batches[0]![0]) / 1000 }
  }
  /** The oldest uncompiled memory's time (NaN: none). */
  oldestOf(id: string): number {
    return this.arrivals.get(id)?.[0]?.[0] ?? NaN
  }
  forget(id: string, n: number): void {
    this.add(this.forgotten, id, n)
    if (!this.parked.has(id)) this.parked.set(id, false)
  }
  /** Disabled while it waited: the trigger is over, its attempts with it. */
  skipped(id: string): void {
    this.attempts.set(id, 0)
  }
  succeeded(id: string, k: number, f: number): void {
    const batches = this.arrivals.get(id) ?? []
    for (let left = k; left > 0;) {
      const first = batches[0]!
      const used = Math.min(left, first[1])
      left -= used
      if (used === first[1]) batches.shift()
      else first[1] -= used
    }
    this.add(this.consumed, id, k)
    this.add(this.consumedForgets, id, f)
    this.failures.set(id, 0)
    this.attempts.set(id, 0)
    this.parked.set(id, false)
  }
  failed(id: string, maxAttempts: number): void {
    this.add(this.failures, id, 1)
    const spent = (this.attempts.get(id) ?? 0) + 1
    this.attempts.set(id, spent >= maxAttempts ? 0 : spent)
    if (spent >= maxAttempts) this.parked.set(id, true)
  }
  sweptAt(): void {
    for (const id of this.parked.keys()) this.parked.set(id, undefined)
  }
}

const simulate = (scenario: Scenario, budget: SimBudget | undefined, commands: ReadonlyArray<Command>): void => {
  const config = new CompileTriggerConfig({
    sizeThreshold: scenario.sizeThreshold,
    stalenessDays: scenario.stalenessDays,
    stalenessMinMemories: scenario.stalenessMinMemories,
    enabled: scenario.enabled,
    forgetThreshold: scenario.forgetThreshold,
    forgetDelaySeconds: scenario.forgetDelaySeconds,
    maxWaitSeconds: scenario.maxWaitSeconds
  })
  const model = new Model()
  const world = new World(scenario, config, model, budget)
  const { core } = world
  const idOf = (bank: number) => `bank-${bank % scenario.banks}`
  const indexOf = (id: string) => core.table.index.get(id) ?? core.add(id)
  const stateOf = (id: string): BankCompileState | undefined => {
    const i = core.table.index.get(id)
    return i === undefined ? undefined : core.snapshot(i)
  }
  const dueNow = (s: BankCompileState) => shouldTrigger(s, config, DateTime.unsafeMake(world.now))
  const reasonNow = (s: BankCompileState) => compileReason(s, config, DateTime.unsafeMake(world.now))
  /** Due by size or staleness: queued at once (a forget-only trigger may wait for its delay). */
  const dueAtOnce = (s: BankCompileState) => {
    const reason = reasonNow(s)
    return reason === "size" || reason === "staleness"
  }
  const room = () => core.counts().queued < world.capacity

  /** The invariants, checked without `expect` (a few million checks a run: each costs microseconds there). */
  /**
   * The oldest uncompiled memory is the model's, and no memory waits longer than its max wait plus the time a free
   * worker and the budget take: once a bank's deadline passed it is pending or running — unless it is parked,
   * disabled, or refused by a full queue (then it waits for room like any due bank).
   */
  const freshness = (step: string, i: number, id: string) => {
    const { table } = core
    const oldest = table.oldestUncompiledAt(i)
    const expected = model.oldestOf(id)
    if (!(oldest === expected || (oldest !== oldest && expected !== expected))) {
      fail(`${step}: oldest uncompiled memory of ${id} is ${oldest}, the model says ${expected}`)
    }
    const state = table.state[i]!
    if (
      core.statusOf(i) === "idle" && core.deadlineAt(i) <= world.now && core.configOf(i).enabled && core.accepting &&
      (state & (PARKED | DROP_WARNED)) === 0
    ) fail(`${step}: ${id} idle past its deadline ${core.deadlineAt(i)} at ${world.now}`)
  }

  const check = (step: string) => {
    if (world.violations.length > 0) fail(`${step}: ${world.violations.join("; ")}`)
    const { table } = core
    for (const id of model.retained.keys()) {
      if (!table.index.has(id)) fail(`${step}: ${id} retained but unknown`)
    }
    for (let i = 0; i < table.size; i++) {
      const id = table.ids[i]!
      const counter = table.memories[i]!
      if ((model.consumed.get(id) ?? 0) + counter !== (model.retained.get(id) ?? 0)) {
        fail(`${step}: reconciliation of ${id}: consumed ${model.consumed.get(id)} + ${counter} ≠ ${model.retained.get(id)}`)
      }
      if ((model.consumedForgets.get(id) ?? 0) + table.forgets(i) !== (model.forgotten.get(id) ?? 0)) {
        fail(`${step}: forget reconciliation of ${id}`)
      }
      if (core.statusOf(i) === "idle") world.graced.delete(i)
      if (
        core.pending.has(i) && !core.configOf(i).enabled && table.reasons.get(i) !== MANUAL && !world.graced.has(i)
      ) fail(`${step}: ${id} queued while disabled`)
      if (table.consecutiveFailures(i) !== (model.failures.get(id) ?? 0)) fail(`${step}: consecutiveFailures of ${id}`)
      const status = core.statusOf(i)
      if (core.pending.has(i) !== (status === "pending")) fail(`${step}: pending vs status of ${id}`)
      if (core.running.has(i) !== (status === "running")) fail(`${step}: running vs status of ${id}`)
      freshness(step, i, id)
    }
    if (world.runs.length !== core.running.size || world.runs.some((r) => !core.running.has(r.i))) {
      fail(`${step}: running banks differ from the runs in flight`)
    }
    const counts = core.counts()
    if (counts.running > scenario.concurrency) fail(`${step}: running > concurrency`)
    if (counts.queued > world.capacity + core.gate.held.length) {
      fail(`${step}: queued ${counts.queued} > maxQueueSize ${world.capacity} (+ ${core.gate.held.length} held); buffer ${
        JSON.stringify(world.buffer)
      }, handed off ${JSON.stringify(world.handedOff)}, held ${JSON.stringify(core.gate.held)}`)
    }
    const inQueue = world.buffer.length + world.handedOff.length + core.gate.held.length
    if (core.inQueue !== inQueue) fail(`${step}: the core counts ${core.inQueue} queued, the queue holds ${inQueue}`)
    const broken = core.invariantViolations()
    if (broken.length > 0) fail(`${step}: ${broken.join("; ")}`)
  }

  const notify = (id: string, count: number, label: string) => {
    const i = indexOf(id)
    const before = core.statusOf(i)
    const hasRoom = room()
    if (!core.isCounted(i)) core.firstRetain(i, world.now)
    world.answer(i, core.retain(i, count, world.now))
    model.retain(id, count, world.now)
    const after = core.snapshot(i)
    const parked = model.parked.get(id)
    if (before !== "idle") ensure(after.status === before, `${label}: status`)
    else if (parked === true) ensure(after.status === "idle", `${label}: a parked bank is not queued by retains`)
    else if (parked === false && hasRoom && reasonNow(after) !== "forget") {
      ensure(
        after.status === (dueNow(after) ? "pending" : "idle"),
        `${label}: queued before notifyRetain returns iff it triggers`
      )
    }
  }

  const forget = (id: string, count: number, label: string) => {
    const i = indexOf(id)
    const before = core.statusOf(i)
    const hasRoom = room()
    // A delay armed under a setting since changed to 0 (a policy) no longer holds the compile back.
    const armed = core.forgetDueAt(i) !== undefined && core.configOf(i).forgetDelaySeconds > 0
    world.answer(i, core.forget(i, count))
    model.forget(id, count)
    const after = core.snapshot(i)
    if (before !== "idle") return ensure(after.status === before, `${label}: status`)
    if (model.parked.get(id) !== false || !hasRoom) return
    const reason = reasonNow(after)
    const atOnce = reason === "size" || reason === "staleness" ||
      (reason === "forget" && core.configOf(i).forgetDelaySeconds === 0 && !armed)
    if (atOnce) ensure(after.status === "pending", `${label}: queued before notifyForget returns`)
    else if (reason === undefined || armed) ensure(after.status === "idle", `${label}: idle (no rule, or its delay runs)`)
    if (reason === "forget" && after.status === "idle") {
      ensure(core.forgetDueAt(i) !== undefined, `${label}: the forget rule holds, so its delay runs`)
    }
  }

  /** `setPolicy` (with `fields`) or `clearPolicy` (without): re-checked at once; a disabled bank is not queued. */
  const changePolicy = (id: string, fields: PolicyFields | undefined, label: string) => {
    const i = indexOf(id)
    const hasRoom = room()
    const before = core.statusOf(i)
    const changes = fields !== undefined || core.policyOf(i) !== undefined
    world.answer(i, fields !== undefined ? core.setPolicy(i, new BankPolicy(fields), world.now) : core.clearPolicy(i, world.now))
    const enabled = core.configOf(i).enabled
    if (!enabled && before !== "idle") world.graced.add(i)
    const after = core.snapshot(i)
    if (changes && before === "idle" && hasRoom && dueAtOnce(after)) {
      ensure(after.status === "pending", `${label}: re-checked at once, queued before it returns`)
    }
    if (!enabled && before === "idle") ensure(after.status === "idle", `${label}: disabled: not queued`)
    // The re-check queues a parked bank too (as the docs say), and so unparks it.
    if (before === "idle" && after.status === "pending") model.parked.set(id, false)
  }

  const compileNow = (id: string, label: string) => {
    const i = indexOf(id)
    const before = core.statusOf(i)
    const hasRoom = room()
    world.answer(i, core.request(i))
    const after = core.statusOf(i)
    if (before !== "idle") ensure(after === before, `${label}: status`)
    else if (hasRoom) ensure(after === "pending", `${label}: queued regardless of thresholds`)
    if (after === "pending" && before === "idle") model.parked.set(id, false)
    else if (!model.parked.has(id)) model.parked.set(id, false)
  }

  const resolve = (outcome: Outcome, label: string) => {
    const run = world.runs.find((r) => !r.hung)
    if (run === undefined) return
    const id = world.idOf(run.i)
    const hasRoom = room()
    if (outcome === "hang") {
      run.hung = true
      if (scenario.compileTimeout !== undefined) world.advance(scenario.compileTimeout)
      return
    }
    world.runs.splice(world.runs.indexOf(run), 1)
    world.finish(run, outcome)
    world.settle()
    const after = stateOf(id)!
    if (outcome !== "fail") {
      if (after.memoriesSinceLastCompile > 0 && dueAtOnce(after) && hasRoom) {
        ensure(after.status !== "idle", `${label}: rest still triggers, so the bank is queued again`)
      }
    } else if (model.parked.get(id) === true) {
      ensure(after.status === "idle", `${label}: attempts spent, the bank is idle`)
    } else if (core.configOf(run.i).enabled) { // (a disabled one is skipped once its retry reaches a worker)
      ensure(after.status !== "idle", `${label}: a failed bank waits for its retry`)
    }
  }

  let recovering = false
  const drainHealthy = () => {
    world.healthy = true
    for (const run of world.runs) run.hung = false
    const retryJump = Math.max(1, scenario.baseDelay * 2 ** scenario.maxAttempts)
    for (let round = 0;; round++) {
      world.settle()
      if (core.pending.size === 0 && core.running.size === 0 && world.forgetTimers.length === 0) break
      if (round > (budget === undefined ? 50 : 2_000)) throw new Error(`drain did not finish: ${JSON.stringify(core.counts())}`)
      // only banks waiting for a retry delay, a forget delay or the budget are left
      const forgetJump = Math.max(0, ...world.forgetTimers.map((t) => t.at - world.now))
      world.advance(Math.max(retryJump, forgetJump, world.budgetJump()))
    }
    world.healthy = recovering
  }

  commands.forEach((command, n) => {
    const label = `step ${n} ${JSON.stringify(command)}`
    switch (command._tag) {
      case "notify":
        notify(idOf(command.bank), command.count, label)
        break
      case "compileNow":
        compileNow(idOf(command.bank), label)
        break
      case "advance":
        world.advance(command.millis)
        break
      case "resolve":
        resolve(command.outcome, label)
        break
      case "drain":
        drainHealthy()
        break
      case "forget":
        forget(idOf(command.bank), command.count, label)
        break
      case "setPolicy":
        changePolicy(idOf(command.bank), command.policy, label)
        break
      case "clearPolicy":
        changePolicy(idOf(command.bank), undefined, label)
        break
    }
    world.settle()
    check(label)
  })

  // Final: a healthy engine, then sweeps until nothing is left that the rule says needs a compile.
  recovering = true
  drainHealthy()
  const maxRounds = Math.ceil(scenario.banks / world.capacity) + 1
  for (let round = 1;; round++) {
    world.advance(scenario.sweepInterval - (world.now % scenario.sweepInterval))
    drainHealthy()
    check(`final round ${round}`)
    const leftover = core.table.ids.map((id) => stateOf(id)!).filter((s) =>
      dueNow(s) && !(s.lastCompileAt._tag === "Some" && DateTime.toEpochMillis(s.lastCompileAt.value) === world.now)
    )
    if (leftover.length === 0) break
    ensure(round < maxRounds, `due banks left uncompiled: ${JSON.stringify(leftover)}`)
  }
}

const numRuns = Number(process.env.SIM_RUNS ?? 20_000)
const seed = Number(process.env.SIM_SEED ?? 20261201)

describe("compile core — deterministic simulation", () => {
  it(`random command sequences keep the model test's invariants (${numRuns} runs, seed ${seed})`, () => {
    const started = performance.now()
    fc.assert(
      fc.property(
        scenarioArb,
        budgetArb,
        fc.array(commandArb, { minLength: 1, maxLength: 30 }),
        (scenario, budget, commands) => simulate(scenario, budget, commands)
      ),
      { numRuns, seed, endOnFailure: false }
    )
    const seconds = (performance.now() - started) / 1000
    console.log(`simulation: ${numRuns} cases in ${seconds.toFixed(2)} s = ${Math.round(numRuns / seconds)} cases/s`)
  }, 120_000)
})
