#!/usr/bin/env node
/**
 * The `effect-compile-trigger` command (`npx effect-compile-trigger`, and `npm start`): checks that the service's
 * optional peers are installed — one line naming the missing ones and the `npm i` that installs them, exit 1 —
 * then runs the service (`main.ts`). `effect-compile-trigger tune …` runs the threshold tuner instead, which is
 * imported only then (the service's startup loads none of it). The service itself is configured by environment
 * variables only: `--help` prints where they are documented, and any other argument is refused rather than ignored
 * (a service started by mistake would open the store in the current directory).
 *
 * @internal
 */
import { missingPeers, missingPeersMessage, SERVICE_PEERS, TUNER_PEERS } from "./internal/service/optionalPeers.js"

const SERVICE_USAGE = `usage: effect-compile-trigger          run the service (configured by environment variables)
       effect-compile-trigger tune …   the threshold tuner (effect-compile-trigger tune --help)

The service's settings (PORT, DATA_DIR, DATABASE_URL, API_TOKEN, COMPILE_WEBHOOK_URL, …) are environment
variables, listed in the package's README.md ("Service") and in docs/service.md ("Configuration").
`

const argument = process.argv[2]
if (argument === "--help" || argument === "-h" || argument === "help") {
  process.stdout.write(SERVICE_USAGE)
} else if (argument !== undefined && argument !== "tune") {
  process.stderr.write(`effect-compile-trigger: unknown argument ${JSON.stringify(argument)}\n${SERVICE_USAGE}`)
  process.exitCode = 2
} else if (argument === "tune") {
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
