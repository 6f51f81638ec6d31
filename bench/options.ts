/**
 * The benchmarks' command-line options, each `--name value`.
 *
 * @internal
 */

/** The value after `--name`, or undefined when the option is not given. */
export const option = (name: string): string | undefined => {
  const index = process.argv.indexOf(`--${name}`)
  return index === -1 ? undefined : process.argv[index + 1]
}

/** `--name`'s value as a number, or `fallback` when the option is not given. */
export const numberOption = (name: string, fallback: number): number => {
  const text = option(name)
  return text === undefined ? fallback : Number(text)
}
