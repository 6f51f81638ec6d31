/**
 * End-to-end: the service process's fencing tokens, against a compile endpoint and a cancel URL in this process. Each
 * call carries the token (body and `compile-fencing-token` header); a compile cut off by shutdown is told to
 * `COMPILE_WEBHOOK_CANCEL_URL` before the process exits; after a restart on the same SQLite store the tokens are higher
 * (the owner generation counted up), and a 409 is logged as a stale refusal naming the token.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { FencingToken } from "../../src/index.js"
import { type FencingReceiver, startFencingReceiver } from "../support/fencingReceiver.js"
import { eventually, startService } from "../support/harness.js"

let receiver: FencingReceiver
let dataDir: string

beforeAll(async () => {
  receiver = await startFencingReceiver()
  dataDir = mkdtempSync(join(tmpdir(), "ect-fencing-"))
})

afterAll(async () => {
  await receiver?.close()
  rmSync(dataDir, { recursive: true, force: true })
})

const start = () =>
  startService({
    DATA_DIR: dataDir,
    COMPILE_WEBHOOK_URL: `${receiver.base}/compile`,
    COMPILE_WEBHOOK_CANCEL_URL: `${receiver.base}/cancel`,
    COMPILE_SIZE_THRESHOLD: "1",
    COMPILE_SHUTDOWN_TIMEOUT: "300 millis",
    COMPILE_FLUSH_INTERVAL: "100 millis"
  })

const retain = async (base: string, bankId: string) => {
  const response = await fetch(`${base}/v1/banks/${bankId}/retain`, { method: "POST" })
  expect(response.status).toBe(202)
}

const tokenOf = (call: { readonly body: { readonly fencingToken: FencingToken.FencingToken } }) => call.body.fencingToken

describe("fencing tokens through the service", () => {
  it("carried by every call; a compile cut off by shutdown is cancelled; higher after a restart; 409 logged", async () => {
    // Compiles of banks named hang-* never answer; refused-* are refused as stale; cancel calls are answered at once.
    receiver.answer = (call) =>
      call.path === "/compile" && call.body.bankId.startsWith("hang-")
        ? "hang"
        : call.path === "/compile" && call.body.bankId.startsWith("refused-")
        ? { status: 409, body: "a newer compile wrote first" }
        : { status: 200 }

    const first = await start()
    await retain(first.base, "plain-1")
    const plain = await receiver.waitFor("/compile", "plain-1")
    expect(plain.headers["compile-fencing-token"]).toBe(FencingToken.format(tokenOf(plain)))
    expect(tokenOf(plain).epoch).toBe(1) // the first open of a new SQLite store

    await retain(first.base, "hang-1")
    const hung = await receiver.waitFor("/compile", "hang-1")
    const exit = await first.stop()
    expect(exit.code).toBe(0)
    // Told before the process exited: closing the engine waited for the cancel call.
    const cancel = receiver.calls.find((call) => call.path === "/cancel" && call.body.bankId === "hang-1")
    expect(cancel?.answered).toBe(true)
    expect(tokenOf(cancel!)).toEqual(tokenOf(hung))
    expect(cancel!.headers["compile-fencing-token"]).toBe(FencingToken.format(tokenOf(hung)))

    // After the restart the cut-off bank is compiled again ("restored"), under a higher token.
    receiver.answer = (call) => call.path === "/compile" && call.body.bankId.startsWith("refused-")
      ? { status: 409, body: "a newer compile wrote first" }
      : { status: 200 }
    const second = await start()
    try {
      const again = await eventually(
        async () => receiver.calls.filter((call) => call.path === "/compile" && call.body.bankId === "hang-1"),
        (calls) => calls.length >= 2
      )
      expect(JSON.parse(again[1]!.rawBody)).toMatchObject({ reason: "restored" })
      expect(tokenOf(again[1]!).epoch).toBe(2)
      expect(FencingToken.isNewer(tokenOf(again[1]!), tokenOf(again[0]!))).toBe(true)

      await retain(second.base, "refused-1")
      const refused = await receiver.waitFor("/compile", "refused-1")
      const line = `webhook refused the compile as stale (fencing token ${FencingToken.format(tokenOf(refused))}): ` +
        "a newer compile wrote first"
      await eventually(async () => second.output(), (output) => output.includes(line))
    } finally {
      await second.stop()
    }
  })
})
