/**
 * A network namespace of a test's own, so that one process of a test can be cut off the network and joined again while
 * the rest stays on the host: the namespace is joined to the host by a veth pair on a /30 of 10.213.0.0/16 (the host's
 * end `.1`, the namespace's `.2`), and `cut` takes the host's end down (`ip link set … down`), `join` brings it up.
 * While cut, what the namespace sends is dropped silently (its end has lost its carrier), and the host answers its
 * own attempts to reach the namespace with "host unreachable" (a route of its own for the /30, behind the link's:
 * without it they would follow the default route, which some hosts answer for any address). The host's address
 * stays the host's while its link is down, so processes on the host keep reaching each other at it.
 * Also a process started inside (`ip netns exec`); `tcpRelay.ts` makes a server listening on loopback only (the test's
 * Postgres) reachable from inside. Linux and root only: `netnsUnavailable` says why it cannot be used.
 */
import { spawnSync } from "node:child_process"
import { freePort, type ServiceProcess, spawnService } from "./harness.js"

/** Runs `ip` with `args`; the result's `error` is set when `ip` itself could not be run. */
const ip = (args: ReadonlyArray<string>) => spawnSync("ip", args, { encoding: "utf8", timeout: 10_000 })

/** `ip` with `args`, throwing with its message when it fails. */
const ipOrThrow = (args: ReadonlyArray<string>) => {
  const result = ip(args)
  if (result.error !== undefined) throw result.error
  if (result.status !== 0) throw new Error(`ip ${args.join(" ")} failed: ${result.stderr.trim()}`)
  return result.stdout
}

/** Why a namespace cannot be made here (not Linux, not root, no `ip`, `ip netns add` refused), or undefined. */
export const netnsUnavailable = (): string | undefined => {
  if (process.platform !== "linux") return "network namespaces are Linux only"
  if (process.getuid?.() !== 0) return "creating a network namespace needs root"
  const probe = `ect-probe-${process.pid}`
  const added = ip(["netns", "add", probe])
  if (added.error !== undefined) return `\`ip\` (iproute2) cannot be run: ${added.error.message}`
  if (added.status !== 0) return `\`ip netns add\` failed: ${added.stderr.trim()}`
  ip(["netns", "del", probe])
  return undefined
}

export interface Namespace {
  readonly name: string
  /** The host's end of the veth pair, the link `cut` takes down. */
  readonly hostLink: string
  /** The address of the host's end: what a process inside reaches the host at. */
  readonly hostAddress: string
  /** The address inside the namespace. */
  readonly innerAddress: string
  /** Takes the host's end of the link down: nothing passes either way until `join`. */
  readonly cut: () => void
  readonly join: () => void
  /** Deletes the link and the namespace; idempotent, and never throws. */
  readonly remove: () => void
}

/** The namespaces this process made and has not removed yet: removed at its exit if a test could not. */
const live = new Set<Namespace>()
let exitHook = false
let made = 0

/** A /30 of 10.213.0.0/16 that no interface of the host uses. */
const freeSubnet = (): number => {
  const used = ipOrThrow(["-o", "-4", "addr", "show"])
  for (let i = 0; i < 254; i++) {
    const n = ((process.pid + made + i) % 254) + 1
    if (!used.includes(`10.213.${n}.`)) return n
  }
  throw new Error("no free /30 in 10.213.0.0/16")
}

/** A namespace joined to the host by a veth pair, with names unique to this process and call (links ≤ 15 chars). */
export const createNamespace = (): Namespace => {
  made += 1
  const id = `${process.pid % 1_000_000}x${made}`
  const name = `ect-${id}`
  const hostLink = `ecth${id}`
  const innerLink = `ectn${id}`
  const subnet = freeSubnet()
  const hostAddress = `10.213.${subnet}.1`
  const innerAddress = `10.213.${subnet}.2`
  const unreachable = ["unreachable", `10.213.${subnet}.0/30`, "metric", "4242"]
  const remove = () => {
    ip(["route", "del", ...unreachable])
    ip(["link", "del", hostLink])
    ip(["netns", "del", name])
    live.delete(namespace)
  }
  const namespace: Namespace = {
    name,
    hostLink,
    hostAddress,
    innerAddress,
    cut: () => void ipOrThrow(["link", "set", hostLink, "down"]),
    join: () => void ipOrThrow(["link", "set", hostLink, "up"]),
    remove
  }
  live.add(namespace)
  if (!exitHook) {
    exitHook = true
    process.once("exit", () => [...live].forEach((left) => left.remove()))
  }
  try {
    ipOrThrow(["netns", "add", name])
    ipOrThrow(["link", "add", hostLink, "type", "veth", "peer", "name", innerLink])
    ipOrThrow(["link", "set", innerLink, "netns", name])
    ipOrThrow(["addr", "add", `${hostAddress}/30`, "dev", hostLink])
    ipOrThrow(["link", "set", hostLink, "up"])
    ipOrThrow(["route", "add", ...unreachable])
    ipOrThrow(["-n", name, "addr", "add", `${innerAddress}/30`, "dev", innerLink])
    ipOrThrow(["-n", name, "link", "set", innerLink, "up"])
    ipOrThrow(["-n", name, "link", "set", "lo", "up"])
  } catch (error) {
    remove()
    throw error
  }
  return namespace
}

/**
 * The service started inside `namespace` (`ip netns exec`, which execs the command: the pid and the process group are
 * the command's, so `stop` and a group signal reach it), its HTTP server on the namespace's address; resolves once
 * `/readyz` answers 200 there.
 */
export const startInNamespace = async (
  namespace: Namespace,
  env: Record<string, string>,
  timeoutMs: number,
  command: readonly [string, ...Array<string>]
): Promise<ServiceProcess> => {
  const port = env.PORT ?? String(await freePort())
  const service = await spawnService(
    { ...env, HOST: namespace.innerAddress, PORT: port },
    { command: ["ip", "netns", "exec", namespace.name, ...command], detached: true }
  )
  const started = { ...service, base: `http://${namespace.innerAddress}:${port}` }
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (service.child.exitCode !== null) {
      throw new Error(`the service exited with ${service.child.exitCode}:\n${service.output()}`)
    }
    const ready = await fetch(`${started.base}/readyz`, { signal: AbortSignal.timeout(2000) })
      .then((response) => response.status === 200, () => false)
    if (ready) return started
    if (Date.now() > deadline) {
      await service.stop(1000)
      throw new Error(`the service was not ready within ${timeoutMs} ms:\n${service.output()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
