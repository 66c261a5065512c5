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
  /**
   * Tags were invalidated: route or application tags (`tags`), a namespace clear (`namespace`,
   * through the namespace's implicit tag), or HTTP paths (`paths`, through their `@path:` tags).
   */
  invalidate: { tags: readonly string[]; soft: boolean; kind: InvalidationKind };
  /**
   * The factory threw, was rejected, or timed out. A `hardTimeout` is an error whose `code` is
   * `E_FACTORY_HARD_TIMEOUT` (a `FactoryHardTimeoutError`); the `factory` event of the same run
   * says `outcome: "hard-timeout"`.
   */
  "factory-error": { key: string; error: unknown };
  /**
   * A factory run finished (once per run, however many callers shared it): how long it took
   * in milliseconds, how it ended, and whether it refreshed an entry in the background. The
   * source of factory latency metrics and spans.
   */
  factory: {
    key: string;
    duration: number;
    outcome: "ok" | "error" | "hard-timeout";
    background: boolean;
    error?: unknown | undefined;
  };
  /**
   * One call to the remote store finished (calls skipped by an open breaker are not calls).
   * `outcome` is `hit`/`miss` for `get`, `ok` for other operations that succeeded, `error`
   * otherwise (timeouts included; the `error` event says why). `duration` in milliseconds.
   * Only timed when someone listens.
   */
  store: {
    store: string;
    operation: string;
    key: string | undefined;
    duration: number;
    outcome: "hit" | "miss" | "ok" | "error";
    error?: unknown | undefined;
  };
  /** A store, serializer or corrupt entry failed; the cache carried on without it. */
  error: { key: string | undefined; operation: string; error: unknown };
  /**
   * The fleet-wide lease for a key: `acquired` (this instance runs the factory), `waiting`
   * (another instance does), `landed` (its value arrived), `timed-out` (the wait ran out; this
   * instance runs the factory), `took-over` (the holder's lease expired and this waiter took it).
   */
  lease: {
    key: string;
    outcome: "acquired" | "waiting" | "landed" | "timed-out" | "took-over";
    /** For the outcomes that end a wait: how long this instance waited, in milliseconds. */
    waited?: number | undefined;
  };
  /**
   * The bus dropped the in-process tier because messages may have been lost: its
   * subscription came back after a disconnection (`reconnected`), or a message was skipped
   * (`gap`).
   */
  bus: { state: "reconnected" | "gap" };
  /** A store's circuit breaker changed state. */
  breaker: { store: string; state: "open" | "half-open" | "closed"; error?: unknown };
  /**
   * The remote store became unavailable (`down`: the first failed call after a healthy
   * period, with its error) or available again (`up`: a call succeeded `breakerCooldown` after
   * the last failure; `downFor` in milliseconds and the number of `failures` in between).
   * Once per change, never once per request: what logs and alerts are built on.
   */
  "store-health": {
    store: string;
    state: "down" | "up";
    error?: unknown | undefined;
    downFor?: number | undefined;
    failures?: number | undefined;
  };
  /** The in-process tier dropped an entry to stay within its bounds (least recently used). */
  evict: { key: string; tier: Tier; size: number };
  /**
   * A value was not kept because it is larger than the limit: the memory tier's
   * `maxEntrySize` (`source: "l1"`; the caller still gets the value) or the HTTP cache's
   * `maxEntrySize` (`source: "http"`; the response is sent, not stored). `size` is unknown
   * for a streamed body that outgrew the limit.
   */
  oversize: {
    key: string | undefined;
    size: number | undefined;
    limit: number;
    source: "l1" | "http";
  };
  /**
   * How the HTTP cache answered one request, once per request: `route` is the route's
   * pattern (`GET /posts/:id` on Fastify), never the URL. See {@link HttpOutcome}; `reason`
   * details stale answers (`stale-while-revalidate`, `stale-if-error`, `stale-timeout`,
   * `stale-backoff`), bypasses and responses that were not stored (`status-500`, `private`,
   * `set-cookie`, `too-large`, …), as in the `Cache-Status` `detail`.
   */
  http: { route: string; method: string; outcome: HttpOutcome; reason?: string };
}

/** What a `invalidate` event invalidated. */
export type InvalidationKind = "tags" | "namespace" | "paths";

/**
 * The HTTP outcomes: `hit` (answered from the cache), `stale` (a stale copy, see `reason`),
 * `collapsed` (waited for a concurrent request's response), `refreshed` (a stale entry was
 * refreshed while the client waited), `stored` (a miss: the handler ran and its response was
 * stored), `not-storable` (the handler ran; its response may not be stored, see `reason`),
 * `miss` (the handler ran without storing: a HEAD miss, `only-if-cached`), `bypass` (not
 * looked up: a personal request, a client's `no-store`/`no-cache`), `method` (not GET/HEAD).
 */
export type HttpOutcome =
  | "hit"
  | "stale"
  | "collapsed"
  | "refreshed"
  | "stored"
  | "not-storable"
  | "miss"
  | "bypass"
  | "method";

/**
 * The namespace path of a full key as events carry it (`"users"` for `@users:42`,
 * `"users/admins"` for `@users/admins:1`), or `""` for the root namespace.
 */
export function namespaceOf(key: string): string {
  if (key.charCodeAt(0) !== 64 /* @ */) return "";
  const end = key.indexOf(":");
  return end < 0 ? "" : key.slice(1, end);
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
  /**
   * Per event name, whether a listener is registered here: a plain property read on the hot
   * path (a hit asks on every call).
   */
  readonly #listened: Partial<Record<CacheEventName, boolean>> = Object.create(null);

  on<E extends CacheEventName>(name: E, listener: CacheEventListener<E>): () => void {
    const list = this.#listeners.get(name) ?? [];
    list.push(listener as (payload: never) => void);
    this.#listeners.set(name, list);
    this.#listened[name] = true;
    return () => this.off(name, listener);
  }

  off<E extends CacheEventName>(name: E, listener: CacheEventListener<E>): void {
    const list = this.#listeners.get(name);
    if (!list) return;
    const i = list.indexOf(listener as (payload: never) => void);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) {
      this.#listeners.delete(name);
      this.#listened[name] = false;
    }
  }

  /** True when someone listens to `name` here or on its diagnostics channel. */
  wants(name: CacheEventName): boolean {
    return this.#listened[name] === true || this.#channel(name).hasSubscribers;
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
