/**
 * Reads the JSON object a compile webhook answered as a `CompileResult`, field by field: what a webhook author
 * naturally writes is accepted where its meaning is unambiguous, anything else is refused with one readable line
 * naming each bad field, what it must be and what it was.
 *
 * @internal
 */
import { Either } from "effect"
import { CompileResult } from "../../CompileEngine.js"

/** The answer's fields: every field of `CompileResult` (a test keeps the two in step). */
export const ANSWER_FIELDS = [
  "bankId",
  "scopesCompiled",
  "pagesCreated",
  "pagesUpdated",
  "noiseMemories",
  "tokensUsed",
  "elapsedMs",
  "error"
] as const

type Counts = "pagesCreated" | "pagesUpdated" | "noiseMemories" | "tokensUsed"

/** An example of each count, for the error message. */
const COUNT_EXAMPLES: Record<Counts, number> = { pagesCreated: 3, pagesUpdated: 3, noiseMemories: 3, tokensUsed: 1500 }

/** How much of a refused value an error message quotes. */
const QUOTE_CHARS = 60

/** A refused value as compact JSON on one line, cut at `QUOTE_CHARS`. */
const shown = (value: unknown): string => {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > QUOTE_CHARS ? `${text.slice(0, QUOTE_CHARS)}…` : text
}

type Read<A> = Either.Either<A, string>

const refused = (field: string, expected: string, value: unknown): Read<never> =>
  Either.left(`${field} must be ${expected}, got ${shown(value)}`)

/** A JSON integer, or an int64 as a decimal string (protobuf's JSON mapping writes them so); `null` means 0. */
const count = (field: Counts, value: unknown): Read<number> => {
  if (value === undefined || value === null) return Either.right(0)
  const number = typeof value === "string" && /^\d{1,15}$/.test(value) ? Number(value) : value
  return typeof number === "number" && Number.isSafeInteger(number) && number >= 0
    ? Either.right(number)
    : refused(field, `a non-negative integer like ${COUNT_EXAMPLES[field]}`, value)
}

/** Milliseconds: a fraction (a timer's reading) is rounded. */
const milliseconds = (value: unknown): Read<number> => {
  if (value === undefined || value === null) return Either.right(0)
  return typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= Number.MAX_SAFE_INTEGER
    ? Either.right(Math.round(value))
    : refused("elapsedMs", "a non-negative number of milliseconds like 41200", value)
}

/** A list of names; a count or a single string is not one (is `"a,b"` one scope or two?). */
const scopes = (value: unknown): Read<ReadonlyArray<string>> => {
  if (value === undefined || value === null) return Either.right([])
  return Array.isArray(value) && value.every((scope) => typeof scope === "string")
    ? Either.right(value as ReadonlyArray<string>)
    : refused("scopesCompiled", `a list of scope names like ["a","b"]`, value)
}

/** The reported error: a blank message (Go's zero value) is none. */
const reportedError = (value: unknown): Read<string | undefined> => {
  if (value === undefined || value === null) return Either.right(undefined)
  if (typeof value !== "string") return refused("error", "a string (the message) or null", value)
  return Either.right(value.trim() === "" ? undefined : value)
}

/** An echo of the bank id must be the bank compiled: another one is a receiver mixing up its calls. */
const echoedBank = (bankId: string, value: unknown): Read<string> =>
  value === undefined || value === null || value === "" || value === bankId
    ? Either.right(bankId)
    : refused("bankId", `the bank compiled (${JSON.stringify(bankId)}) or absent`, value)

/**
 * The answer `body` (a parsed JSON object) for the compile of `bankId`: a `CompileResult`, or every problem on one
 * line, `; `-separated. Fields the result does not have are ignored (forward compatible).
 */
export const readAnswer = (bankId: string, body: Readonly<Record<string, unknown>>): Read<CompileResult> => {
  const fields = {
    bankId: echoedBank(bankId, body.bankId),
    scopesCompiled: scopes(body.scopesCompiled),
    pagesCreated: count("pagesCreated", body.pagesCreated),
    pagesUpdated: count("pagesUpdated", body.pagesUpdated),
    noiseMemories: count("noiseMemories", body.noiseMemories),
    tokensUsed: count("tokensUsed", body.tokensUsed),
    elapsedMs: milliseconds(body.elapsedMs),
    error: reportedError(body.error)
  } satisfies Record<(typeof ANSWER_FIELDS)[number], Read<unknown>>
  const problems = Object.values<Read<unknown>>(fields).flatMap((field) => Either.isLeft(field) ? [field.left] : [])
  if (problems.length > 0) return Either.left(problems.join("; "))
  const { error, ...read } = Either.getOrThrow(Either.all(fields))
  return Either.right(new CompileResult(error === undefined ? read : { ...read, error }))
}
