/**
 * Deadlines of one length for calls made one after the other (a store's commands, bounded by
 * its `commandTimeout`): their deadlines come in the order the calls were made, so one timer,
 * set for the oldest call still waiting, serves them all. A call that settles only marks its
 * place; the queue drops settled places from its head as it goes. A command costs a small
 * record rather than a timer of its own (setting and clearing a timer per command was a
 * measurable part of a Redis hit).
 */
export interface Waiter {
  readonly due: number;
  /** Settled (answered or failed): its deadline no longer matters. */
  done: boolean;
  /**
   * Dropped once the call settles: it holds the caller's promise, and through it the reply,
   * which must not live on in the queue until the head passes it.
   */
  expire: (() => void) | undefined;
}

export class DeadlineQueue {
  readonly #ms: number;
  readonly #now: () => number;
  /** The calls in the order made; places before `#head` are emptied as it passes them. */
  #items: Array<Waiter | undefined> = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;
  #turn: NodeJS.Immediate | undefined;

  /** `ms`: the length of every deadline (> 0). */
  constructor(ms: number, now: () => number = () => performance.now()) {
    this.#ms = ms;
    this.#now = now;
  }

  /** Track a call: `expire` runs if it has not settled (see {@link settle}) within the time. */
  add(expire: () => void): Waiter {
    const waiter: Waiter = { due: this.#now() + this.#ms, done: false, expire };
    this.#items.push(waiter);
    if (this.#timer === undefined && this.#turn === undefined) this.#arm(this.#ms);
    return waiter;
  }

  settle(waiter: Waiter): void {
    waiter.done = true;
    waiter.expire = undefined;
    this.#trim();
  }

  /** Drop settled calls from the head; with none left waiting, the timer goes. */
  #trim(): void {
    const items = this.#items;
    while (this.#head < items.length && items[this.#head]!.done) items[this.#head++] = undefined;
    if (this.#head === items.length) {
      this.#items = [];
      this.#head = 0;
      clearTimeout(this.#timer);
      this.#timer = undefined;
    } else if (this.#head > 1024 && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(ms)));
    this.#timer.unref();
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    // Timers run before I/O in each turn of the event loop: after a blocked loop, let the
    // replies already waiting in the socket be read before judging.
    // (Not unref'd: an unref'd immediate does not keep the loop from blocking in its poll,
    // and would run only when something else wakes it.)
    this.#turn = setImmediate(this.#sweep);
  };

  readonly #sweep = (): void => {
    this.#turn = undefined;
    const now = this.#now();
    const items = this.#items;
    while (this.#head < items.length) {
      const waiter = items[this.#head]!;
      if (!waiter.done) {
        if (waiter.due > now) break;
        const expire = waiter.expire!;
        waiter.done = true;
        waiter.expire = undefined;
        expire();
      }
      items[this.#head++] = undefined;
    }
    this.#trim();
    const next = this.#items[this.#head];
    if (next !== undefined && this.#timer === undefined) this.#arm(next.due - now);
  };
}
