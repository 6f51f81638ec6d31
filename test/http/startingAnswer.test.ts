/**
 * What the bound port answers while the service starts (before the API serves): `/healthz` alive, everything else
 * `503 NotReady` "starting"; once the API's handler is attached, the API answers and the starting answer is silent.
 */
import { describe, expect, it } from "@effect/vitest"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { answerWhileStarting } from "../../src/internal/http/startingAnswer.js"

describe("the port while starting", () => {
  it("answers healthz, 503 starting for the rest; then gives way to the API", async () => {
    const server = createServer()
    const detach = answerWhileStarting(server)
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    try {
      const healthz = await fetch(`${base}/healthz`)
      expect(healthz.status).toBe(200)
      expect(await healthz.json()).toEqual({ status: "ok" })
      const readyz = await fetch(`${base}/readyz`)
      expect(readyz.status).toBe(503)
      expect(readyz.headers.get("retry-after")).toBe("1")
      expect(await readyz.json()).toEqual({ _tag: "NotReady", state: "starting", message: "the service is starting" })
      const retain = await fetch(`${base}/v1/banks/a/retain`, { method: "POST", body: "{}" })
      expect(retain.status).toBe(503)
      // The API's handler attached (as the platform attaches it): it alone answers, before and after the detach.
      server.on("request", (_request, response) => response.end("api"))
      expect(await (await fetch(`${base}/readyz`)).text()).toBe("api")
      detach()
      expect(await (await fetch(`${base}/healthz`)).text()).toBe("api")
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
