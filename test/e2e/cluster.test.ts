/**
 * Cluster mode end to end: three runners started as docs/cluster.md says (`npm start` with DATABASE_URL and
 * CLUSTER_RUNNER_ADDRESS, each in its own process group) on a fresh database of the throwaway Postgres, retains for
 * 2,000 banks through all three HTTP ports, a webhook receiver that records every call's start and end; then one
 * runner is killed (SIGKILL) or stopped (SIGTERM) while compiles are in flight. Live clock, loopback only.
 */
import { afterEach, describe, expect, inject, it } from "vitest"
import {
  allBanks,
  answersForEveryBank,
  type BankJson,
  bankId,
  type Call,
  freshDatabase,
  getJson,
  handovers,
  movesLogged,
  noOverlaps,
  ownerOf,
  partitionsRunningAt,
  post,
  ranOnTwoNodes,
  settled,
  startCluster,
  startReceiver,
  THRESHOLD
} from "../support/clusterKit.js"
import { eventually, type ServiceProcess } from "../support/harness.js"

const pgUrl = inject("pgUrl")
const BANKS = 2000
const FLUSH_MS = 1000
/** Long enough that the runner killed mid-compile is still compiling when the kill lands on a loaded machine. */
const COMPILE_MS = 800

/** One bank in eight gets THRESHOLD retains (it compiles), the rest one each. */
const retainsFor = (n: number) => (n % 8 === 0 ? THRESHOLD : 1)

/** Sends every bank's retains in batches of 100, round-robin over the nodes; resolves when all were answered 202. */
const sendRetains = async (nodes: ReadonlyArray<ServiceProcess>) => {
  const items: Array<{ bankId: string; count: number }> = []
  for (let n = 0; n < BANKS; n++) items.push({ bankId: bankId(n), count: retainsFor(n) })
  const batches: Array<Array<{ bankId: string; count: number }>> = []
  for (let i = 0; i < items.length; i += 100) batches.push(items.slice(i, i + 100))
  const statuses = await Promise.all(batches.map((batch, i) => post(nodes[i % nodes.length]!.base, "/v1/retains", batch)))
  expect(statuses.filter((status) => status !== 202)).toEqual([])
}

/** Every compiling bank has an answered compile, and its retains are all counted (consumed by compiles, or pending). */
const checkOutcome = (banks: Map<string, BankJson>, calls: ReadonlyArray<Call>) => {
  const consumed = new Map<string, number>()
  const answered = new Set<string>()
  for (const call of calls) {
    if (!call.answered) continue
    answered.add(call.bankId)
    consumed.set(call.bankId, (consumed.get(call.bankId) ?? 0) + call.memories)
  }
  const uncompiled: Array<string> = []
  const uncounted: Array<string> = []
  for (let n = 0; n < BANKS; n++) {
    const id = bankId(n)
    if (retainsFor(n) >= THRESHOLD && !answered.has(id)) uncompiled.push(id)
    const counted = (banks.get(id)?.memoriesSinceLastCompile ?? 0) + (consumed.get(id) ?? 0)
    if (counted < retainsFor(n)) uncounted.push(id)
  }
  return { uncompiled, uncounted }
}

