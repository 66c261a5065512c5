import type { Cache, FactoryContext, Resolution } from "../cache.js";
import { MAX_DURATION_MS } from "../duration.js";
import type { Coordinator } from "../engine/coordinator.js";
import { storesNow } from "../engine/health.js";
import { engineOf } from "../engine/registry.js";
import type { Tiers } from "../engine/tiers.js";
import type { Entry } from "../entry.js";
import { InvalidOptionError } from "../errors.js";
import type { HttpOutcome } from "../events.js";
import type { Policy } from "../options.js";
import { validateTags } from "../options.js";
import type { CacheStatusFields } from "./cache-status.js";
import { formatCacheStatus } from "./cache-status.js";
import { ifNoneMatchHits, notModifiedSince } from "./conditional.js";
import type { HeaderValue } from "./headers.js";
import { deltaSeconds, hasCookie, headerString, parseCacheControl } from "./headers.js";
import { invalidatedPaths, isUnsafe } from "./invalidation.js";
import {
  cacheableTarget,
  keyHost,
  pathTag,
  requestKey,
  shorten,
  splitUrl,
  varyKey,
} from "./key.js";
import type {
  CodedBody,
  Coding,
  CompressionOptions,
  StoredRecord,
  StoredResponse,
  VaryMarker,
} from "./record.js";
import {
  CODINGS,
  codedBodyOf,
  codedEtag,
  compressRecord,
  negotiate,
  recordSerializer,
  variantKey,
} from "./record.js";
import type { CompiledRoute, HttpCacheOptions, RouteCacheOptions } from "./route.js";
import { compileRoute, compressionOptions, DEFAULT_STATUSES, statusSet } from "./route.js";
import { byteRange, notModifiedHeaders } from "./serve.js";
import type { Freshness } from "./storable.js";
import { NEVER_STORED, NotStorable, storedResponse, toBuffer, usable } from "./storable.js";
import type { Dispatch, HttpRequest, HttpResponse, ReplyPlan } from "./types.js";
import { freshened, sameValidator, validationHeaders } from "./validation.js";

export type { CompiledRoute, HttpCacheOptions, RouteCacheOptions } from "./route.js";
export { NotStorable } from "./storable.js";
export type { Dispatch, HttpRequest, HttpResponse, ReplyPlan } from "./types.js";

/** Marks the requests an adapter sends through the app again to refresh an entry out of band. */
export const DISPATCH_HEADER = "x-cachet-dispatch";

/**
 * The headers of an out-of-band refresh of `request` (built by the HTTP cache: the client's,
 * without its conditionals, with the stored response's validators), without the body framing,
 * plus the adapter's secret marker so that its own middleware lets the request through.
 */
export function dispatchHeaders(request: HttpRequest, secret: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || DISPATCH_DROPPED.has(name)) continue;
    headers[name] = Array.isArray(value) ? value.join(", ") : String(value);
  }
  headers[DISPATCH_HEADER] = secret;
  return headers;
}

const DISPATCH_DROPPED = new Set(["content-length", "transfer-encoding"]);

/** A request that leads the production of a response for its key. */
export interface Exchange {
  readonly key: string;
  readonly route: CompiledRoute;
  readonly request: HttpRequest;
  /** @internal */
  readonly state: ExchangeState;
}

/** What {@link HttpCache.complete} asks the adapter to change on the handler's response. */
export interface Completion {
  /** Headers to set (they replace the handler's of the same name). */
  readonly headers: Record<string, string>;
  /**
   * The client's conditional request matched the new response: send 304 with the
   * {@link NOT_MODIFIED_HEADERS} and no body instead.
   */
  readonly notModified: boolean;
}

/** What {@link HttpCache.handle} decided. */
export type Decision =
  | { readonly kind: "respond"; readonly reply: ReplyPlan }
  | {
      readonly kind: "forward";
      /**
       * Present when this request leads its key: run the handler on a request without
       * `If-None-Match`/`If-Modified-Since` (the cache needs the full response), then call
       * `complete` — or `abandon` if no response comes.
       */
      readonly exchange: Exchange | undefined;
      /** `Cache-Status` to add to the handler's response when there is no exchange. */
      readonly cacheStatus: string | undefined;
    };

interface ExchangeState {
  settled: boolean;
  resolve(record: StoredRecord): void;
  reject(error: NotStorable): void;
  context: FactoryContext<StoredRecord>;
  fwd: "uri-miss" | "vary-miss" | "request";
  /** The request's primary key (where a vary marker would be): `key` itself unless secondary. */
  primary: string;
  ifNoneMatch: HeaderValue;
  ifModifiedSince: HeaderValue;
  /** When the handler was asked for the response (the request time of RFC 9111 §4.2.3). */
  startedAt: number;
}

/** A leader's response as the cache judged it: what to store and for how long, or why not. */
type Outcome = { record: StoredResponse; freshness: Freshness | undefined } | NotStorable;

const LEAD = Symbol("lead");

/** Reasons for which requests that waited on a failed leader coalesce again. */
const RETRYABLE = /^(status-\d+|aborted|leader-failed)$/;

interface LookupOptions {
  mayRetry: boolean;
  /** Found through a vary marker: the headers the response varies on. */
  secondary?: readonly string[] | undefined;
  /** The client asked for a fresh response (`no-cache`, honoured). */
  force?: boolean | undefined;
  /** The request's primary key. */
  primary: string;
}

/**
 * The framework-agnostic HTTP response cache. Adapters call {@link handle} when a request
 * arrives and {@link complete} when the handler's response is ready; everything about keys,
 * storability, freshness, conditional requests and `Cache-Status` lives here.
 */
export class HttpCache {
  readonly cache: Cache;
  /** The engine behind `cache` (its namespace): the coordinator and the tiers. */
  readonly #engine: Coordinator;
  readonly #tiers: Tiers;
  readonly #statuses: ReadonlySet<number>;
  readonly #maxEntrySize: number;
  readonly #sessionCookies: readonly string[];
  readonly #keyHost: boolean;
  readonly #statusName: string | false;
  /** `Cache-Status` of a plain hit up to its ttl, built once. */
  readonly #hitPrefix: string | undefined;
  readonly #exposeKey: boolean;
  readonly #compress: CompressionOptions | undefined;
  readonly #downstream: boolean;
  readonly #surrogate: false | "surrogate-key" | "cache-tag";

