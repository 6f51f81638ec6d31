/**
 * The webhook's answer contract, against a local receiver (an HTTP server in this process) through the real
 * `WebhookEngine` on Node's HTTP client: what a webhook author naturally writes is read (an empty body, `{}`, `null`,
 * `null` fields, Go's zero values, int64s as decimal strings, fractional milliseconds, extra fields, JSON labelled as
 * text), and what is ambiguous fails with one readable line naming the field and the expected shape.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck } from "effect"
import { readFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { CompileError, type CompileJob, CompileResult } from "../../src/CompileEngine.js"
import { ANSWER_FIELDS, readAnswer } from "../../src/internal/http/webhookAnswer.js"
import * as WebhookEngine from "../../src/WebhookEngine.js"

interface Answer {
  readonly status?: number
  readonly contentType?: string | null
  readonly body: string
}

/** What the receiver answers, per bank id. */
const answers = new Map<string, Answer>()
let receiver: Server
let url: string

beforeAll(async () => {
  receiver = createServer((request, response) => {
    let body = ""
    request.setEncoding("utf8")
    request.on("data", (chunk: string) => (body += chunk))
    request.on("end", () => {
      const answer = answers.get((JSON.parse(body) as { bankId: string }).bankId)!
      const contentType = answer.contentType === undefined ? "application/json" : answer.contentType
      response.writeHead(answer.status ?? 200, contentType === null ? {} : { "content-type": contentType })
      response.end(answer.body)
    })
  })
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve))
  url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/compile`
})

afterAll(() => new Promise<void>((resolve) => receiver.close(() => resolve())))

let banks = 0

/** One compile call whose endpoint answers `answer`: the engine's result, or its error. */
const call = (answer: Answer): Effect.Effect<Either.Either<CompileResult, CompileError>> => {
  const bankId = `bank-${++banks}`
  answers.set(bankId, answer)
  const job: CompileJob = { bankId, reason: "size", memories: 3, forgets: 0, attempt: 1, fencingToken: { epoch: 1, sequence: banks } }
  return WebhookEngine.make({ url }).pipe(
    Effect.flatMap((engine) => engine.run(bankId, job)),
    Effect.either,
    Effect.provide(NodeHttpClient.layer)
  )
}

const json = (value: unknown): Answer => ({ body: JSON.stringify(value) })

const succeeds = (answer: Answer) =>
  call(answer).pipe(Effect.map((result) => {
    if (Either.isLeft(result)) throw new Error(`expected a result, got: ${result.left.message}`)
    const { bankId: _, ...fields } = result.right
    return fields
  }))

const fails = (answer: Answer) =>
  call(answer).pipe(Effect.map((result) => {
    if (Either.isRight(result)) throw new Error(`expected a CompileError, got ${JSON.stringify(result.right)}`)
    expect(result.left).toBeInstanceOf(CompileError)
    expect(result.left.message).not.toContain("\n")
    return result.left.message
  }))

const empty = {
  scopesCompiled: [],
  pagesCreated: 0,
  pagesUpdated: 0,
  noiseMemories: 0,
  tokensUsed: 0,
  elapsedMs: 0
}

describe("the webhook reads what an author naturally answers", () => {
  it.live("the answer that used to fail every compile, with a list of scopes", () =>
    Effect.gen(function*() {
      expect(yield* succeeds(json({ pagesUpdated: 2, tokensUsed: 1500, scopesCompiled: ["a"] }))).toEqual({
        ...empty,
        pagesUpdated: 2,
        tokensUsed: 1500,
        scopesCompiled: ["a"]
      })
    }))

  it.live("an empty body, {}, null and 204 are an empty result", () =>
    Effect.gen(function*() {
      for (const answer of [{ body: "" }, { body: "{}" }, { body: "null" }, { body: " null\n" }, { status: 204, body: "" }]) {
        expect(yield* succeeds(answer)).toEqual(empty)
      }
    }))

  it.live("null fields are absent, Go's zero values mean nothing, unknown fields are ignored", () =>
    Effect.gen(function*() {
      expect(
        yield* succeeds(json({ error: null, scopesCompiled: null, tokensUsed: null, pagesCreated: null, elapsedMs: null }))
      ).toEqual(empty)
      // A Go struct without omitempty: "" for no error, null for a nil slice.
      expect(yield* succeeds(json({ bankId: "", error: "", scopesCompiled: null, pagesUpdated: 4 }))).toEqual({
        ...empty,
        pagesUpdated: 4
      })
      expect(yield* succeeds(json({ pagesCreated: 1, model: "gpt-x", usage: { input: 3, output: 9 } }))).toEqual({
        ...empty,
        pagesCreated: 1
      })
    }))

  it.live("int64s as decimal strings (protobuf's JSON), fractional milliseconds, 1e3", () =>
    Effect.gen(function*() {
      expect(yield* succeeds(json({ tokensUsed: "18250", pagesUpdated: 1e3, elapsedMs: 41200.6 }))).toEqual({
        ...empty,
        tokensUsed: 18250,
        pagesUpdated: 1000,
        elapsedMs: 41201
      })
    }))

  it.live("a reported error is kept, its tokens charged; the bank id may be echoed", () =>
    Effect.gen(function*() {
      const result = yield* call(json({ error: "scope projects: the model refused", tokensUsed: 900 }))
      expect(Either.getOrThrow(result).error).toBe("scope projects: the model refused")
      expect(Either.getOrThrow(result).tokensUsed).toBe(900)
      const echoed = yield* call({ body: `{"bankId":"bank-${banks + 1}","pagesCreated":1}` })
      expect(Either.getOrThrow(echoed).pagesCreated).toBe(1)
    }))

  it.live("JSON labelled text/plain or text/html (Express's res.send, Flask's json.dumps) is read as JSON", () =>
    Effect.gen(function*() {
      for (const contentType of ["text/plain", "text/html; charset=utf-8", null]) {
        expect(yield* succeeds({ contentType, body: `{"pagesUpdated":3}` })).toEqual({ ...empty, pagesUpdated: 3 })
      }
    }))
})

describe("an ambiguous answer fails with one line naming the field and the expected shape", () => {
  it.live("a count where the list of scopes is expected", () =>
    Effect.gen(function*() {
      expect(yield* fails(json({ pagesUpdated: 2, tokensUsed: 1500, scopesCompiled: 1 }))).toBe(
        `webhook answer (HTTP 200) is not a valid compile result: scopesCompiled must be a list of scope names like ["a","b"], got 1`
      )
      expect(yield* fails(json({ scopesCompiled: "projects,people" }))).toMatch(
        /scopesCompiled must be a list of scope names like \["a","b"\], got "projects,people"$/
      )
      expect(yield* fails(json({ scopesCompiled: ["a", 2] }))).toMatch(/scopesCompiled must be a list of scope names like \["a","b"\], got \["a",2\]$/)
    }))

  it.live("counts must be non-negative integers; every problem is named, on one line", () =>
    Effect.gen(function*() {
      expect(yield* fails(json({ tokensUsed: -5 }))).toMatch(/: tokensUsed must be a non-negative integer like 1500, got -5$/)
      expect(yield* fails(json({ pagesCreated: 1.5 }))).toMatch(/: pagesCreated must be a non-negative integer like 3, got 1\.5$/)
      expect(yield* fails(json({ noiseMemories: true, elapsedMs: "fast" }))).toMatch(
        /: noiseMemories must be a non-negative integer like 3, got true; elapsedMs must be a non-negative number of milliseconds like 41200, got "fast"$/
      )
    }))

  it.live("error must be a message, bankId the bank compiled", () =>
    Effect.gen(function*() {
      expect(yield* fails(json({ error: { message: "boom" } }))).toMatch(
        /: error must be a string \(the message\) or null, got \{"message":"boom"\}$/
      )
      expect(yield* fails(json({ bankId: "another-bank" }))).toMatch(
        /: bankId must be the bank compiled \("bank-\d+"\) or absent, got "another-bank"$/
      )
    }))

  it.live("a body that is not a JSON object says what is expected", () =>
    Effect.gen(function*() {
      expect(yield* fails(json([{ pagesUpdated: 1 }]))).toBe(
        `webhook answer (HTTP 200) is not a JSON object: got an array; expected an object like {"scopesCompiled":["a"],"tokensUsed":1500} or an empty body`
      )
      expect(yield* fails({ contentType: "text/html", body: "<html>OK</html>" })).toMatch(/content-type text\/html, not JSON/)
    }))

  it.live("a non-2xx status fails with the start of its body, on one line", () =>
    Effect.gen(function*() {
      expect(yield* fails({ status: 500, contentType: "text/plain", body: "model\noverloaded\n  retry later" })).toBe(
        "webhook returned HTTP 500: model overloaded retry later"
      )
    }))
})

describe("readAnswer", () => {
  it("knows every CompileResult field", () => {
    expect([...ANSWER_FIELDS].sort()).toEqual(Object.keys(CompileResult.fields).sort())
  })

  it("answers any JSON object with a CompileResult or one line of at most a few hundred characters", () => {
    const value = FastCheck.oneof(
      FastCheck.jsonValue({ maxDepth: 3 }),
      FastCheck.constantFrom(null, -1, 1.5, "12", "x\ny", [], ["a"], 2 ** 60)
    )
    const body = FastCheck.record(
      Object.fromEntries(ANSWER_FIELDS.map((field) => [field, value])),
      { requiredKeys: [] }
    )
    FastCheck.assert(
      FastCheck.property(body, (input) => {
        const read = readAnswer("bank-1", input)
        if (Either.isLeft(read)) {
          expect(read.left).not.toMatch(/[\n\r]/)
          expect(read.left.length).toBeLessThan(ANSWER_FIELDS.length * 160)
        } else {
          expect(read.right).toBeInstanceOf(CompileResult)
        }
      }),
      { numRuns: 500 }
    )
  })

  it("docs/service.md describes every field of the answer", () => {
    const doc = readFileSync(new URL("../../docs/service.md", import.meta.url), "utf8")
    const table = /#### The answer[\s\S]*?\n\n(\|[\s\S]*?)\n\n/.exec(doc)?.[1] ?? ""
    const documented = [...table.matchAll(/^\| `(\w+)` \|/gm)].map((match) => match[1])
    expect(documented.sort()).toEqual([...ANSWER_FIELDS].sort())
  })
})
