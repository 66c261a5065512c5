import { randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { Store } from "./store.js";

/** What the bus does with the news it receives from other instances. */
export interface BusHandlers {
  /** These keys were rewritten (`landed`) or deleted elsewhere: drop their in-process copies. */
  keys(keys: readonly string[], landed: boolean): void;
  /** These tags were invalidated elsewhere: `[tag, hard, soft]` states. */
  tags(states: ReadonlyArray<readonly [string, number, number]>): void;
  /** Messages may have been lost: drop everything held in process. */
  reset(reason: "reconnect" | "gap"): void;
  /** The bus could not publish or subscribe. */
  error(operation: string, error: unknown): void;
}

/** The bus's view of its subscription. */
export type BusState = "idle" | "connecting" | "up" | "down";

/** The channel, under the store's own prefix. */
const CHANNEL = "__cachet:bus";

interface Message {
  /** Format version. */
  v: 1;
  /** Sender instance. */
  i: string;
  /** Sender's sequence number, to detect lost messages. */
  n: number;
  /** Keys written (a value landed). */
  s?: string[] | undefined;
  /** Keys deleted. */
  d?: string[] | undefined;
  /** Tag states. */
  t?: Array<[string, number, number]> | undefined;
}

/**
 * Cross-instance coherence for the in-process tier, over the store's pub/sub (Redis). Messages
 * carry keys and tag states, never values; changes made in one tick go out as one message. An
 * instance ignores its own messages. Every sender numbers its messages, so a receiver that
 * sees a number skipped — or a subscription re-established after a disconnection — knows it
 * may have missed something and drops everything it holds.
 */
export class Bus {
  readonly id = randomUUID();
  readonly #store: Required<Pick<Store, "publish" | "subscribe">>;
  readonly #handlers: BusHandlers;
  readonly #peers = new LRUCache<string, number>({ max: 10_000 });
  #seq = 0;
  #state: BusState = "idle";
  #unsubscribe: (() => Promise<void>) | undefined;
  #batch: { s: Set<string>; d: Set<string>; t: Map<string, [number, number]> } | undefined;
  /** Publishes not settled yet, awaited by `close()` so that a last change still goes out. */
  readonly #sending = new Set<Promise<void>>();

  constructor(store: Required<Pick<Store, "publish" | "subscribe">>, handlers: BusHandlers) {
    this.#store = store;
    this.#handlers = handlers;
  }

  get state(): BusState {
    return this.#state;
  }

  /** Whether changes from other instances are being received now. */
  get up(): boolean {
    return this.#state === "up";
  }

  /** Subscribe, once. Failures leave the bus `down` until the store's reconnection succeeds. */
  start(): void {
    if (this.#state !== "idle") return;
    this.#state = "connecting";
    this.#store
      .subscribe(
        CHANNEL,
        (message) => this.#receive(message),
        () => {
          this.#state = "up";
          this.#handlers.reset("reconnect");
        },
        () => {
          // Lost: nothing arrives until the resubscription resets. Meanwhile tag states are
          // read from the store again (see TagRegistry `pushed`).
          if (this.#state !== "idle") this.#state = "down";
        },
      )
      .then(
        (unsubscribe) => {
          // Closed while subscribing (a CLI command that ended first): leave at once.
          if (this.#state === "idle") {
            unsubscribe().catch(() => {});
            return;
          }
          this.#unsubscribe = unsubscribe;
          if (this.#state === "connecting") this.#state = "up";
        },
        (error: unknown) => {
          // A subscription that fails because the bus was closed meanwhile is no failure.
          if (this.#state === "idle") return;
          if (this.#state === "connecting") this.#state = "down";
          this.#handlers.error("subscribe", error);
        },
      );
  }

  /** Tell the others that `key` was rewritten (`landed`) or deleted. Batched per tick. */
  key(key: string, landed: boolean): void {
    const batch = this.#open();
    (landed ? batch.s : batch.d).add(key);
  }

  /** Tell the others that `tag` was invalidated. Batched per tick. */
  tag(tag: string, hard: number, soft: number): void {
    this.#open().t.set(tag, [hard, soft]);
  }

  async close(): Promise<void> {
    // Changes made just before closing (a CLI's one invalidation) must still reach the others.
    if (this.#batch) this.#flush();
    await Promise.all(this.#sending);
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = undefined;
    this.#state = "idle";
    await unsubscribe?.().catch(() => {});
  }

  #open() {
    if (!this.#batch) {
      this.#batch = { s: new Set(), d: new Set(), t: new Map() };
      setImmediate(() => this.#flush());
    }
    return this.#batch;
  }

  #flush(): void {
    const batch = this.#batch;
    this.#batch = undefined;
    if (!batch) return;
    const message: Message = { v: 1, i: this.id, n: ++this.#seq };
    if (batch.s.size > 0) message.s = [...batch.s];
    if (batch.d.size > 0) message.d = [...batch.d];
    if (batch.t.size > 0) message.t = [...batch.t].map(([tag, [h, s]]) => [tag, h, s]);
    const sent = this.#store
      .publish(CHANNEL, Buffer.from(JSON.stringify(message)))
      .catch((error: unknown) => this.#handlers.error("publish", error));
    this.#sending.add(sent);
    sent.then(() => this.#sending.delete(sent));
  }

  #receive(raw: Buffer): void {
    let message: Message;
    try {
      message = JSON.parse(raw.toString("utf8")) as Message;
    } catch {
      return; // not ours
    }
    if (message?.v !== 1 || typeof message.i !== "string" || typeof message.n !== "number") return;
    if (message.i === this.id) return;
    const last = this.#peers.get(message.i);
    this.#peers.set(message.i, message.n);
    if (last !== undefined && message.n !== last + 1) this.#handlers.reset("gap");
    if (Array.isArray(message.s)) this.#handlers.keys(message.s.filter(isString), true);
    if (Array.isArray(message.d)) this.#handlers.keys(message.d.filter(isString), false);
    if (Array.isArray(message.t)) {
      this.#handlers.tags(
        message.t.filter(
          (t): t is [string, number, number] =>
            Array.isArray(t) &&
            typeof t[0] === "string" &&
            Number.isFinite(t[1]) &&
            Number.isFinite(t[2]),
        ),
      );
    }
  }
}

function isString(value: unknown): value is string {
  return typeof value === "string";
}
