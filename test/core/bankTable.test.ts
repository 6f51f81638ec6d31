/**
 * The bank table's compact storage: the sparse forget and failure counts, and the wait sum kept in a 32-bit column
 * with the sums it cannot hold beside it — every value read back exactly as written.
 */
import { describe, expect, it } from "@effect/vitest"
import { BankTable, MAX_FAILURES } from "../../src/internal/core/bankTable.js"

const tableOf = (...ids: Array<string>) => {
  const table = new BankTable()
  for (const id of ids) table.add(id)
  return table
}

describe("BankTable — sparse counts", () => {
  it("forgets and consecutiveFailures read 0 until set, and drop their entry at 0", () => {
    const table = tableOf("a", "b", "c")
    expect([table.forgets(0), table.consecutiveFailures(1)]).toEqual([0, 0])
    table.setForgets(2, 5)
    table.setForgets(0, 3)
    table.setConsecutiveFailures(1, MAX_FAILURES + 10)
    expect([table.forgets(0), table.forgets(1), table.forgets(2)]).toEqual([3, 0, 5])
    expect(table.consecutiveFailures(1)).toBe(MAX_FAILURES)
    expect(table.banksWithForgets()).toEqual([0, 2])
    table.setForgets(2, 0)
    table.setConsecutiveFailures(1, 0)
    expect(table.banksWithForgets()).toEqual([0])
    expect(table.consecutiveFailures(1)).toBe(0)
  })
})

describe("BankTable — wait sums", () => {
  it("sums past 32 bits, negative ones and fractions are kept exactly, and back in the column once they fit", () => {
    const table = tableOf("a", "b")
    table.addWaitSum(0, 2 ** 31 - 1)
    expect(table.waitSumOf(0)).toBe(2 ** 31 - 1)
    table.addWaitSum(0, 1)
    table.addWaitSum(0, 3_600_000 * 50)
    expect(table.waitSumOf(0)).toBe(2 ** 31 + 3_600_000 * 50)
    table.addWaitSum(1, -(2 ** 31))
    table.addWaitSum(1, 0.5)
    expect(table.waitSumOf(1)).toBe(-(2 ** 31) + 0.5)
    table.setWaitSum(0, 7)
    expect([table.waitSumOf(0), table.waitSumOf(1)]).toEqual([7, -(2 ** 31) + 0.5])
  })

  it("a compile's snapshot takes a wide sum and a failure gives it back", () => {
    const table = tableOf("a")
    table.memories[0] = 3
    table.oldestAt[0] = 1_000
    table.setWaitSum(0, 5e12)
    expect(table.takeMemories(0, 3)?.waitSum).toBe(5e12)
    expect(table.waitSumOf(0)).toBe(0)
    table.untakeMemories(0)
    expect([table.oldestAt[0], table.waitSumOf(0)]).toEqual([1_000, 5e12])
  })
})
