// The architecture's rules, checked by `npm test` (`npm run lint`): every function in src/ fits on a screen, and
// the layers under src/internal/ import only downwards (docs/internals/ARCHITECTURE.md):
//   core/    synchronous decisions: no Effect runtime, nothing outside core/ but pure modules
//   runtime/ the Effect shell of one queue: nothing from cluster/, http/, service/, tuner/
import tseslint from "typescript-eslint"

/** Modules of `effect` that run, schedule or hold effects: the core decides, it does not run anything. */
const effectRuntime = [
  "Cause", "Clock", "Config", "Context", "Deferred", "Effect", "Exit", "Fiber", "FiberId", "FiberRef", "FiberSet",
  "Layer", "Logger", "ManagedRuntime", "Metric", "Queue", "Ref", "Runtime", "Schedule", "Scheduler", "Scope",
  "Stream", "SynchronizedRef", "TestClock", "Tracer"
]

/** The layers above runtime/: neither the core nor the runtime may reach them. */
const upperLayers = (from) => [
  `${from}cluster/*`, `${from}http/*`, `${from}service/*`, `${from}tuner/*`,
  "**/CompileTriggerServer.js", "**/CompileTriggerApi.js", "**/ClusterCompileQueue.js", "**/ServiceConfig.js",
  "**/main.js", "**/bin.js", "**/WebhookEngine.js", "**/OtlpTracing.js", "**/PrometheusMetrics.js"
]

/** Public modules that are plain data and pure functions (Schema classes, the trigger rule): the core may use them. */
const pureModules = ["BankCompileState", "BankPolicy", "CompileBudget", "CompileHistory", "CompileTriggerConfig", "Freshness"]

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "src/ui/**"] },
  {
    files: ["src/**/*.ts"],
    languageOptions: { parser: tseslint.parser },
    plugins: { "@typescript-eslint": tseslint.plugin },
    rules: {
      "max-lines-per-function": ["error", { max: 80, skipBlankLines: false, skipComments: false, IIFEs: true }]
    }
  },
  {
    files: ["src/internal/core/**/*.ts"],
    rules: {
      "max-lines": ["error", { max: 350 }],
      "@typescript-eslint/no-restricted-imports": ["error", {
        paths: [{
          name: "effect",
          importNames: effectRuntime,
          allowTypeImports: true,
          message: "core/ decides synchronously: it is handed `now` and answers codes; the runtime runs effects."
        }],
        patterns: [
          {
            group: ["@effect/*", "node:*"],
            message: "core/ imports no platform, driver or Node module."
          },
          {
            group: ["../runtime/*", ...upperLayers("../")],
            message: "core/ imports nothing from the layers above it."
          },
          {
            group: ["../../*", ...pureModules.map((name) => `!../../${name}.js`)],
            allowTypeImports: true,
            message: `core/ may use values only from pure modules (${pureModules.join(", ")}); types from any.`
          }
        ]
      }]
    }
  },
  {
    files: ["src/internal/runtime/**/*.ts"],
    rules: {
      "@typescript-eslint/no-restricted-imports": ["error", {
        patterns: [{
          group: upperLayers("../"),
          message: "runtime/ is one queue's shell: it imports nothing from cluster/, http/, service/ or tuner/."
        }]
      }]
    }
  }
)
