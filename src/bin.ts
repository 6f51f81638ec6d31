#!/usr/bin/env node
/**
 * The `effect-compile-trigger` command (`npx effect-compile-trigger`, and `npm start`): checks that the service's
 * optional peers are installed — one line naming the missing ones and the `npm i` that installs them, exit 1 —
 * then runs the service (`main.ts`).
 *
 * @internal
 */
import { missingPeers, missingPeersMessage, SERVICE_PEERS } from "./internal/optionalPeers.js"

const missing = missingPeers(SERVICE_PEERS)
if (missing.length > 0) {
  process.stderr.write(`effect-compile-trigger: ${missingPeersMessage("the service", missing)}\n`)
  process.exitCode = 1
} else {
  await import("./main.js")
}
