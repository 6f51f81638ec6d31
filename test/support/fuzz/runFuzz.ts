/**
 * The HTTP fuzz run, shared by test/e2e/fuzz.test.ts (in `npm test`) and bench/fuzz.ts (`npm run fuzz`, larger).
 * Against the real service process on loopback, in waves of concurrent requests (keep-alive agent).
 *
 * Every route that takes a body is fuzzed: retain, forget, the batch and the policy (the others take none; compiles
 * are sent only unauthenticated, reads only read). After every request: the answer is a 2xx or a 4xx with a JSON
 * body; it is a 2xx exactly when the oracle says the request is valid (test/support/fuzz/requests.ts), a request
 * without a valid token is a 401 whatever else is wrong with it, a 4xx carries a documented `_tag` and a one-line
 * `message`, and a 2xx batch answer reports the counts sent. After every wave (all its requests answered): every
 * bank's state equals the model built from the accepted requests alone (retains, forgets, policy, idle, no error, no
 * compile), no other bank exists, the queue is empty, `compile_trigger_retains_total` is the sum of the accepted
 * retains, `/healthz` answers and the process is alive. Counters only grow and policies are compared whole, so any 4xx
 * that changed anything — a count, a policy, a new bank, a queue entry — breaks the wave's comparison: the "nothing
 * changed" check is exact, only batched. At the end the service's log holds no ERROR line (a client's input is logged
 * at debug level at most).
 */
import { FastCheck as fc } from "effect"
import parsePrometheusTextFormat from "parse-prometheus-text-format"
import { type ServiceProcess, startService } from "../harness.js"
import { bankPool, type FuzzRequest, fuzzRequests, type PolicyJson, policyJson, TOKEN } from "./requests.js"
import { ANSWER_TIMEOUT_MILLIS, type Answer, makeAgent, send } from "./send.js"

export interface FuzzOptions {
  readonly requests: number
  readonly seed: number
  readonly concurrency: number
  /** Requests per wave (the model is compared after each). */
  readonly wave: number
  /** Called after each wave's checks with the requests done so far (progress for long runs). */
  readonly onWave?: ((done: number, failures: number) => void) | undefined
  /**
   * The run stops sending once this long has passed since it started, and fails naming the requests still unanswered
   * (so that a run that would outlive its test's timeout still reports). None by default.
   */
  readonly deadlineMs?: number | undefined
}

export interface FuzzReport {
  readonly seed: number
  readonly requests: number
  readonly seconds: number
  readonly accepted: number
  readonly retains: number
  readonly banks: number
  readonly byKind: Record<string, number>
  readonly byStatus: Record<string, number>
  /** Requests that got no answer (cut off by the client on purpose, or a transport error where one is allowed). */
  readonly unanswered: number
  /** The slowest requests, slowest first: how long each took, and what it was. */
  readonly slowest: ReadonlyArray<string>
  readonly failures: ReadonlyArray<string>
}

/** The service under fuzz: auth on, and thresholds no count reaches, so no compile ever changes a bank. */
export const fuzzServiceEnv: Record<string, string> = {
  API_TOKEN: TOKEN,
  COMPILE_SIZE_THRESHOLD: String(Number.MAX_SAFE_INTEGER),
  COMPILE_STALENESS_DAYS: "3650",
  COMPILE_FORGET_THRESHOLD: String(Number.MAX_SAFE_INTEGER),
  LOG_LEVEL: "warn"
}

const auth = { authorization: `Bearer ${TOKEN}` }

interface BankView {
  readonly bankId: string
  readonly memoriesSinceLastCompile: number
  readonly forgetsSinceLastCompile: number
  readonly policy: PolicyJson | null
  readonly lastCompileAt: string | null
  readonly status: string
  readonly consecutiveFailures: number
  readonly lastError: string | null
}

