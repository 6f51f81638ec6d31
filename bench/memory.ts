/**
 * B3: bytes per bank for 1M banks with one retain each (below the threshold), against a plain
 * `Map<string, { count }>`. The id strings are created before the first measurement, so they are excluded;
 * typed-array storage (outside the JS heap) is included.
 *
 * @internal
 */
import { Effect } from "effect"
import { bankIds, fmtInt, liveBytes, openQueue, type Row, type Scale } from "./common.js"

export const memoryRows = async (scale: Scale): Promise<Array<Row>> => {
  const banks = 1_000_000 / scale.divisor
  const ids = bankIds(banks, "memory-bank-")
  // Hashing flattens the (cons) strings a template literal makes: do it now, so neither side pays for it.
  new Set(ids).clear()

  const beforeMap = await liveBytes()
  const map = new Map<string, { count: number }>()
  for (const id of ids) map.set(id, { count: 1 })
  const mapBytes = (await liveBytes()) - beforeMap
  // Read after the measurement: V8 does not keep a variable across an await if nothing reads it afterwards.
  if (map.size !== banks) throw new Error("B3: Map baseline incomplete")
  map.clear()

  const config = scale.maxWait === true ? { sizeThreshold: 50, maxWaitSeconds: 3600 } : { sizeThreshold: 50 }
  const { close, queue } = await openQueue({ config })
  const before = await liveBytes()
  for (const id of ids) queue.unsafeNotifyRetain(id)
  const queueBytes = (await liveBytes()) - before
  const banksSeen = Effect.runSync(queue.stats).banks
  await close()
  if (banksSeen !== banks) throw new Error(`B3: the queue holds ${banksSeen} banks, expected ${banks}`)
  if (ids.length !== banks) throw new Error("unreachable") // keeps the ids alive until here

  const perBank = queueBytes / banks
  const mapPerBank = mapBytes / banks
  return [{
    id: "B3",
    figure: `memory per bank, ${fmtInt(banks)} banks, one retain each (heap + ArrayBuffers, ids excluded)${
      scale.maxWait === true ? ", maxWaitSeconds set" : ""
    }`,
    value: `${perBank.toFixed(1)} B/bank (${((perBank / mapPerBank) * 100).toFixed(0)} % of the Map)`,
    baseline: `Map<string, {count}> ${mapPerBank.toFixed(1)} B/bank`,
    target: "≤ 100 B/bank",
    met: perBank <= 100,
    data: { bytesPerBank: perBank, mapBytesPerBank: mapPerBank, banks }
  }]
}