describe.skipIf(pgUrl === "")("cluster mode: three runners over Postgres", () => {
  const cleanup: Array<() => Promise<unknown>> = []
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step()
  })

  it("SIGKILL: the dead runner's banks answer elsewhere within 10 s, compile again, nothing acknowledged is lost", async () => {
    const receiver = await startReceiver(COMPILE_MS)
    cleanup.push(receiver.close)
    const database = freshDatabase(pgUrl)
    const nodes = await startCluster(database, receiver.url)
    cleanup.push(() => Promise.all(nodes.map((node) => node.stop(5000))))
    await settled(database, nodes)
    // Said at start on every node: where the bank state is, without the URL's user; the queue size as configured.
    const where = `${new URL(database).host}${new URL(database).pathname}`
    for (const node of nodes) {
      expect(node.output()).toContain(`bank state: Postgres at ${where} (cluster mode`)
      expect(node.output()).not.toContain("postgres@")
    }
    // The configured size, and counts said to be the whole cluster's.
    expect(await getJson(nodes[0]!.base, "/v1/queue", 20_000)).toMatchObject({ capacity: 10_000, mode: "cluster" })

    await sendRetains(nodes)
    // Every retain was acknowledged more than one flush interval before the kill.
    await new Promise((resolve) => setTimeout(resolve, FLUSH_MS + 500))
    // The victim: the owner of a bank whose compile is running right now.
    const running = await eventually(
      async () => receiver.calls.find((call) => call.end === undefined && Date.now() - call.start < COMPILE_MS / 4),
      (call) => call !== undefined,
      10_000
    )
    const victimAddress = ownerOf(database, running!.bankId)
    const victim = nodes.find((node) => node.runnerAddress === victimAddress)!
    const survivors = nodes.filter((node) => node !== victim)
    const inFlight = receiver.calls.filter((call) => call.end === undefined).length
    process.kill(-victim.child.pid!, "SIGKILL")
    const killedAt = Date.now()
    await victim.exited

    const failover = await answersForEveryBank(survivors.map((node) => node.base), killedAt, 10_000)
    console.log(`after the kill: ${JSON.stringify(handovers(survivors, killedAt))}`)
    expect(failover.unanswered).toBe(0)
    expect(failover.ms).toBeLessThan(10_000)

    const banks = await eventually(
      () => allBanks(survivors[0]!.base),
      (banks) => banks.size === BANKS && Array.from(banks.values()).every((bank) => bank.status === "idle"),
      90_000
    )
    const cutOff = receiver.calls.filter((call) => !call.answered)
    expect(cutOff.length).toBeGreaterThan(0)
    for (const call of cutOff) {
      // A compile cut off by the kill ran again, after the kill, to the end.
      expect(receiver.calls.some((later) => later.bankId === call.bankId && later.answered && later.start >= killedAt))
        .toBe(true)
    }
    expect(noOverlaps(receiver.calls)).toEqual([])
    expect(ranOnTwoNodes(nodes, { node: victim, at: killedAt })).toEqual([])
    expect(checkOutcome(banks, receiver.calls)).toEqual({ uncompiled: [], uncounted: [] })
    // Each of the dead runner's partitions moved once, logged at INFO by the runner that took it over.
    const moved = survivors.flatMap(movesLogged).filter((move) => move.from === victimAddress && move.at >= killedAt)
    expect(moved.map((move) => move.partition).sort((a, b) => a - b)).toEqual(partitionsRunningAt(victim, killedAt))
    expect(moved.filter((move) => !move.why.startsWith(`${victimAddress} did not hand it over`))).toEqual([])
    console.log(
      `cluster SIGKILL: ${inFlight} compiles in flight at the kill, ${cutOff.length} cut off; ` +
        `every partition answered ${failover.ms} ms after the kill; ${receiver.calls.length} webhook calls`
    )
  }, 240_000)

  it("ACK_MODE=durable: a runner killed right after the last 202 loses nothing acknowledged", async () => {
    const receiver = await startReceiver(COMPILE_MS)
    cleanup.push(receiver.close)
    const database = freshDatabase(pgUrl)
    // Flushes on a timer never come: only the durable acknowledgements store anything.
    const nodes = await startCluster(database, receiver.url, { ACK_MODE: "durable", COMPILE_FLUSH_INTERVAL: "1 hour" })
    cleanup.push(() => Promise.all(nodes.map((node) => node.stop(5000))))
    await settled(database, nodes)

    await sendRetains(nodes)
    const [victim, ...survivors] = nodes
    process.kill(-victim!.child.pid!, "SIGKILL")
    const killedAt = Date.now()
    await victim!.exited
    const failover = await answersForEveryBank(survivors.map((node) => node.base), killedAt, 10_000)
    expect(failover.unanswered).toBe(0)
    const banks = await eventually(
      () => allBanks(survivors[0]!.base),
      (banks) => banks.size === BANKS && Array.from(banks.values()).every((bank) => bank.status === "idle"),
      90_000
    )
    expect(noOverlaps(receiver.calls)).toEqual([])
    expect(checkOutcome(banks, receiver.calls)).toEqual({ uncompiled: [], uncounted: [] })
    console.log(`cluster durable SIGKILL: every partition answered ${failover.ms} ms after the kill`)
  }, 240_000)

  it("SIGTERM: a graceful stop hands the runner's partitions over with nothing lost", async () => {
    const receiver = await startReceiver(COMPILE_MS)
    cleanup.push(receiver.close)
    const database = freshDatabase(pgUrl)
    // A runner-wide budget (its partitions share it) and the compile history, routed and fanned out.
    const nodes = await startCluster(database, receiver.url, { COMPILE_BUDGET_TOKENS: "1000000000" })
    cleanup.push(() => Promise.all(nodes.map((node) => node.stop(5000))))
    await settled(database, nodes)

    await sendRetains(nodes)
    const [leaving, ...staying] = nodes
    // At once after the last 202: some writes are not flushed yet, some compiles are running.
    const stoppedAt = Date.now()
    const leavingRan = partitionsRunningAt(leaving!, stoppedAt)
    const exit = await leaving!.stop(60_000)
    expect(exit.code).toBe(0)
    // The node's stop ends with one line over all its partitions (each partition's own stays at debug level).
    const stopLines = leaving!.output().split("\n").filter((line) => line.includes(`"message":"stopped: `))
    expect(stopLines, leaving!.output().slice(-3000)).toHaveLength(1)
    expect(stopLines[0]).toMatch(/stopped: \d+ banks? left pending.*, \d+ cut off, state flushed \(\d+ partitions? stopped here\)/)

    const banks = await eventually(
      () => allBanks(staying[0]!.base),
      (banks) => banks.size === BANKS && Array.from(banks.values()).every((bank) => bank.status === "idle"),
      90_000
    ).catch((error) => {
      for (const node of nodes) {
        const problems = node.output().split("\n").filter((line) =>
          /"logLevel":"(WARN|ERROR|FATAL)"/.test(line) && !line.includes("compile interrupted by shutdown") ||
          /partition \d+: |Shard lock|Could not|unhealthy/.test(line)
        )
        console.log(`${node.runnerAddress}:\n${problems.slice(-60).join("\n")}`)
      }
      throw error
    })
    expect(noOverlaps(receiver.calls)).toEqual([])
    expect(ranOnTwoNodes(nodes)).toEqual([])
    expect(checkOutcome(banks, receiver.calls)).toEqual({ uncompiled: [], uncounted: [] })
    // Each of its partitions moved once, logged at INFO by the runner that took it over, saying it stopped.
    const moved = staying.flatMap(movesLogged).filter((move) => move.from === leaving!.runnerAddress && move.at >= stoppedAt)
    expect(moved.map((move) => move.partition).sort((a, b) => a - b)).toEqual(leavingRan)
    expect(moved.filter((move) => move.why !== `${leaving!.runnerAddress} stopped`)).toEqual([])
    const budget = await getJson(staying[1]!.base, "/v1/budget") as { tokens: { capacity: number }; deferredCount: number }
    expect(budget.tokens.capacity).toBe(1_000_000_000)
    expect(budget.deferredCount).toBe(0)
    const history = await getJson(staying[1]!.base, "/v1/compiles?limit=1000", 10_000) as {
      compiles: ReadonlyArray<{ bankId: string; endedAt: string }>
    }
    expect(history.compiles.length).toBeGreaterThan(0)
    const times = history.compiles.map((record) => Date.parse(record.endedAt))
    expect(times).toEqual([...times].sort((a, b) => b - a)) // merged over the partitions, newest first
    const one = history.compiles[0]!.bankId
    const own = await getJson(staying[0]!.base, `/v1/compiles?bankId=${one}`) as { compiles: ReadonlyArray<{ bankId: string }> }
    expect(own.compiles.length).toBeGreaterThan(0)
    expect(own.compiles.every((record) => record.bankId === one)).toBe(true)
    console.log(`cluster SIGTERM: the runner stopped in ${exit.at - stoppedAt} ms; ${receiver.calls.length} webhook calls`)
  }, 240_000)
})
