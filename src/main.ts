// Placeholder until the HTTP sidecar lands: the library is used by composing `CompileQueue.layer` into an app.
console.log("effect-compile-trigger: the HTTP service is not built yet; see README.md for library usage (npm test runs the suite).")
