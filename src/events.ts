import diagnostics from "node:diagnostics_channel";

/** Which tier answered. `l1` is the in-process memory tier, `l2` the remote one. */
export type Tier = "l1" | "l2";

/** Why a stale value was served instead of a fresh one. */
export type StaleReason = "revalidating" | "error" | "timeout" | "backoff";

/**
 * Every event the cache emits, with its payload. Listeners are called synchronously; a
 * throwing listener is caught and ignored so that observers can never break a request.
 */
export interface CacheEventMap {
  /** A fresh value was found. */
  hit: { key: string; tier: Tier };
  /** No usable value: the factory will run (or the caller gets `undefined`). */
  miss: { key: string };
  /** A stale value was returned. */
  stale: { key: string; tier: Tier; reason: StaleReason };
  /** A value was written. */
  set: { key: string; ttl: number; size: number | undefined };
  /** A key was deleted. */
  delete: { key: string };
  /** Tags (namespace clears included) were invalidated. */
  invalidate: { tags: readonly string[]; soft: boolean };
  /** The factory threw, was rejected, or timed out. */
  "factory-error": { key: string; error: unknown };
  /** A store, serializer or corrupt entry failed; the cache carried on without it. */
  error: { key: string | undefined; operation: string; error: unknown };
  /**
   * The fleet-wide lease for a key: `acquired` (this instance runs the factory), `waiting`
   * (another instance does), `landed` (its value arrived), `timed-out` (the wait ran out; this
   * instance runs the factory), `took-over` (the holder's lease expired and this waiter took it).
   */
  lease: { key: string; outcome: "acquired" | "waiting" | "landed" | "timed-out" | "took-over" };
  /**
   * The bus dropped the in-process tier because messages may have been lost: its
   * subscription came back after a disconnection (`reconnected`), or a message was skipped
   * (`gap`).
   */
  bus: { state: "reconnected" | "gap" };
  /** A store's circuit breaker changed state. */
  breaker: { store: string; state: "open" | "half-open" | "closed"; error?: unknown };
}

export type CacheEventName = keyof CacheEventMap;
export type CacheEventListener<E extends CacheEventName> = (payload: CacheEventMap[E]) => void;

/**
 * A minimal typed emitter. `wants(name)` is a property read, so the hot path can skip
 * building a payload nobody listens to; events are also published on the
 * `node:diagnostics_channel` channel `cachet:<name>`.
 */
export class CacheEvents {
  readonly #listeners = new Map<CacheEventName, Array<(payload: never) => void>>();
  readonly #channels = new Map<CacheEventName, diagnostics.Channel>();

  on<E extends CacheEventName>(name: E, listener: CacheEventListener<E>): () => void {
    const list = this.#listeners.get(name) ?? [];
    list.push(listener as (payload: never) => void);
    this.#listeners.set(name, list);
    return () => this.off(name, listener);
  }

  off<E extends CacheEventName>(name: E, listener: CacheEventListener<E>): void {
    const list = this.#listeners.get(name);
    if (!list) return;
    const i = list.indexOf(listener as (payload: never) => void);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#listeners.delete(name);
  }

  /** True when someone listens to `name` here or on its diagnostics channel. */
  wants(name: CacheEventName): boolean {
    return this.#listeners.has(name) || this.#channel(name).hasSubscribers;
  }

  emit<E extends CacheEventName>(name: E, payload: CacheEventMap[E]): void {
    const list = this.#listeners.get(name);
    if (list) {
      for (const listener of [...list]) {
        try {
          (listener as CacheEventListener<E>)(payload);
        } catch {
          // An observer must never break the cache.
        }
      }
    }
    const channel = this.#channel(name);
    if (channel.hasSubscribers) channel.publish(payload);
  }

  #channel(name: CacheEventName): diagnostics.Channel {
    let channel = this.#channels.get(name);
    if (!channel) {
      channel = diagnostics.channel(`cachet:${name}`);
      this.#channels.set(name, channel);
    }
    return channel;
  }
}
