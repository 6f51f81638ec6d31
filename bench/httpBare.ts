/**
 * The baseline of `npm run bench:http`: a bare HttpApi handler that does nothing, on the same stack as the service
 * (HttpApiBuilder.serve on NodeHttpServer). Listens on PORT (127.0.0.1) and prints "listening" when ready.
 *
 * @internal
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { createServer } from "node:http"

class BareApi extends HttpApi.make("bare").add(
  HttpApiGroup.make("bare").add(HttpApiEndpoint.post("nothing", "/bare"))
) {}

const BareLive = HttpApiBuilder.group(BareApi, "bare", (handlers) => handlers.handle("nothing", () => Effect.void))

const Listening = Layer.effectDiscard(Effect.sync(() => console.log("listening")))

HttpApiBuilder.serve().pipe(
  Layer.provide(HttpApiBuilder.api(BareApi).pipe(Layer.provide(BareLive))),
  Layer.provide(NodeHttpServer.layer(createServer, { host: "127.0.0.1", port: Number(process.env.PORT ?? 8788) })),
  (serve) => Layer.provide(Listening, serve),
  Layer.launch,
  NodeRuntime.runMain
)