  constructor(options: HttpCacheOptions) {
    if (!options || typeof options !== "object" || typeof options.cache?.namespace !== "function") {
      throw new InvalidOptionError("cache", "expected a cache from createCache()");
    }
    this.cache = options.cache.namespace(options.namespace ?? "http", {
      serializer: recordSerializer,
    });
    this.#engine = engineOf(this.cache);
    this.#tiers = this.#engine.tiers;
    this.#statuses = statusSet(options.statuses ?? DEFAULT_STATUSES, "statuses");
    this.#maxEntrySize = options.maxEntrySize ?? 5 * 1024 * 1024;
    if (!Number.isSafeInteger(this.#maxEntrySize) || this.#maxEntrySize <= 0) {
      throw new InvalidOptionError(
        "maxEntrySize",
        `expected a positive integer of bytes, got ${options.maxEntrySize}`,
      );
    }
    const extra = (options.headers ?? []).map((h) => String(h).toLowerCase());
    for (const h of extra) {
      if (NEVER_STORED.has(h)) {
        throw new InvalidOptionError(
          "headers",
          `"${h}" is never stored (hop-by-hop, per-response or personal)`,
        );
      }
    }
    this.#sessionCookies = [...(options.sessionCookies ?? [])];
    if (options.keyHost !== undefined && typeof options.keyHost !== "boolean") {
      throw new InvalidOptionError("keyHost", `expected true or false, got ${options.keyHost}`);
    }
    this.#keyHost = options.keyHost !== false;
    const name = options.cacheStatus ?? "cachet";
    if (name !== false && (typeof name !== "string" || !/^[A-Za-z0-9_.-]+$/.test(name))) {
      throw new InvalidOptionError(
        "cacheStatus",
        `expected a token such as "cachet" or false, got ${JSON.stringify(name)}`,
      );
    }
    this.#statusName = name;
    this.#hitPrefix = name === false ? undefined : `${name}; hit; ttl=`;
    this.#exposeKey = options.exposeKey === true;
    this.#compress = compressionOptions(options.compress);
    this.#downstream = options.downstreamCacheControl === true;
    const surrogate = options.surrogateKeys ?? false;
    if (surrogate !== false && surrogate !== "surrogate-key" && surrogate !== "cache-tag") {
      throw new InvalidOptionError(
        "surrogateKeys",
        `expected false, "surrogate-key" or "cache-tag", got ${JSON.stringify(surrogate)}`,
      );
    }
    this.#surrogate = surrogate;
  }

  /** Largest body stored, in bytes: adapters buffer streamed bodies up to this. */
  get maxEntrySize(): number {
    return this.#maxEntrySize;
  }

  /** Validate a route's options once, at registration. `name` identifies the route in errors. */
  route(options: RouteCacheOptions | true, fallbackName: string): CompiledRoute {
    return compileRoute(options, fallbackName, {
      policy: (o, where) => this.#tiers.policy(o, where),
      statuses: this.#statuses,
      downstream: this.#downstream,
    });
  }

  /**
   * Decide what to do with a request: answer it from the cache now (`respond`), or let the
   * handler run (`forward`), with an {@link Exchange} when this request's response should be
   * stored and shared with the requests waiting for the same key.
   */
  handle(
    request: HttpRequest,
    route: CompiledRoute,
    dispatch?: Dispatch,
  ): Decision | Promise<Decision> {
    const method = request.method;
    if (method !== "GET" && method !== "HEAD") {
      return this.#forward("method", undefined, undefined, route, request);
    }
    if (!cacheableTarget(request.url)) {
      return this.#forward("bypass", "invalid-target", undefined, route, request);
    }
    if (this.#isPersonal(request, route)) {
      return this.#forward("bypass", "personal-request", undefined, route, request);
    }
    const key = this.#key(request, route);
    if (key === undefined)
      return this.#forward("bypass", "invalid-host", undefined, route, request);
    let directives: Map<string, string | true> | undefined;
    if (route.requestDirectives && request.headers["cache-control"] !== undefined) {
      directives = parseCacheControl(request.headers["cache-control"]);
      if (directives.has("only-if-cached")) return this.#onlyIfCached(request, route, key);
      if (directives.has("no-cache") || deltaSeconds(directives, "max-age") === 0) {
        if (method === "HEAD") return this.#forward("request", "no-cache", key, route, request);
        return this.#lookup(request, route, key, dispatch, {
          mayRetry: false,
          force: true,
          primary: key,
        });
      }
      if (directives.has("no-store")) return this.#noStore(request, route, key);
    }
    const fresh = this.#tiers.peek<StoredRecord>(key);
    if (fresh !== undefined) {
      const value = fresh.value;
      if (value.kind === "response") {
        if (usable(value, request)) {
          return {
            kind: "respond",
            reply: this.#serve(fresh as Entry<StoredResponse>, request, route, key, "hit"),
          };
        }
        // Stored under this key, produced for other selecting header values (RFC 9111 §4.1).
        return this.#forward("vary-miss", "vary-mismatch", key, route, request);
      }
      if (value.kind === "coded") {
        return this.#forward("uri-miss", undefined, key, route, request);
      }
      const secondary = varyKey(key, value.vary, request.headers);
      const variant = this.#tiers.peek<StoredRecord>(secondary);
      if (variant?.value.kind === "response" && usable(variant.value, request)) {
        return {
          kind: "respond",
          reply: this.#serve(variant as Entry<StoredResponse>, request, route, secondary, "hit"),
        };
      }
      if (method === "HEAD") return this.#headMiss(request, route, secondary, value.vary);
      return this.#lookup(request, route, secondary, dispatch, {
        mayRetry: true,
        secondary: value.vary,
        primary: key,
      });
    }
    if (method === "HEAD") return this.#headMiss(request, route, key, undefined);
    if (this.#tiers.hasRemote) return this.#remoteFirst(request, route, key, dispatch);
    return this.#lookup(request, route, key, dispatch, { mayRetry: true, primary: key });
  }

  /**
   * With a remote tier, a plain read first: hits there (the common case) need none of the
   * flight machinery, and concurrent reads of one key share one store call.
   */
  #remoteFirst(
    request: HttpRequest,
    route: CompiledRoute,
    key: string,
    dispatch: Dispatch | undefined,
  ): Promise<Decision> {
    // A client that takes a stored coding gets the response and that coding's body in one
    // round trip; the other codings' bodies are not read.
    const wanted =
      request.headers.range === undefined
        ? negotiate(headerString(request.headers["accept-encoding"]), CODINGS)
        : undefined;
    // Continuations, not `await`s: what a request keeps alive while Redis answers is what the
    // garbage collector copies (and promotes) when it runs meanwhile, on every hit.
    if (wanted === undefined) {
      return this.#tiers
        .lookupEntry<StoredRecord>(key, { quiet: true })
        .then((entry) => this.#remoteHit(request, route, key, dispatch, entry, undefined));
    }
    return this.#tiers
      .lookupWith<StoredRecord, StoredRecord>(key, variantKey(key, wanted))
      .then(([entry, coded]) => this.#remoteHit(request, route, key, dispatch, entry, coded));
  }

  #remoteHit(
    request: HttpRequest,
    route: CompiledRoute,
    key: string,
    dispatch: Dispatch | undefined,
    entry: Entry<StoredRecord> | undefined,
    coded: Entry<StoredRecord> | undefined,
  ): Decision | Promise<Decision> {
    if (entry?.value.kind === "response" && usable(entry.value, request)) {
      return {
        kind: "respond",
        reply: this.#serve(
          entry as Entry<StoredResponse>,
          request,
          route,
          key,
          "hit",
          undefined,
          undefined,
          coded?.value,
        ),
      };
    }
    return this.#lookup(request, route, key, dispatch, { mayRetry: true, primary: key });
  }

  /**
   * The handler's response for a request that led its key: store it when it may be stored,
   * hand it to the waiting requests, and say what to change on it. The same as
   * {@link prepare} then {@link commit} on the same response.
   */
  complete(exchange: Exchange, response: HttpResponse): Completion {
    // One stored record for both: the head's headers and what is stored.
    const outcome = this.#outcome(exchange, response);
    const completion = this.#completion(exchange, response, outcome);
    this.#commit(exchange, outcome);
    return completion;
  }

  /**
   * What to change on the handler's response before its head goes out (`ETag`,
   * `Cache-Status`, a 304 for the client's own conditional), without storing anything. For
   * adapters whose framework can still add headers while the head is written (Express with
   * `on-headers`): they call it again when a header changes, and {@link commit} once the head
   * is final, so that the decision to store sees every header the client got.
   */
  prepare(exchange: Exchange, response: HttpResponse): Completion {
    return this.#completion(exchange, response, this.#outcome(exchange, response, false));
  }

  #completion(exchange: Exchange, response: HttpResponse, outcome: Outcome): Completion {
    const { route, request, state } = exchange;
    if (outcome instanceof NotStorable) {
      return {
        headers: this.#statusHeader(
          { fwd: state.fwd, detail: outcome.reason, key: exchange.key },
          route,
          request.method,
          false,
        ),
        notModified: false,
      };
    }
    const { record, freshness } = outcome;
    // The handler's own ETag already stands on its response; only a generated one is added.
    const headers: Record<string, string> =
      response.pending || record.originEtag ? {} : { etag: record.etag };
    const ttl = Math.floor((freshness ? freshness.ttl : route.policy.ttl) / 1000);
    if (route.downstream) headers["cache-control"] = `public, max-age=${ttl}`;
    const surrogate = this.#surrogateHeader(request, route);
    if (surrogate) headers[surrogate[0]] = surrogate[1];
    Object.assign(
      headers,
      this.#statusHeader(this.#storedFields(state.fwd, exchange.key), route, request.method, false),
    );
    const notModified =
      !response.pending &&
      isSuccess(record.status) &&
      (ifNoneMatchHits(state.ifNoneMatch, record.etag) ||
        notModifiedSince(state.ifModifiedSince, state.ifNoneMatch, record.lastModified));
    return { headers, notModified };
  }

  /**
   * Store the handler's final response when it may be stored and release the requests waiting
   * on this one (with it, or to run their own handler when it may not be shared). Once per
   * exchange; later calls do nothing.
   */
  commit(exchange: Exchange, response: HttpResponse): void {
    if (exchange.state.settled) return;
    this.#commit(exchange, this.#outcome(exchange, response));
  }

  /**
   * {@link commit} for an adapter that took the head from {@link prepare} and reads the
   * headers again once code it does not control has run (Hono middleware after
   * `await next()`, Fastify hooks added after the plugin): the handler's fields, with what was
   * added or changed since (a session's `Set-Cookie`). `sent` holds the head as it went out;
   * the cache's own fields there (`prepared`) and the content fields a 304 drops stay the
   * handler's.
   */
  commitAsSent(
    exchange: Exchange,
    response: HttpResponse,
    sent: Readonly<Record<string, HeaderValue>>,
    prepared: Readonly<Record<string, string>>,
  ): void {
    const headers: Record<string, HeaderValue> = { ...response.headers };
    for (const [name, value] of Object.entries(sent)) {
      const lower = name.toLowerCase();
      if (!(lower in prepared)) headers[lower] = value;
    }
    this.commit(exchange, { ...response, headers });
  }

  /**
   * The status of a response being stored: `stored` only when some tier will keep it. With the
   * remote store as the only tier and unreachable, the write is skipped (or fails): the
   * response is not stored, and says so (RFC 9211 §2.7).
   */
  #storedFields(fwd: ExchangeState["fwd"], key: string): CacheStatusFields {
    return storesNow(this.#tiers.core)
      ? { fwd, stored: true, key }
      : { fwd, detail: "store-unavailable", key };
  }

  #commit(exchange: Exchange, outcome: Outcome): void {
    const { route, request, state } = exchange;
    if (state.settled) return;
    if (outcome instanceof NotStorable) {
      this.#observe(route, request.method, {
        fwd: state.fwd,
        detail: outcome.reason,
        key: exchange.key,
      });
      this.#settle(state, outcome);
      return;
    }
    this.#observe(route, request.method, this.#storedFields(state.fwd, exchange.key));
    const { record, freshness } = outcome;
    try {
      this.#settle(
        state,
        this.#place(state.context, state.primary, exchange.key, request, route, record, freshness),
      );
    } catch (error) {
      // Whatever went wrong storing, the response already went out: release the waiters, and
      // never let it reach the framework's send path (it would take the process down).
      const events = this.#tiers.events;
      if (events.wants("error")) {
        events.emit("error", { key: exchange.key, operation: "http.store", error });
      }
      this.#settle(state, new NotStorable("store-error"));
    }
  }

  /** The stored record for a leader's response and its freshness, or why it is not stored. */
  #outcome(exchange: Exchange, response: HttpResponse, report = true): Outcome {
    const { route, request, state } = exchange;
    const times = { requestTime: state.startedAt, responseTime: this.#tiers.clock.now() };
    return this.#record(route, request, response, exchange.key, times, report);
  }

  /**
   * Where a new response goes (RFC 9111 §4.1), whatever produced it — a leader's handler, an
   * out-of-band refresh, a revalidation: returns what to store under `key` (the key being
   * produced) and writes the rest itself. A response that varies on headers the route does not
   * key on lives under a secondary key made of their values, with a vary marker naming them
   * under the primary key; when the response's `Vary` changed since the marker was written
   * (it grew, or shrank), the marker is rewritten. Whatever lands where, a stored response is
   * only served to requests whose values match its own (see `usable`).
   */
  #place(
    context: FactoryContext<StoredRecord>,
    primary: string,
    key: string,
    request: HttpRequest,
    route: CompiledRoute,
    record: StoredResponse,
    freshness: Freshness | undefined,
  ): StoredRecord {
    if (freshness) context.setOptions(freshness);
    const policy = {
      ...this.#policyFor(request, route),
      ...(freshness ? toPolicyPart(freshness) : {}),
    };
    const names = record.varyOn;
    if (names.length === 0) {
      // No (more) variance: the primary key serves everyone.
      if (key !== primary) this.#sideStore(primary, record, policy);
      return record;
    }
    const marker: VaryMarker = { kind: "vary", vary: names };
    const target = varyKey(primary, names, request.headers);
    if (key === primary) {
      this.#sideStore(target, record, policy);
      context.setOptions(markerLife(policy));
      return marker;
    }
    if (target !== key) {
      this.#sideStore(target, record, policy);
      this.#sideStore(primary, marker, { ...policy, ...toPolicyPart(markerLife(policy)) });
    }
    return record;
  }

  /** Store a record under another key than the flight's (then compress it, off the path). */
  #sideStore(key: string, record: StoredRecord, policy: Policy): void {
    const stored = this.#tiers.store(key, record, policy);
    if (record.kind !== "response") {
      stored.catch(() => {});
      return;
    }
    stored
      .then(() => this.#tiers.lookupEntry<StoredRecord>(key))
      .then((entry) => entry && this.#upgrade(key, entry))
      .catch(() => {});
  }

  /** The request ended without a response (client gone, handler crashed): release waiters. */
  abandon(exchange: Exchange): void {
    if (!exchange.state.settled) {
      this.#observe(exchange.route, exchange.request.method, {
        fwd: exchange.state.fwd,
        detail: "aborted",
      });
    }
    this.#settle(exchange.state, new NotStorable("aborted"));
  }

  /**
   * After an unsafe request (POST, PUT, PATCH, DELETE) with a non-error status, expire the
   * stored responses of its path and of its `Location`/`Content-Location` when they are on the
   * same origin (RFC 9111 §4.4). Adapters await it before the response goes out, so that a
   * client's next GET cannot see the old response.
   */
  async invalidateAfter(
    request: HttpRequest,
    response: Pick<HttpResponse, "status" | "headers">,
  ): Promise<void> {
    const paths = invalidatedPaths(request, response);
    if (paths.length > 0) await this.invalidatePaths(paths);
  }

  /** Expire the stored responses of these paths (every query and variant), one write each. */
  async invalidatePaths(paths: readonly string[]): Promise<void> {
    await this.#tiers.invalidate(
      paths.map((p) => pathTag(splitUrl(p).path)),
      false,
      "paths",
    );
  }

  /** Expire the stored responses carrying any of these route tags. */
  async invalidateTags(tags: readonly string[], options?: { soft?: boolean }): Promise<void> {
    await this.cache.invalidateTags(tags, options);
  }

  /** Whether `method` is one after which {@link invalidateAfter} may expire responses. */
  static isUnsafe(method: string): boolean {
    return isUnsafe(method);
  }

  // ---- internals ---------------------------------------------------------------------------

  /**
   * A request that identifies a user (RFC 9111 §3.5): `Authorization`, unless the route keys on
   * it; a configured session cookie, unless the route keys on `Cookie`. A route with its own
   * `key` function, or declared `public`, takes that responsibility itself.
   */
  #isPersonal(request: HttpRequest, route: CompiledRoute): boolean {
    if (route.public || route.key) return false;
    if (request.headers.authorization !== undefined && !route.vary.includes("authorization")) {
      return true;
    }
    return (
      this.#sessionCookies.length > 0 &&
      !route.vary.includes("cookie") &&
      hasCookie(request.headers.cookie, this.#sessionCookies)
    );
  }

  /** The request's primary key; `undefined` when its host cannot be keyed. */
  #key(request: HttpRequest, route: CompiledRoute): string | undefined {
    if (route.key) {
      const custom = route.key(request);
      if (typeof custom !== "string" || custom === "") {
        throw new InvalidOptionError(
          `${route.name} cache.key`,
          "the key function must return a non-empty string",
        );
      }
      return shorten(custom);
    }
    let host: string | undefined;
    if (this.#keyHost) {
      host = keyHost(request.host ?? headerString(request.headers.host));
      if (host === undefined) return undefined;
    }
    const { path, query } = splitUrl(request.url);
    return requestKey(host, path, query, route.vary, request.headers);
  }

  /** The stored response for a request, following a vary marker; no handler runs. */
  async #stored(
    request: HttpRequest,
    key: string,
  ): Promise<{ entry: Entry<StoredResponse>; key: string } | undefined> {
    const entry = await this.#tiers.lookupEntry<StoredRecord>(key);
    if (entry === undefined) return undefined;
    if (entry.value.kind === "response") {
      return usable(entry.value, request)
        ? { entry: entry as Entry<StoredResponse>, key }
        : undefined;
    }
    if (entry.value.kind !== "vary") return undefined;
    const secondary = varyKey(key, entry.value.vary, request.headers);
    const variant = await this.#tiers.lookupEntry<StoredRecord>(secondary);
    return variant?.value.kind === "response" && usable(variant.value, request)
      ? { entry: variant as Entry<StoredResponse>, key: secondary }
      : undefined;
  }

  /** HEAD is answered from a stored GET; a HEAD miss runs the handler and stores nothing. */
  async #headMiss(
    request: HttpRequest,
    route: CompiledRoute,
    key: string,
    secondary: readonly string[] | undefined,
  ): Promise<Decision> {
    const entry = await this.#tiers.lookupEntry<StoredRecord>(key);
    if (entry?.value.kind === "response" && usable(entry.value, request)) {
      return {
        kind: "respond",
        reply: this.#serve(entry as Entry<StoredResponse>, request, route, key, "hit"),
      };
    }
    if (entry?.value.kind === "vary" && secondary === undefined) {
      return this.#headMiss(
        request,
        route,
        varyKey(key, entry.value.vary, request.headers),
        entry.value.vary,
      );
    }
    return this.#forward(secondary ? "vary-miss" : "uri-miss", "head", key, route, request);
  }

  /** `only-if-cached` (RFC 9111 §5.2.1.7): the stored response, or 504 without forwarding. */
  async #onlyIfCached(request: HttpRequest, route: CompiledRoute, key: string): Promise<Decision> {
    const found = await this.#stored(request, key);
    if (found)
      return { kind: "respond", reply: this.#serve(found.entry, request, route, found.key, "hit") };
    const headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8" };
    Object.assign(
      headers,
      this.#statusHeader({ detail: "only-if-cached", key }, route, request.method),
    );
    return {
      kind: "respond",
      reply: { status: 504, headers, body: Buffer.from("Not in cache (only-if-cached)\n") },
    };
  }

  /** `no-store` (RFC 9111 §5.2.1.5): a stored response may be served; nothing is stored. */
  async #noStore(request: HttpRequest, route: CompiledRoute, key: string): Promise<Decision> {
    const found = await this.#stored(request, key);
    if (found)
      return { kind: "respond", reply: this.#serve(found.entry, request, route, found.key, "hit") };
    return this.#forward("request", "no-store", key, route, request);
  }

  async #lookup(
    request: HttpRequest,
    route: CompiledRoute,
    key: string,
    dispatch: Dispatch | undefined,
    options: LookupOptions,
  ): Promise<Decision> {
    let exchange: Exchange | undefined;
    let becameLeader!: () => void;
    const leading = new Promise<typeof LEAD>((resolve) => {
      becameLeader = () => resolve(LEAD);
    });
    let dispatched = false;
    const self = {};
    const policy = this.#policyFor(request, route);
    const fwd = options.force ? "request" : options.secondary ? "vary-miss" : "uri-miss";
    const factory = (context: FactoryContext<StoredRecord>): Promise<StoredRecord> => {
      // With a stale copy at hand, or behind one already served, no client waits on this
      // handler run: produce it out of band so that timeouts and grace can apply.
      if ((context.background || context.stale !== undefined) && dispatch) {
        dispatched = !context.background;
        const produced = this.#dispatch(request, route, dispatch, self, key, options, context);
        if (context.background) {
          // Nobody awaits a background refresh: compress once its entry has been written.
          produced.then(
            (record) => setImmediate(() => this.#compressStored(key, record)),
            () => {},
          );
        }
        return produced;
      }
      return new Promise<StoredRecord>((resolve, reject) => {
        exchange = {
          key,
          route,
          request,
          state: {
            settled: false,
            resolve,
            reject,
            context,
            fwd,
            primary: options.primary,
            ifNoneMatch: request.headers["if-none-match"],
            ifModifiedSince: request.headers["if-modified-since"],
            startedAt: this.#tiers.clock.now(),
          },
        };
        becameLeader();
      });
    };
    const resolution = this.#engine.resolve<StoredRecord>(key, factory, policy, {
      force: options.force,
    });
    resolution.then(
      (r) => {
        // Compress a response this request just produced, off the request path: the identity
        // body serves meanwhile, and the entry is upgraded in place unless replaced since.
        if (r.outcome === "miss" && (exchange || dispatched)) this.#upgrade(key, r.entry);
      },
      () => {},
    );
    const first = await Promise.race([resolution.then(ok, fail), leading]);
    if (first === LEAD) return { kind: "forward", exchange, cacheStatus: undefined };
    if (first.ok) {
      const value = first.value.entry.value;
      if (value.kind === "coded") {
        // Only a custom key can meet a coded body's key: never served as a response.
        return this.#forward(fwd, "not-storable", key, route, request);
      }
      if (value.kind === "response" && !usable(value, request)) {
        // The response produced for this key varies on headers this request does not share.
        return this.#forward("vary-miss", "vary-mismatch", key, route, request);
      }
      if (value.kind === "vary") {
        if (options.secondary) {
          return this.#forward("vary-miss", "vary-changed", key, route, request);
        }
        const secondary = varyKey(key, value.vary, request.headers);
        return this.#lookup(request, route, secondary, dispatch, {
          ...options,
          secondary: value.vary,
          force: false,
        });
      }
      const resolution = first.value as Resolution<StoredResponse>;
      const refusal = resolution.outcome === "stale" ? resolution.error : undefined;
      if (refusal instanceof NotStorable && refusal.benign) {
        // The origin answered with a response that may not be stored: it stands, the stale
        // copy is not an answer to it. This request gets it if it produced it; others run
        // their own handler (it may be personal).
        if (refusal.owner === self && refusal.response) {
          return {
            kind: "respond",
            reply: this.#passThrough(refusal.response, key, refusal.reason, fwd, route, request),
          };
        }
        return this.#forward(fwd, refusal.reason, key, route, request);
      }
      if (resolution.outcome === "stale" && resolution.reason !== "revalidating") {
        const refused = this.#staleRefused(resolution, request, route, key, self, fwd);
        if (refused) return refused;
      }
      return {
        kind: "respond",
        reply: this.#resolved(resolution, request, route, key, dispatched, fwd),
      };
    }
    const error = first.error;
    if (error instanceof NotStorable && error.response && error.owner === self) {
      // Our own out-of-band run produced a response that may not be shared: send it to this
      // client only.
      return {
        kind: "respond",
        reply: this.#passThrough(error.response, key, error.reason, fwd, route, request),
      };
    }
    const reason = error instanceof NotStorable ? error.reason : "leader-failed";
    // The leader's run failed (an error status, a crash, a client gone): the waiting requests
    // coalesce once more behind a new leader rather than all hitting the origin at once.
    if (options.mayRetry && RETRYABLE.test(reason)) {
      return this.#lookup(request, route, key, dispatch, { ...options, mayRetry: false });
    }
    // The leader's response may not be shared (personal, too large, …): run our own handler.
    return this.#forward(fwd, reason, key, route, request);
  }

  /**
   * When producing a new response failed (or was slow) and the stored one may not be served
   * stale (`must-revalidate`, `no-cache`, `s-maxage`, or past its `stale-if-error`, RFC 9111
   * §4.2.4): the failure itself, or a 504 when there is none to show.
   */
  #staleRefused(
    resolution: Resolution<StoredResponse>,
    request: HttpRequest,
    route: CompiledRoute,
    key: string,
    self: object,
    fwd: "uri-miss" | "vary-miss" | "request",
  ): Decision | undefined {
    const { entry } = resolution;
    const window = entry.value.staleIfError;
    if (window === undefined || this.#tiers.clock.now() < entry.freshUntil + window)
      return undefined;
    const error = resolution.error;
    if (error instanceof NotStorable && error.response && error.owner === self) {
      return {
        kind: "respond",
        reply: this.#passThrough(error.response, key, "stale-refused", fwd, route, request),
      };
    }
    const status = errorStatus(error) ?? 504;
    const headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8" };
    Object.assign(
      headers,
      this.#statusHeader(
        { fwd: "stale", fwdStatus: status, detail: "stale-refused", key },
        route,
        request.method,
      ),
    );
    return {
      kind: "respond",
      reply: {
        status: status >= 500 ? status : 504,
        headers,
        body: Buffer.from(
          "The stored response may not be served stale, and no fresh one could be had.\n",
        ),
      },
    };
  }

  #resolved(
    resolution: Resolution<StoredResponse>,
    request: HttpRequest,
    route: CompiledRoute,
    key: string,
    dispatched: boolean,
    fwd: "uri-miss" | "vary-miss" | "request",
  ): ReplyPlan {
    const { entry, outcome } = resolution;
    if (outcome === "hit") return this.#serve(entry, request, route, key, "hit");
    if (outcome === "miss") {
      return this.#serve(
        entry,
        request,
        route,
        key,
        dispatched ? "refreshed" : "collapsed",
        undefined,
        fwd,
      );
    }
    switch (resolution.reason) {
      case "error":
        return this.#serve(
          entry,
          request,
          route,
          key,
          "stale-if-error",
          errorStatus(resolution.error),
        );
      case "timeout":
        return this.#serve(entry, request, route, key, "stale-timeout");
      case "backoff":
        return this.#serve(entry, request, route, key, "stale-backoff");
      default:
        return this.#serve(entry, request, route, key, "stale-while-revalidate");
    }
  }

  /**
   * Produce a response out of band (a refresh with a stale copy at hand) and place it like a
   * leader's: the same storability rules, the same freshness from the response, the same
   * handling of its `Vary`.
   */
  async #dispatch(
    request: HttpRequest,
    route: CompiledRoute,
    dispatch: Dispatch,
    owner: object,
    key: string,
    options: LookupOptions,
    context: FactoryContext<StoredRecord>,
  ): Promise<StoredRecord> {
    const previous = context.stale?.value.kind === "response" ? context.stale.value : undefined;
    // The client's conditionals are not ours to forward: the cache needs a full response, or a
    // 304 for the one it holds (RFC 9111 §4.3.1: validate with its validators).
    const headers = validationHeaders(request.headers, previous);
    const requestTime = this.#tiers.clock.now();
    let response = await dispatch({ method: "GET", url: request.url, headers, host: request.host });
    if (previous !== undefined && response.status === 304 && !sameValidator(previous, response)) {
      // A 304 for another representation cannot update ours (RFC 9111 §4.3.4): ask again,
      // unconditionally, for the full response.
      response = await dispatch({
        method: "GET",
        url: request.url,
        headers: validationHeaders(request.headers, undefined),
        host: request.host,
      });
    }
    const responseTime = this.#tiers.clock.now();
    const validated =
      previous !== undefined && response.status === 304 && sameValidator(previous, response);
    // RFC 9111 §4.3.4: a 304 freshens the stored response with its header fields.
    if (validated) response = freshened(previous, response, responseTime);
    const outcome = this.#record(route, request, response, key, { requestTime, responseTime });
    if (outcome instanceof NotStorable) throw new NotStorable(outcome.reason, response, owner);
    // The body did not change: neither do its compressed copies, when this process holds them
    // (with a remote tier they are compressed again, to be stored with the new lifetime).
    const record =
      validated && !this.#tiers.hasRemote
        ? { ...outcome.record, codings: previous.codings, encoded: previous.encoded }
        : outcome.record;
    return this.#place(context, options.primary, key, request, route, record, outcome.freshness);
  }

  /** Compress the response stored under `key` if it is still `record` (by ETag). */
  #compressStored(key: string, record: StoredRecord): void {
    if (record.kind !== "response") return;
    this.#tiers
      .lookupEntry<StoredRecord>(key)
      .then((entry) => {
        if (entry?.value.kind === "response" && entry.value.etag === record.etag) {
          this.#upgrade(key, entry);
        }
      })
      .catch(() => {});
  }

  /** Store the compressed bodies of a just-stored response, when there is anything to gain. */
  #upgrade(key: string, entry: Entry<StoredRecord>): void {
    const record = entry.value;
    const options = this.#compress;
    if (!options || record.kind !== "response" || record.body.length < options.threshold) return;
    if (record.codings.length > 0) return;
    compressRecord(record, options)
      .then(async (compressed) => {
        if (compressed === record) return false;
        // Remote: each coded body is an entry of its own (same life, same tags), written before
        // the response that lists it, so that a hit reads only the body it sends.
        await Promise.all(
          compressed.codings.map((coding) =>
            this.#tiers.storeRemote(variantKey(key, coding), {
              ...entry,
              value: {
                kind: "coded",
                coding,
                etag: compressed.etag,
                length: compressed.body.length,
                body: compressed.encoded[coding]!,
              } satisfies CodedBody,
            }),
          ),
        );
        return this.#tiers.replaceValue<StoredRecord>(key, entry, compressed);
      })
      .catch(() => {});
  }

  #policyFor(request: HttpRequest, route: CompiledRoute): Policy {
    const { path } = splitUrl(request.url);
    return { ...route.policy, tags: [...this.#routeTags(request, route), pathTag(path)] };
  }

  #routeTags(request: HttpRequest, route: CompiledRoute): readonly string[] {
    return typeof route.tags === "function"
      ? validateTags(route.tags(request), `${route.name} cache.tags()`)
      : route.tags;
  }

  #surrogateHeader(request: HttpRequest, route: CompiledRoute): [string, string] | undefined {
    if (!this.#surrogate) return undefined;
    const tags = this.#routeTags(request, route);
    if (tags.length === 0) return undefined;
    return this.#surrogate === "surrogate-key"
      ? ["surrogate-key", tags.join(" ")]
      : ["cache-tag", tags.join(",")];
  }

  /** A stored response for `response`, or why it may not be stored. */
  #record(
    route: CompiledRoute,
    request: HttpRequest,
    response: HttpResponse,
    key: string,
    times: { requestTime: number; responseTime: number },
    report = true,
  ): Outcome {
    return storedResponse(route, request, response, times, {
      maxEntrySize: this.#maxEntrySize,
      oversize: (size) => this.#oversize(key, size, report),
      surrogate: this.#surrogateHeader(request, route),
    });
  }

  /** A response over `maxEntrySize` is passed through: say so (an `oversize` event). */
  #oversize(key: string, size: number | undefined, report: boolean): NotStorable {
    const events = this.#tiers.events;
    if (report && events.wants("oversize")) {
      events.emit("oversize", { key, size, limit: this.#maxEntrySize, source: "http" });
    }
    return new NotStorable("too-large");
  }

  /** The reply for a stored entry: full, HEAD, or 304, with `Age` and `Cache-Status`. */
  #serve(
    entry: Entry<StoredResponse>,
    request: HttpRequest,
    route: CompiledRoute,
    key: string,
    how:
      | "hit"
      | "collapsed"
      | "refreshed"
      | "stale-while-revalidate"
      | "stale-if-error"
      | "stale-timeout"
      | "stale-backoff",
    fwdStatus?: number,
    fwd: "uri-miss" | "vary-miss" | "request" = "uri-miss",
    coded?: StoredRecord,
  ): ReplyPlan {
    const record = entry.value;
    const now = this.#tiers.clock.now();
    const age = Math.max(0, Math.floor((record.age0 + now - entry.createdAt) / 1000));
    const ttl = Math.floor((entry.freshUntil - now) / 1000);
    // A range is of the identity body (RFC 9110 §14.1.2: ranges of the selected representation).
    const ranged = request.headers.range !== undefined && request.method === "GET";
    let coding =
      ranged || record.codings.length === 0
        ? undefined
        : negotiate(headerString(request.headers["accept-encoding"]), record.codings);
    let body = record.body;
    if (coding !== undefined) {
      const found = record.encoded[coding] ?? this.#codedBody(key, record, coding, coded);
      // Without that body at hand (evicted, expired, not yet written), identity is served.
      if (found === undefined) coding = undefined;
      else body = found;
    }
    const etag = codedEtag(record.etag, coding);
    // No content-length: it is the body's length, which every server sets from the body
    // (one header fewer to validate on the hot path).
    const headers: Record<string, string | readonly string[]> = {
      ...record.headers,
      etag,
      age: String(age),
    };
    if (coding !== undefined) headers["content-encoding"] = coding;
    if (route.downstream) headers["cache-control"] = `public, max-age=${Math.max(0, ttl)}`;
    switch (how) {
      case "hit":
        // The common case, without building a fields object.
        if (this.#hitPrefix !== undefined && !this.#exposeKey) {
          if (this.#tiers.events.wants("http")) this.#observe(route, request.method, { hit: true });
          headers["cache-status"] = this.#hitPrefix + ttl;
        } else {
          this.#status(headers, { hit: true, ttl, key }, route, request.method);
        }
        break;
      case "collapsed":
        this.#status(
          headers,
          { fwd, collapsed: true, stored: storesNow(this.#tiers.core), key },
          route,
          request.method,
        );
        break;
      case "refreshed":
        this.#status(
          headers,
          { fwd: "stale", fwdStatus: record.status, stored: storesNow(this.#tiers.core), ttl, key },
          route,
          request.method,
        );
        break;
      case "stale-if-error":
        this.#status(
          headers,
          { fwd: "stale", fwdStatus, ttl, key, detail: how },
          route,
          request.method,
        );
        break;
      case "stale-timeout":
        this.#status(headers, { fwd: "stale", ttl, key, detail: how }, route, request.method);
        break;
      default:
        this.#status(headers, { hit: true, ttl, key, detail: how }, route, request.method);
    }
    const ifNoneMatch = request.headers["if-none-match"];
    if (
      isSuccess(record.status) &&
      (this.#etagMatches(ifNoneMatch, record, coding) ||
        notModifiedSince(request.headers["if-modified-since"], ifNoneMatch, record.lastModified))
    ) {
      return { status: 304, headers: notModifiedHeaders(headers), body: undefined };
    }
    if (ranged && record.status === 200) {
      const range = byteRange(
        headerString(request.headers.range),
        headerString(request.headers["if-range"]),
        body.length,
        record.etag,
        record.lastModified,
      );
      if (range === "unsatisfiable") {
        return {
          status: 416,
          headers: { ...headers, "content-range": `bytes */${body.length}` },
          body: Buffer.alloc(0),
        };
      }
      if (range !== undefined) {
        // A part of the stored response (RFC 9110 §15.3.7), served from its bytes.
        return {
          status: 206,
          headers: {
            ...headers,
            "content-range": `bytes ${range.start}-${range.end}/${body.length}`,
          },
          body: body.subarray(range.start, range.end + 1),
        };
      }
    }
    return { status: record.status, headers, body };
  }

  /** If-None-Match against the tag of the coding served, or of any stored coding. */
  #etagMatches(header: HeaderValue, record: StoredResponse, coding: Coding | undefined): boolean {
    if (header === undefined) return false;
    if (ifNoneMatchHits(header, codedEtag(record.etag, coding))) return true;
    if (coding !== undefined && ifNoneMatchHits(header, record.etag)) return true;
    for (const c of record.codings) {
      if (c !== coding && ifNoneMatchHits(header, codedEtag(record.etag, c))) return true;
    }
    return false;
  }

  /** The `coding` body of `record` stored under `key`: `coded` when given, else from L1. */
  #codedBody(
    key: string,
    record: StoredResponse,
    coding: Coding,
    coded: StoredRecord | undefined,
  ): Buffer | undefined {
    if (coded !== undefined) return codedBodyOf(record, coding, coded);
    const tiers = this.#tiers;
    const held = tiers.freshHeld<StoredRecord>(tiers.key(variantKey(key, coding)));
    return held === undefined ? undefined : codedBodyOf(record, coding, held.entry.value);
  }

  #passThrough(
    response: HttpResponse,
    key: string,
    reason: string,
    fwd: "uri-miss" | "vary-miss" | "request",
    route: CompiledRoute,
    request: HttpRequest,
  ): ReplyPlan {
    const headers: Record<string, string | readonly string[]> = {};
    for (const [name, value] of Object.entries(response.headers)) {
      const lower = name.toLowerCase();
      if (
        value === undefined ||
        lower === "content-length" ||
        lower === "transfer-encoding" ||
        lower === "connection"
      ) {
        continue;
      }
      headers[lower] = Array.isArray(value) ? value.map(String) : String(value);
    }
    this.#status(headers, { fwd, detail: reason, key }, route, request.method);
    const body =
      response.body === undefined
        ? Buffer.alloc(0)
        : typeof response.body === "string"
          ? Buffer.from(response.body)
          : toBuffer(response.body);
    return { status: response.status, headers, body };
  }

  #settle(state: ExchangeState, outcome: StoredRecord | NotStorable): void {
    if (state.settled) return;
    state.settled = true;
    if (outcome instanceof NotStorable) state.reject(outcome);
    else state.resolve(outcome);
  }

  #forward(
    fwd: "method" | "bypass" | "uri-miss" | "vary-miss" | "request",
    detail: string | undefined,
    key: string | undefined,
    route: CompiledRoute,
    request: HttpRequest,
  ): Decision {
    return {
      kind: "forward",
      exchange: undefined,
      cacheStatus: this.#statusHeader({ fwd, detail, key }, route, request.method)["cache-status"],
    };
  }

  #statusHeader(
    fields: CacheStatusFields,
    route: CompiledRoute,
    method: string,
    observe = true,
  ): Record<string, string> {
    const headers: Record<string, string> = {};
    this.#status(headers, fields, route, method, observe);
    return headers;
  }

  /**
   * Set `Cache-Status` on a response, and report how the request was answered (an `http`
   * event). Every request gets exactly one final status, so this is where requests are
   * counted: once each, whatever path they took.
   */
  #status(
    headers: Record<string, string | readonly string[]>,
    fields: CacheStatusFields,
    route: CompiledRoute,
    method: string,
    observe = true,
  ): void {
    if (observe) this.#observe(route, method, fields);
    if (this.#statusName === false) return;
    headers["cache-status"] = formatCacheStatus(this.#statusName, {
      ...fields,
      key: this.#exposeKey ? fields.key : undefined,
    });
  }

  /** Emit the `http` event for a request's final status, when someone listens. */
  #observe(route: CompiledRoute, method: string, fields: CacheStatusFields): void {
    const events = this.#tiers.events;
    if (!events.wants("http")) return;
    const { outcome, reason } = httpOutcome(fields);
    events.emit("http", {
      route: route.name,
      method,
      outcome,
      ...(reason === undefined ? {} : { reason }),
    });
  }
}