const describeRequest = (fuzz: FuzzRequest): string => {
  const body = fuzz.body.length > 300 ? `${fuzz.body.subarray(0, 300).toString("utf8")}… (${fuzz.body.length} bytes)` : fuzz.body.toString("utf8")
  return `${fuzz.kind} ${fuzz.transport} ${fuzz.method} ${fuzz.path.slice(0, 200)} ${JSON.stringify(fuzz.headers).slice(0, 200)} ${JSON.stringify(body)}`
}

/** What a bank is in the model: its accepted retains and forgets, and its policy. */
interface BankModel {
  memories: number
  forgets: number
  policy: PolicyJson | null
  /** The policies accepted for it in the current wave: concurrent PUTs may land in any order. */
  candidates: Array<PolicyJson>
}

/** Every `_tag` docs/service.md lists for an error answer to a request. */
const ERROR_TAGS = new Set([
  "HttpApiDecodeError", "MalformedRequest", "Unauthorized", "RouteNotFound", "PayloadTooLarge", "BankNotFound",
  "PolicyNotFound"
])

/** A 4xx's body: a documented `_tag` and one short line of `message` (the service's own answers; not Node's parser's). */
const checkRefusal = (status: number, body: unknown): string | undefined => {
  const { _tag, message } = body as { _tag?: unknown; message?: unknown }
  if (typeof _tag !== "string" || !ERROR_TAGS.has(_tag)) return `status ${status} with an undocumented _tag ${String(_tag)}`
  if (typeof message !== "string" || message.includes("\n") || message.length > 600 || /Expected undefined/.test(message)) {
    return `status ${status} with a message that is not one short line: ${JSON.stringify(String(message).slice(0, 300))}`
  }
  return undefined
}

/** The per-request invariants; a string says what broke. */
const checkAnswer = (fuzz: FuzzRequest, answer: Answer): string | undefined => {
  const { status } = answer
  if (!((status >= 200 && status < 300) || (status >= 400 && status < 500))) return `status ${status}`
  // The dashboard's page (docs/service.md, "Dashboard") is HTML, served to anyone.
  if (fuzz.method === "GET" && fuzz.path === "/") {
    return status === 200 && (answer.contentType ?? "").startsWith("text/html") ? undefined : `GET / answered ${status}`
  }
  if (!(answer.contentType ?? "").startsWith("application/json")) return `status ${status} with content-type ${answer.contentType}`
  let body: unknown
  try {
    body = JSON.parse(answer.body)
  } catch {
    return `status ${status} with a body that is not JSON: ${JSON.stringify(answer.body.slice(0, 100))}`
  }
  const ok = status < 300
  const refusal = ok ? undefined : checkRefusal(status, body)
  if (refusal !== undefined) return refusal
  switch (fuzz.expect._tag) {
    case "read":
      return undefined
    case "reject":
    case "noAnswer":
      if (ok) return `accepted (${status}) a request the oracle rejects: ${answer.body.slice(0, 200)}`
      return fuzz.expect._tag === "reject" && fuzz.expect.status !== undefined && status !== fuzz.expect.status
        ? `answered ${status}, not ${fuzz.expect.status}: ${answer.body.slice(0, 200)}`
        : undefined
    case "accept": {
      if (!ok) return `rejected (${status}) a valid request: ${answer.body.slice(0, 300)}`
      if (fuzz.expect.policy !== undefined) {
        const { effective, policy } = body as { policy?: unknown; effective?: unknown }
        return typeof policy === "object" && policy !== null && typeof effective === "object" && effective !== null
          ? undefined
          : `policy answer ${answer.body.slice(0, 200)}`
      }
      if (fuzz.path.startsWith("/v1/retains")) {
        const { accepted, retains } = body as { accepted?: unknown; retains?: unknown }
        const sum = fuzz.expect.counts.reduce((total, [, count]) => total + count, 0)
        if (accepted !== fuzz.expect.counts.length || retains !== sum) {
          return `batch answer ${answer.body} for ${fuzz.expect.counts.length} items / ${sum} retains`
        }
      } else {
        const bankId = [...fuzz.expect.counts, ...(fuzz.expect.forgets ?? [])][0]![0]
        if ((body as { bankId?: unknown }).bankId !== bankId) {
          return `answered ${answer.body.slice(0, 200)} for bank ${JSON.stringify(bankId)}`
        }
      }
      return undefined
    }
  }
}

