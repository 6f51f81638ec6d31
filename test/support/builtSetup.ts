/**
 * The global setup of a tier that runs the built package but needs no Postgres (the fuzz): dist/ up to date.
 */
import { ensureBuilt } from "./build.js"

export default function setup() {
  ensureBuilt()
}