/** The `http` event outcome for a request's final `Cache-Status` fields. */
function httpOutcome(f: CacheStatusFields): { outcome: HttpOutcome; reason?: string } {
  const reason = f.detail;
  if (f.hit) return reason === undefined ? { outcome: "hit" } : { outcome: "stale", reason };
  if (f.collapsed) return { outcome: "collapsed" };
  if (f.fwd === "stale") return f.stored ? { outcome: "refreshed" } : { outcome: "stale", reason };
  if (f.stored) return { outcome: "stored" };
  if (f.fwd === "method") return { outcome: "method" };
  if (f.fwd === "bypass") return { outcome: "bypass", reason };
  if (reason === undefined) return { outcome: "miss" };
  if (f.fwd === "request" && (reason === "no-store" || reason === "no-cache")) {
    return { outcome: "bypass", reason };
  }
  if (MISS_DETAILS.has(reason)) return { outcome: "miss", reason };
  return { outcome: "not-storable", reason };
}

/**
 * Whether a response's preconditions are evaluated at all: only a 2xx may become a 304 (RFC
 * 9110 §13.2.1: a server ignores preconditions when the response would be anything else). A
 * stored 404 or 301 is answered as itself, `Location` included.
 */
function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

/** Details of requests that ran the handler without storing, for a reason other than the response. */
const MISS_DETAILS = new Set(["head", "only-if-cached", "vary-changed", "store-unavailable"]);

function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

function fail(error: unknown): { ok: false; error: unknown } {
  return { ok: false, error };
}

/**
 * A vary marker stays fresh as long as a variant it leads to may be used (fresh, stale within
 * a window, or kept to be revalidated): requests follow it to their variant, and a stale
 * variant is refreshed (or revalidated) under its own key, by one request to the origin.
 */
function markerLife(policy: Policy): Freshness {
  return {
    ttl: Math.min(MAX_DURATION_MS, Math.max(1, policy.ttl + Math.max(policy.swr, policy.grace))),
    staleWhileRevalidate: 0,
    staleIfError: 0,
  };
}

function toPolicyPart(f: Freshness) {
  return { ttl: f.ttl, swr: f.staleWhileRevalidate, grace: f.staleIfError };
}

function errorStatus(error: unknown): number | undefined {
  if (error instanceof NotStorable && error.response) return error.response.status;
  return undefined;
}
