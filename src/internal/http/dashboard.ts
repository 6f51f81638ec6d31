/**
 * Serves the dashboard: the static page under `/` and `/ui`, its script and styles, and the vendored uPlot — a fixed
 * set of files read once when the server starts (no path from a request ever reaches the file system). Open like
 * `/docs`: the page holds no data; every `/v1` call it makes carries the token the operator typed.
 *
 * @internal
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, type Layer } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

/** dist/ui/ in the package (scripts/copy-ui.mjs fills it); src/ui/ when running from the sources. */
const uiDir = fileURLToPath(new URL("../../ui/", import.meta.url))

/** From the sources there is no vendor/ copy: take uPlot from the devDependency. */
const vendorFile = (name: string, fromPackage: string): string => {
  const copied = `${uiDir}vendor/${name}`
  if (existsSync(copied)) return copied
  return createRequire(import.meta.url).resolve(`uplot/${fromPackage}`)
}

const HTML = "text/html; charset=utf-8"

const files: ReadonlyArray<readonly [route: string, file: () => string, contentType: string]> = [
  ["/ui/dashboard.js", () => `${uiDir}dashboard.js`, "text/javascript; charset=utf-8"],
  ["/ui/dashboard.css", () => `${uiDir}dashboard.css`, "text/css; charset=utf-8"],
  ["/ui/vendor/uPlot.iife.min.js", () => vendorFile("uPlot.iife.min.js", "dist/uPlot.iife.min.js"), "text/javascript; charset=utf-8"],
  ["/ui/vendor/uPlot.min.css", () => vendorFile("uPlot.min.css", "dist/uPlot.min.css"), "text/css; charset=utf-8"]
]

/** Same-origin only, no inline script, nothing framed: the page cannot be made to send the token anywhere else. */
const headers = {
  "cache-control": "no-cache",
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff"
}

const read = (file: () => string): Uint8Array | string => {
  try {
    return readFileSync(file())
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
}

/** The dashboard's routes on the API's router (`GET /`, `/ui` and `/ui/`, and its four assets). */
export const layer: Layer.Layer<never> = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const serve = (route: string, file: () => string, contentType: string) => {
      const body = read(file)
      const response = typeof body === "string"
        ? HttpServerResponse.unsafeJson(
          { _tag: "DashboardUnavailable", message: `the dashboard file for ${route} is missing from the package: ${body}` },
          { status: 500 }
        )
        : HttpServerResponse.uint8Array(body, { contentType, headers })
      return Effect.zipRight(
        typeof body === "string" ? Effect.logWarning(`dashboard: cannot read the file for ${route}: ${body}`) : Effect.void,
        router.get(route as `/${string}`, Effect.succeed(response))
      )
    }
    const page = () => `${uiDir}index.html`
    // The router ignores a trailing slash: "/ui" serves "/ui/" too.
    for (const route of ["/", "/ui"]) yield* serve(route, page, HTML)
    for (const [route, file, contentType] of files) yield* serve(route, file, contentType)
  })
)
