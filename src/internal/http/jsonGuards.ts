/**
 * Checks shared by both HTTP edges (the API's request bodies and the webhook's answers): whether a content type is
 * JSON, and whether a parsed value nests too deeply for Schema's error messages, which print it recursively.
 *
 * @internal
 */

/** Deepest nesting a value may have before a Schema decodes it; the bodies both edges accept are 2 or 3 levels deep. */
export const MAX_JSON_DEPTH = 32

/** `application/json` or `application/<anything>+json`, with any parameters (`; charset=utf-8`). */
export const isJsonMediaType = (contentType: string): boolean => {
  const media = contentType.split(";", 1)[0]!.trim().toLowerCase()
  return media === "application/json" || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(media)
}

/** Whether `value` nests arrays or objects deeper than `max` levels, walked without recursion. */
export const nestedDeeperThan = (value: unknown, max: number = MAX_JSON_DEPTH): boolean => {
  const stack: Array<unknown> = [value]
  const depths: Array<number> = [1]
  while (stack.length > 0) {
    const node = stack.pop()
    const depth = depths.pop()!
    if (typeof node !== "object" || node === null) continue
    if (depth > max) return true
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (typeof child === "object" && child !== null) {
        stack.push(child)
        depths.push(depth + 1)
      }
    }
  }
  return false
}
