/**
 * Turns Schema's decode errors into the API's 400 answer: one short sentence per problem, each once. Schema reports a
 * bad optional field twice (the field's own check, then "Expected undefined" from the `| undefined` of `optional`)
 * and its tree message is a dozen lines; the fields' `message` annotations (`mustBe`) give the sentences, this module
 * drops the echoes, names unknown and missing fields, and prefixes a batch item's index.
 *
 * @internal
 */
import { HttpApiBuilder, HttpApiError, type HttpApp } from "@effect/platform"
import { Cause, Effect, ParseResult } from "effect"
import { CompileTriggerApi } from "../../CompileTriggerApi.js"
import { quote } from "../core/inputRules.js"

type Issue = typeof HttpApiError.Issue.Type

/** Errors already made readable, which the middleware passes through (their sentences are not rewritten twice). */
const readableMark = new WeakSet<HttpApiError.HttpApiDecodeError>()

/** The field an issue is about: the last key of its path, quoted when it is not a plain name. */
const fieldOf = (path: ReadonlyArray<PropertyKey>): string | undefined => {
  const key = [...path].reverse().find((segment): segment is string => typeof segment === "string")
  if (key === undefined) return undefined
  return /^[A-Za-z_][A-Za-z0-9_]{0,59}$/.test(key) ? key : quote(key)
}

/** `is unexpected, expected: "a" | "b"` → `a, b`. */
const allowedFields = (message: string): string =>
  (message.split("expected: ")[1] ?? "").replace(/"/g, "").split(" | ").join(", ")

/** The sentence for one issue, from its message (already one where a `mustBe` annotation wrote it). */
const sentenceOf = (issue: Issue): string => {
  const field = fieldOf(issue.path)
  const item = issue.path.find((segment) => typeof segment === "number")
  const text = issue._tag === "Unexpected"
    ? `unknown field ${field ?? "(unnamed)"} (allowed: ${allowedFields(issue.message)})`
    : issue._tag === "Missing"
    ? `${field ?? "a field"} is missing`
    : field !== undefined && !issue.message.startsWith(field)
    ? `${field}: ${issue.message}`
    : issue.message
  return item === undefined ? text : `item ${String(item)}: ${text}`
}

/** An undefined-member echo: "Expected undefined" beside another issue at the same path. */
const isEcho = (issue: Issue, all: ReadonlyArray<Issue>): boolean =>
  issue.message.startsWith("Expected undefined, actual") &&
  all.some((other) =>
    other !== issue && samePath(other.path, issue.path) && !other.message.startsWith("Expected undefined")
  )

const samePath = (a: ReadonlyArray<PropertyKey>, b: ReadonlyArray<PropertyKey>): boolean =>
  a.length === b.length && a.every((segment, at) => segment === b[at])

/** A path as it is answered: keys cut like any quoted value, so a huge key is not echoed back. */
const shortPath = (path: ReadonlyArray<PropertyKey>): ReadonlyArray<PropertyKey> =>
  path.map((segment) => typeof segment === "string" && segment.length > 60 ? `${segment.slice(0, 60)}…` : segment)

/** The issues as sentences, echoes dropped, each sentence once. */
const readableIssues = (issues: ReadonlyArray<Issue>): ReadonlyArray<Issue> => {
  const seen = new Set<string>()
  const out: Array<Issue> = []
  for (const issue of issues) {
    if (isEcho(issue, issues)) continue
    const message = sentenceOf(issue)
    if (seen.has(message)) continue
    seen.add(message)
    out.push({ _tag: issue._tag, path: shortPath(issue.path), message })
  }
  return out
}

/** The 400 answer for these issues: `message` is their sentences, joined. */
export const readableDecodeError = (issues: ReadonlyArray<Issue>): HttpApiError.HttpApiDecodeError => {
  const readable = readableIssues(issues)
  const error = new HttpApiError.HttpApiDecodeError({
    issues: readable,
    message: readable.length === 0 ? "the request is invalid" : readable.map((issue) => issue.message).join("; ")
  })
  readableMark.add(error)
  return error
}

/**
 * A body's decode error as the 400 answer. Only the array formatter runs: the tree formatter's message is replaced
 * anyway, and it recursed into the value.
 */
export const refailReadable = (error: ParseResult.ParseError): Effect.Effect<never, HttpApiError.HttpApiDecodeError> =>
  Effect.fail(readableDecodeError(ParseResult.ArrayFormatter.formatErrorSync(error)))

/**
 * The API middleware that rewrites the decode errors HttpApi raises itself (path and query parameters) into readable
 * ones; the body routes raise theirs readable already (`refailReadable`) and pass through unchanged.
 */
export const readableErrorsLayer = HttpApiBuilder.middleware(CompileTriggerApi, (app) =>
  // The app's error type says `never`, but the handlers' failures (typed in the API) travel here, maybe wrapped in a
  // proxy that carries their span (hence `originalError`).
  Effect.mapError(app as HttpApp.Default<unknown>, (error) =>
    error instanceof HttpApiError.HttpApiDecodeError && !readableMark.has(Cause.originalError(error))
      ? readableDecodeError(error.issues)
      : error) as HttpApp.Default<HttpApiError.HttpApiDecodeError>)