/**
 * GETs `url` for a wave's checks: its status and body, both within a request's deadline (a read that hangs fails the
 * run, naming the read, rather than timing out).
 */
const read = async (url: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> => {
  try {
    const response = await fetch(url, { headers, signal: AbortSignal.timeout(ANSWER_TIMEOUT_MILLIS) })
    return { status: response.status, text: await response.text() }
  } catch (error) {
    throw new Error(`GET ${url}: ${String(error)}`)
  }
}

const getJson = async (base: string, path: string): Promise<unknown> => {
  const response = await read(`${base}${path}`, auth)
  if (response.status !== 200) throw new Error(`GET ${path}: ${response.status} ${response.text}`)
  return JSON.parse(response.text)
}

const allBanks = async (base: string): Promise<Array<BankView>> => {
  const banks: Array<BankView> = []
  let cursor: string | null = null
  do {
    const page = await getJson(base, `/v1/banks?limit=1000${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`) as {
      banks: Array<BankView>
      nextCursor: string | null
    }
    banks.push(...page.banks)
    cursor = page.nextCursor
  } while (cursor !== null)
  return banks
}

const same = (a: PolicyJson | null, b: PolicyJson | null): boolean =>
  JSON.stringify(a === null ? null : policyJson(a)) === JSON.stringify(b)

/** One bank against its model; a policy PUT in this wave settles the model to whichever of its candidates landed. */
const checkBank = (bank: BankView, expected: BankModel | undefined): Array<string> => {
  const name = JSON.stringify(bank.bankId)
  if (expected === undefined) return [`bank ${name} exists but no request for it was accepted`]
  const problems: Array<string> = []
  if (bank.memoriesSinceLastCompile !== expected.memories || bank.forgetsSinceLastCompile !== expected.forgets) {
    problems.push(
      `bank ${name} counted ${bank.memoriesSinceLastCompile} retains and ${bank.forgetsSinceLastCompile} forgets, ` +
        `accepted ${expected.memories} and ${expected.forgets}`
    )
  }
  const landed = expected.candidates.find((candidate) => same(bank.policy, candidate))
  if (landed !== undefined) expected.policy = landed
  else if (!same(bank.policy, expected.policy)) {
    problems.push(`bank ${name} has policy ${JSON.stringify(bank.policy)}, accepted ${JSON.stringify(expected.policy)}`)
  }
  expected.candidates = []
  if (bank.status !== "idle" || bank.lastCompileAt !== null || bank.consecutiveFailures !== 0 || bank.lastError !== null) {
    problems.push(`bank ${name} changed state: ${JSON.stringify(bank)}`)
  }
  return problems
}

/** The wave invariants: the service's whole state against the model. */
const checkState = async (service: ServiceProcess, model: Map<string, BankModel>): Promise<Array<string>> => {
  const problems: Array<string> = []
  if (service.child.exitCode !== null || service.child.signalCode !== null) return ["the service process died"]
  const health = await read(`${service.base}/healthz`)
  if (health.status !== 200) problems.push(`/healthz answered ${health.status}`)
  const banks = await allBanks(service.base)
  const seen = new Set<string>()
  for (const bank of banks) {
    seen.add(bank.bankId)
    problems.push(...checkBank(bank, model.get(bank.bankId)))
  }
  for (const bankId of model.keys()) if (!seen.has(bankId)) problems.push(`accepted bank ${JSON.stringify(bankId)} is missing`)
  const queue = await getJson(service.base, "/v1/queue") as { pending: number; running: number; size: number; banks: number }
  if (queue.pending !== 0 || queue.running !== 0 || queue.size !== 0 || queue.banks !== model.size) {
    problems.push(`queue ${JSON.stringify(queue)} with ${model.size} banks accepted`)
  }
  const families = parsePrometheusTextFormat((await read(`${service.base}/metrics`)).text)
  const total = Number(families.find((family) => family.name === "compile_trigger_retains_total")?.metrics[0]?.value)
  const sum = retainsOf(model)
  if (total !== sum) problems.push(`compile_trigger_retains_total is ${total}, accepted retains sum to ${sum}`)
  return problems
}

const retainsOf = (model: Map<string, BankModel>): number =>
  [...model.values()].reduce((total, bank) => total + bank.memories, 0)

/** Adds an accepted request to the model. */
const record = (model: Map<string, BankModel>, expect: FuzzRequest["expect"] & { readonly _tag: "accept" }): void => {
  const bankOf = (bankId: string): BankModel => {
    const known = model.get(bankId)
    if (known !== undefined) return known
    const fresh: BankModel = { memories: 0, forgets: 0, policy: null, candidates: [] }
    model.set(bankId, fresh)
    return fresh
  }
  for (const [bankId, count] of expect.counts) bankOf(bankId).memories += count
  for (const [bankId, count] of expect.forgets ?? []) bankOf(bankId).forgets += count
  if (expect.policy !== undefined) bankOf(expect.policy.bankId).candidates.push(expect.policy.value)
}

const MAX_FAILURES = 20

/** Runs the fuzz against `service` (started by the caller with `fuzzServiceEnv`). */
export const fuzzService = async (service: ServiceProcess, options: FuzzOptions): Promise<FuzzReport> => {
  const started = Date.now()
  const base = new URL(service.base)
  const agent = makeAgent(options.concurrency)
  const pool = bankPool(options.seed)
  const arbitrary = fuzzRequests(pool)
  const model = new Map<string, BankModel>()
  const byKind: Record<string, number> = {}
  const byStatus: Record<string, number> = {}
  const failures: Array<string> = []
  let done = 0
  let accepted = 0
  let unanswered = 0
  const fail = (problem: string) => {
    if (failures.length < MAX_FAILURES) failures.push(problem)
  }
  const slow = new SlowRequests()
  const deadline = options.deadlineMs === undefined ? undefined : started + options.deadlineMs
  try {
    for (let wave = 0; done < options.requests && failures.length === 0; wave++) {
      const size = Math.min(options.wave, options.requests - done)
      const requests = fc.sample(arbitrary, { seed: options.seed + wave, numRuns: size })
      let next = 0
      const worker = async () => {
        while (next < requests.length && failures.length === 0) {
          const fuzz = requests[next++]!
          byKind[fuzz.kind] = (byKind[fuzz.kind] ?? 0) + 1
          const outcome = await slow.time(fuzz, () => send(base, agent, fuzz))
          if (outcome._tag === "none") {
            unanswered++
            byStatus.none = (byStatus.none ?? 0) + 1
            // Only a request cut off on purpose, one over the size limit (the server may answer 413 and close
            // while the body is still being sent), or malformed HTTP the server reset may go without an answer.
            const excused = fuzz.expect._tag === "noAnswer" || fuzz.body.length > 1024 * 1024 ||
              (fuzz.transport === "raw" && outcome.reason === "reset by the server")
            if (!excused) {
              fail(`no answer (${outcome.reason}) to ${describeRequest(fuzz)}`)
            }
            continue
          }
          byStatus[outcome.answer.status] = (byStatus[outcome.answer.status] ?? 0) + 1
          const problem = checkAnswer(fuzz, outcome.answer)
          if (problem !== undefined) fail(`${problem} — wave ${wave} (seed ${options.seed + wave}): ${describeRequest(fuzz)}`)
          if (fuzz.expect._tag === "accept" && outcome.answer.status < 300) {
            accepted++
            record(model, fuzz.expect)
          }
        }
      }
      const all = Promise.all(Array.from({ length: options.concurrency }, worker))
      if (!(await beforeDeadline(all, deadline))) {
        fail(`the run passed its deadline of ${options.deadlineMs} ms in wave ${wave} (seed ${options.seed + wave}); unanswered: ${
          slow.inFlight().join("; ")
        }`)
        break
      }
      done += Math.min(next, size)
      // A check that throws (a read past its deadline) is a failure like the others: the report still comes out.
      const problems = await checkState(service, model).catch((error: unknown) => [`the checks failed: ${String(error)}`])
      for (const problem of problems) fail(`after wave ${wave} (seed ${options.seed + wave}): ${problem}`)
      options.onWave?.(done, failures.length)
    }
  } finally {
    agent.destroy()
  }
  return {
    seed: options.seed,
    requests: done,
    seconds: (Date.now() - started) / 1000,
    accepted,
    retains: retainsOf(model),
    banks: model.size,
    byKind,
    byStatus,
    unanswered,
    slowest: slow.slowest(),
    failures
  }
}

/** Resolves true once `work` ends, or false once `deadline` (ms since the epoch) passes first. */
const beforeDeadline = async (work: Promise<unknown>, deadline: number | undefined): Promise<boolean> => {
  if (deadline === undefined) return work.then(() => true)
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()))))
  return Promise.race([work.then(() => true), late]).finally(() => clearTimeout(timer))
}

