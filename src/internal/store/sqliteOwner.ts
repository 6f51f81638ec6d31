/**
 * One owner per SQLite store: a process (or a layer within one) holds `<database>.lock` before it opens the database,
 * and the next one to try is refused at once, told who holds it.
 *
 * The lock is SQLite's own (an exclusive lock on that small file, kept by a connection in exclusive locking mode): the
 * kernel holds it for the connection and drops it when the process ends, however it ends, so an owner killed with -9 never blocks the next
 * start, two starts racing get one winner, and a reused pid cannot fake a live owner. Within one process SQLite
 * refuses a second connection the same way. Who holds it is only for the message: the owner writes its pid, host and
 * start time to `<database>.owner` once it holds the lock, and removes it when it lets go.
 *
 * @internal
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Context, Effect, Layer, type Scope } from "effect"
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { hostname } from "node:os"
import { bankStoreError, BankStoreError } from "../../BankStateStore.js"

interface Owner {
  readonly pid: number
  readonly host: string
  readonly since: string
}

const readOwner = (path: string): Owner | undefined => {
  try {
    const owner = JSON.parse(readFileSync(path, "utf8")) as Partial<Owner>
    return typeof owner.pid === "number" && typeof owner.host === "string" && typeof owner.since === "string"
      ? owner as Owner
      : undefined
  } catch {
    return undefined
  }
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as { readonly code?: unknown }).code === "EPERM"
  }
}

/** Who holds the store, as the refusal names it (the owner file may lag the lock by a moment, or be gone). */
export const describeHolder = (owner: Owner | undefined, here: { readonly pid: number; readonly host: string }) => {
  if (owner === undefined) return "another process"
  if (owner.pid === here.pid && owner.host === here.host) return `this process (pid ${owner.pid}: another store layer)`
  if (owner.host !== here.host) return `pid ${owner.pid} on ${owner.host} (since ${owner.since})`
  return isAlive(owner.pid) ? `pid ${owner.pid} (since ${owner.since})` : "another process"
}

const isBusy = (error: unknown): boolean => {
  const cause = (error as { readonly cause?: { readonly code?: unknown } } | null)?.cause
  return cause?.code === "SQLITE_BUSY" || cause?.code === "SQLITE_LOCKED"
}

/** Writes the owner file whole (a reader sees the old one or the new one, never half of it). */
const writeOwner = (path: string): void => {
  const owner: Owner = { pid: process.pid, host: hostname(), since: new Date().toISOString() }
  const temporary = `${path}.${process.pid}`
  writeFileSync(temporary, JSON.stringify(owner))
  renameSync(temporary, path)
}

/**
 * Holds the store at `filename` for the scope: `<filename>.lock` taken (its directory must exist), then the owner
 * file written. Fails with a `BankStoreError` naming the holder, having opened nothing of the store itself.
 */
export const ownSqliteStore = (filename: string): Effect.Effect<void, BankStoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const lockFile = `${filename}.lock`
    const ownerFile = `${filename}.owner`
    const scope = yield* Effect.scope
    const context = yield* Layer.buildWithScope(SqliteClient.layer({ filename: lockFile, disableWAL: true }), scope)
    const lock = Context.get(context, SqliteClient.SqliteClient)
    // Refused at once rather than waiting; the exclusive lock kept after the (empty) transaction, until the connection
    // closes; the journal in memory, so that no file is left beside the lock file.
    for (const statement of ["PRAGMA busy_timeout = 0", "PRAGMA locking_mode = EXCLUSIVE", "PRAGMA journal_mode = MEMORY"]) {
      yield* lock.unsafe(statement)
    }
    yield* lock.unsafe("BEGIN EXCLUSIVE")
    yield* lock.unsafe("COMMIT")
    // Removed before the lock goes (finalizers run in reverse): the next owner's file is never removed by this one.
    yield* Effect.acquireRelease(
      Effect.sync(() => writeOwner(ownerFile)),
      () => Effect.sync(() => rmSync(ownerFile, { force: true }))
    )
  }).pipe(
    Effect.catchAll((error) => {
      if (!isBusy(error)) return Effect.fail(bankStoreError("open")(error))
      const holder = describeHolder(readOwner(`${filename}.owner`), { pid: process.pid, host: hostname() })
      return Effect.fail(
        new BankStoreError({
          operation: "open",
          message: `${filename} is in use by ${holder}: a store has one owner at a time ` +
            "(stop that one first, or give this one its own DATA_DIR)"
        })
      )
    })
  )
