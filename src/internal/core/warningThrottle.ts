/**
 * How often a warning about something a client can repeat at will (a refused new bank, a shed connection) is logged:
 * the first at once, then at most once per interval, saying how many happened since — so that no client can fill the
 * log, and no refusal goes uncounted.
 *
 * @internal
 */

/** A warning due now: how many events it covers, and whether it is the first one logged. */
export interface DueWarning {
  readonly count: number
  readonly first: boolean
}

export class WarningThrottle {
  private count = 0
  private loggedAt = -Infinity

  constructor(private readonly intervalMillis: number = 60_000) {}

  /** One more event at `now` (milliseconds): the warning to log now, or undefined while the interval runs. */
  note(now: number): DueWarning | undefined {
    this.count++
    if (now - this.loggedAt < this.intervalMillis) return undefined
    const due = { count: this.count, first: this.loggedAt === -Infinity }
    this.count = 0
    this.loggedAt = now
    return due
  }
}