/** The requests under way (what a run past its deadline waits for) and the slowest ones answered. */
class SlowRequests {
  private readonly pending = new Map<FuzzRequest, number>()
  private readonly done: Array<{ readonly ms: number; readonly what: string }> = []

  async time<A>(fuzz: FuzzRequest, send: () => Promise<A>): Promise<A> {
    const at = Date.now()
    this.pending.set(fuzz, at)
    try {
      return await send()
    } finally {
      this.pending.delete(fuzz)
      const ms = Date.now() - at
      if (this.done.length < 5 || ms > this.done[this.done.length - 1]!.ms) {
        this.done.push({ ms, what: describeRequest(fuzz).slice(0, 200) })
        this.done.sort((a, b) => b.ms - a.ms)
        this.done.length = Math.min(this.done.length, 5)
      }
    }
  }

  inFlight(): Array<string> {
    const now = Date.now()
    return Array.from(this.pending, ([fuzz, at]) => `${now - at} ms: ${describeRequest(fuzz).slice(0, 200)}`)
  }

  slowest(): Array<string> {
    return this.done.map(({ ms, what }) => `${ms} ms: ${what}`)
  }
}

/** Starts the service, fuzzes it, checks its log holds no defect, stops it. */
export const runFuzz = async (options: FuzzOptions): Promise<FuzzReport> => {
  const service = await startService(fuzzServiceEnv, 120_000)
  try {
    const report = await fuzzService(service, options)
    const log = service.output().split("\n").filter((line) => line !== "")
    const defects = log.filter((line) => /failed unexpectedly|ERROR/.test(line))
    const failures = [...report.failures, ...defects.slice(0, 5)]
    // A failed run carries the end of the service's log (warnings and up).
    return failures.length === 0
      ? report
      : { ...report, failures: [...failures, `the service's log ends: ${log.slice(-20).join("\n      ")}`] }
  } finally {
    await service.stop()
  }
}

export const formatReport = (report: FuzzReport): string =>
  [
    `fuzz: ${report.requests} requests in ${report.seconds.toFixed(1)} s (seed ${report.seed}): ${report.accepted} accepted ` +
    `(${report.retains} retains over ${report.banks} banks), ${report.unanswered} unanswered by design`,
    `  kinds: ${JSON.stringify(report.byKind)}`,
    `  statuses: ${JSON.stringify(report.byStatus)}`,
    ...report.slowest.length === 0 ? [] : [`  slowest: ${report.slowest.join("\n           ")}`],
    report.failures.length === 0 ? "  no invariant broken" : `  FAILURES:\n    ${report.failures.join("\n    ")}`
  ].join("\n")
