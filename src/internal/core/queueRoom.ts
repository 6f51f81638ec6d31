/**
 * Pending banks waiting for room in the full queue (a retry whose delay is over, a restored bank, one no longer
 * deferred): they wait rather than being dropped — these compiles were promised — and go in, in order, as workers
 * free slots.
 *
 * @internal
 */
export class QueueRoom {
  private readonly waitingRoom: Array<number> = []
  private waitingHead = 0

  constructor(private readonly offer: (bank: number) => boolean) {}

  /** Offers bank `i` now when nobody waits before it; else it waits. True when the queue took it. */
  requeue(i: number): boolean {
    if (this.waitingHead === this.waitingRoom.length && this.offer(i)) return true
    this.waitingRoom.push(i)
    return false
  }

  /** The queue has room: the waiting banks go in, in order, while it takes them. Returns how many went in. */
  fill(): number {
    const room = this.waitingRoom
    let moved = 0
    while (this.waitingHead < room.length && this.offer(room[this.waitingHead]!)) {
      this.waitingHead++
      moved++
    }
    if (this.waitingHead === room.length && room.length !== 0) {
      room.length = 0
      this.waitingHead = 0
    }
    return moved
  }

  /** How many banks wait for room. */
  get size(): number {
    return this.waitingRoom.length - this.waitingHead
  }

  get waiting(): ReadonlyArray<number> {
    return this.waitingRoom.slice(this.waitingHead)
  }

  clear(): void {
    this.waitingRoom.length = 0
    this.waitingHead = 0
  }
}
