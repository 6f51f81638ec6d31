/**
 * Test support: one service process and its webhook receiver shared by a test file — started before its tests,
 * stopped after them, and that stop must exit 0.
 */
import { afterAll, beforeAll, expect } from "@effect/vitest"
import {
  type ServiceProcess,
  startService,
  startWebhook,
  type WebhookBehaviour,
  type WebhookReceiver
} from "./harness.js"

/** `env` gets COMPILE_WEBHOOK_URL (the receiver's) added; `started` hands both to the file once they run. */
export const shareServiceWithWebhook = (
  env: Record<string, string>,
  behaviour: WebhookBehaviour | undefined,
  started: (service: ServiceProcess, webhook: WebhookReceiver) => void
): void => {
  let service: ServiceProcess | undefined
  let webhook: WebhookReceiver | undefined
  beforeAll(async () => {
    webhook = await startWebhook(behaviour)
    service = await startService({ COMPILE_WEBHOOK_URL: webhook.url, ...env })
    started(service, webhook)
  }, 30_000)
  afterAll(async () => {
    const exit = await service?.stop()
    await webhook?.close()
    expect(exit?.code).toBe(0)
  }, 20_000)
}
