#!/usr/bin/env node
/**
 * The `effect-compile-trigger` command (`npx effect-compile-trigger`, and `npm start`): checks that the service's
 * optional peers are installed — one line naming the missing ones and the `npm i` that installs them, exit 1 —
 * then runs the service (`main.ts`). `effect-compile-trigger tune …` runs the threshold tuner instead, which is
 * imported only then (the service's startup loads none of it).
 *
 * @internal
 */
import { missingPeers, missingPeersMessage, SERVICE_PEERS, TUNER_PEERS } from "./internal/service/optionalPeers.js"

if (process.argv[2] === "tune") {
  const missing = missingPeers(TUNER_PEERS)
  if (missing.length > 0) {
    process.stderr.write(`effect-compile-trigger: ${missingPeersMessage("tune", missing)}\n`)
    process.exitCode = 1
  } else {
    const tuner = await import("./internal/tuner/cli.js")
    tuner.main(process.argv)
  }
} else {
  const missing = missingPeers(SERVICE_PEERS)
  if (missing.length > 0) {
    process.stderr.write(`effect-compile-trigger: ${missingPeersMessage("the service", missing)}\n`)
    process.exitCode = 1
  } else {
    await import("./main.js")
  }
}
