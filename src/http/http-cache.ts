import type { Cache, FactoryContext, Resolution } from "../cache.js";
import type { Entry } from "../entry.js";
import { CachetError, InvalidOptionError } from "../errors.js";
import { digest } from "../keys.js";
import type { EntryOptions, Policy } from "../options.js";
import { validateTags } from "../options.js";
import { formatCacheStatus } from "./cache-status.js";
import { ifNoneMatchHits, notModifiedSince, strongEtag } from "./conditional.js";
import type { HeaderValue } from "./headers.js";
import { hasCookie, headerString, parseCacheControl, parseVary } from "./headers.js";
import { requestKey, shorten, splitUrl } from "./key.js";
import type { StoredResponse } from "./record.js";
import { NOT_MODIFIED_HEADERS, responseSerializer } from "./record.js";

/** A request as the HTTP cache sees it; adapters translate their framework's request. */
export interface HttpRequest {
  readonly method: string;
  /** The request target as received: path and query, percent-encoding untouched. */
  readonly url: string;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, HeaderValue>>;
}

/** A response as the handler produced it. */
export interface HttpResponse {
  readonly status: number;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, HeaderValue>>;
  /** The body, or `undefined` when it is a stream the adapter did not buffer. */
  readonly body: Uint8Array | string | undefined;
}

/**
 * What an adapter must send. `body` is `undefined` for 304; for HEAD it is the GET body, which
 * the server drops while keeping its length (Node's HTTP server does so for HEAD).
 */
export interface ReplyPlan {
  readonly status: number;
  readonly headers: Record<string, string | readonly string[]>;
  readonly body: Buffer | undefined;
}

/**
 * Runs a request through the application again, out of band, and captures the response.
 * Adapters provide it (Fastify `inject`, …) so that stale-while-revalidate and
 * stale-if-error can refresh an entry when no client is waiting for the handler.
 */
export type Dispatch = (request: HttpRequest) => Promise<HttpResponse>;

/** Per-route options: `config: { cache: { ... } }` on a Fastify route, and so on. */
export interface RouteCacheOptions extends EntryOptions {
  /**
   * Request headers that select a different response (`["accept-language"]`). They become
   * part of the key. Listing `authorization` (or giving a `key` function) makes the route
   * per-user, which allows caching responses to authenticated requests.
   * @default []
   */
  vary?: readonly string[];
  /**
   * Build the key yourself from the request (then you are responsible for keying on
   * everything that changes the response). Long keys are hashed.
   */
  key?: (request: HttpRequest) => string;
  /**
   * Declare the response the same for every user, so that responses to requests with
   * `Authorization` or a session cookie may be stored and shared.
   * @default false
   */
  public?: boolean;
  /** Statuses that may be stored for this route. @default the cache's `statuses` */
  statuses?: readonly number[];
  /** Tags for the stored responses, or a function computing them from the request. */
  tags?: readonly string[];
}

/** Options of {@link HttpCache}. */
export interface HttpCacheOptions {
  /** The cache to store responses in (they go to its `http` namespace). */
  cache: Cache;
  /** Namespace for response entries, so `clear()` on it drops only responses. @default "http" */
  namespace?: string;
  /** Statuses that may be stored. @default [200] */
  statuses?: readonly number[];
  /** Largest body stored, in bytes; larger responses pass through unstored. @default 5 MiB */
  maxEntrySize?: number;
  /**
   * Response headers replayed on a hit, besides the defaults (content-type, content-language,
   * content-encoding, content-disposition, cache-control, expires, last-modified, etag, link,
   * location, vary, x-content-type-options). Never `set-cookie`.
   */
  headers?: readonly string[];
  /**
   * Cookie names that identify a user session: requests carrying one are treated like requests
   * with `Authorization` (not served from or stored to the shared cache unless the route keys
   * on the user or is public).
   * @default []
   */
  sessionCookies?: readonly string[];
  /** The cache name in `Cache-Status` (RFC 9211), or `false` to omit the header. @default "cachet" */
  cacheStatus?: string | false;
  /** Add `key=` to `Cache-Status` (exposes cache keys to clients: off by default). @default false */
  exposeKey?: boolean;
}

/** A route's options, validated and resolved once at registration. */
export interface CompiledRoute {
  readonly name: string;
  readonly policy: Policy;
  readonly vary: readonly string[];
  readonly key: ((request: HttpRequest) => string) | undefined;
  /** The key separates users, so authenticated requests may be cached. */
  readonly perUser: boolean;
  readonly public: boolean;
  readonly statuses: ReadonlySet<number>;
  readonly tags: readonly string[];
}

/** State of a request that leads the production of a response for its key. */
export interface Exchange {
  readonly key: string;
  readonly route: CompiledRoute;
  readonly request: HttpRequest;
  /** @internal */
  settle(record: StoredResponse | NotStorable): void;
}

const DEFAULT_HEADERS = [
  "content-type",
  "content-language",
  "content-encoding",
  "content-disposition",
  "cache-control",
  "expires",
  "last-modified",
  "etag",
  "link",
  "location",
  "vary",
  "x-content-type-options",
];

/** Never stored or replayed, whatever the allow-list says. */
const NEVER_STORED = new Set([
  "set-cookie",
  "date",
  "age",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
  "proxy-connection",
  "trailer",
  "te",
  "content-length",
  "cache-status",
]);

/** Why a response was not stored; the reason goes to `Cache-Status` as `detail`. */
export class NotStorable extends CachetError {
  readonly reason: string;
  /**
   * The response, when it came from an out-of-band dispatch: it may be sent to the request
   * that dispatched it (`owner`) and to no other, since it may be personal.
   */
  readonly response: HttpResponse | undefined;
  readonly owner: object | undefined;

  constructor(reason: string, response?: HttpResponse, owner?: object) {
    super("E_FACTORY_ERROR", `cachet: response not stored (${reason})`);
    this.reason = reason;
    this.response = response;
    this.owner = owner;
  }
}

const LEAD = Symbol("lead");

/** Reasons for which requests that waited on a failed leader coalesce again. */
const RETRYABLE = /^(status-\d+|aborted|leader-failed)$/;

/**
 * The framework-agnostic HTTP response cache. Adapters call {@link handle} when a request
 * arrives and {@link complete} when the handler's response is ready; everything about keys,
 * storability, freshness, conditional requests and `Cache-Status` lives here.
 */
export class HttpCache {
  readonly cache: Cache;
  readonly #statuses: ReadonlySet<number>;
  readonly #maxEntrySize: number;
  readonly #allowed: ReadonlySet<string>;
  readonly #sessionCookies: readonly string[];
  readonly #statusName: string | false;
  readonly #exposeKey: boolean;

  constructor(options: HttpCacheOptions) {
    if (!options || typeof options !== "object" || typeof options.cache?.namespace !== "function") {
      throw new InvalidOptionError("cache", "expected a cache from createCache()");
    }
    this.cache = options.cache.namespace(options.namespace ?? "http", {
      serializer: responseSerializer,
    });
    this.#statuses = statusSet(options.statuses ?? [200], "statuses");
    this.#maxEntrySize = options.maxEntrySize ?? 5 * 1024 * 1024;
    if (!Number.isSafeInteger(this.#maxEntrySize) || this.#maxEntrySize <= 0) {
      throw new InvalidOptionError(
        "maxEntrySize",
        `expected a positive integer of bytes, got ${options.maxEntrySize}`,
      );
    }
    const extra = (options.headers ?? []).map((h) => h.toLowerCase());
    for (const h of extra) {
      if (NEVER_STORED.has(h)) {
        throw new InvalidOptionError(
          "headers",
          `"${h}" is never stored (hop-by-hop, per-response or personal)`,
        );
      }
    }
    this.#allowed = new Set([...DEFAULT_HEADERS, ...extra]);
    this.#sessionCookies = [...(options.sessionCookies ?? [])];
    const name = options.cacheStatus ?? "cachet";
    if (name !== false && (typeof name !== "string" || !/^[A-Za-z0-9_.-]+$/.test(name))) {
      throw new InvalidOptionError(
        "cacheStatus",
        `expected a token such as "cachet" or false, got ${JSON.stringify(name)}`,
      );
    }
    this.#statusName = name;
    this.#exposeKey = options.exposeKey === true;
  }

  /** Validate a route's options once, at registration. `name` identifies the route in errors. */
  route(options: RouteCacheOptions | true, name: string): CompiledRoute {
    const o: RouteCacheOptions = options === true ? {} : options;
    if (o === null || typeof o !== "object") {
      throw new InvalidOptionError(`${name} cache`, "expected true or an options object");
    }
    const where = `${name} cache`;
    const policy = this.cache.policy(o, where);
    const vary = [...new Set((o.vary ?? []).map((h) => String(h).toLowerCase()))].sort();
    if (o.key !== undefined && typeof o.key !== "function") {
      throw new InvalidOptionError(`${where}.key`, "expected a function (request) => string");
    }
    return {
      name,
      policy,
      vary,
      key: o.key,
      perUser: o.key !== undefined || vary.includes("authorization"),
      public: o.public === true,
      statuses: o.statuses ? statusSet(o.statuses, `${where}.statuses`) : this.#statuses,
      tags: o.tags ? validateTags(o.tags, `${where}.tags`) : [],
    };
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
      return this.#forward(undefined, "method", undefined);
    }
    if (!route.perUser && !route.public && this.#isPersonal(request)) {
      return this.#forward(undefined, "bypass", "personal-request");
    }
    const key = this.#key(request, route);
    const fresh = this.cache.peek<StoredResponse>(key);
    if (fresh !== undefined)
      return { kind: "respond", reply: this.#serve(fresh, request, key, "hit") };
    if (method === "HEAD") return this.#headMiss(request, key);
    return this.#lookup(request, route, key, dispatch, true);
  }

  /**
   * The handler's response for a request that led its key: store it when it may be stored,
   * hand it to the waiting requests, and return the headers to add to it.
   */
  complete(exchange: Exchange, response: HttpResponse): Record<string, string> {
    const outcome = this.#record(exchange.route, response);
    exchange.settle(outcome);
    const headers: Record<string, string> = {};
    if (outcome instanceof NotStorable) {
      this.#status(headers, { fwd: "uri-miss", detail: outcome.reason, key: exchange.key });
      return headers;
    }
    if (response.headers.etag === undefined) headers.etag = outcome.etag;
    this.#status(headers, { fwd: "uri-miss", stored: true, key: exchange.key });
    return headers;
  }

  /** The request ended without a response (client gone, handler crashed): release waiters. */
  abandon(exchange: Exchange): void {
    exchange.settle(new NotStorable("aborted"));
  }

  /** Expire the stored responses of these paths (every query and variant), one write each. */
  async invalidatePaths(paths: readonly string[]): Promise<void> {
    await this.cache.invalidateReservedTags(paths.map((p) => pathTag(splitUrl(p).path)));
  }

  /** Expire the stored responses carrying any of these route tags. */
  async invalidateTags(tags: readonly string[], options?: { soft?: boolean }): Promise<void> {
    await this.cache.invalidateTags(tags, options);
  }

  // ---- internals ---------------------------------------------------------------------------

  #isPersonal(request: HttpRequest): boolean {
    return (
      request.headers.authorization !== undefined ||
      hasCookie(request.headers.cookie, this.#sessionCookies)
    );
  }

  #key(request: HttpRequest, route: CompiledRoute): string {
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
    const { path, query } = splitUrl(request.url);
    return requestKey(path, query, route.vary, request.headers);
  }

  /** HEAD is answered from a stored GET; a HEAD miss runs the handler and stores nothing. */
  async #headMiss(request: HttpRequest, key: string): Promise<Decision> {
    const entry = await this.cache.lookupEntry<StoredResponse>(key);
    if (entry) return { kind: "respond", reply: this.#serve(entry, request, key, "hit") };
    return this.#forward(undefined, "uri-miss", "head", key);
  }

  async #lookup(
    request: HttpRequest,
    route: CompiledRoute,
    key: string,
    dispatch: Dispatch | undefined,
    mayRetry: boolean,
  ): Promise<Decision> {
    let exchange: Exchange | undefined;
    let becameLeader!: () => void;
    const leading = new Promise<typeof LEAD>((resolve) => {
      becameLeader = () => resolve(LEAD);
    });
    let dispatched = false;
    const self = {};
    const policy = this.#policyFor(request, route);
    const factory = (context: FactoryContext<StoredResponse>): Promise<StoredResponse> => {
      // With a stale copy at hand, or behind one already served, no client waits on this
      // handler run: produce it out of band so that timeouts and grace can apply.
      if ((context.background || context.stale !== undefined) && dispatch) {
        dispatched = !context.background;
        return this.#dispatch(request, route, dispatch, self);
      }
      return new Promise<StoredResponse>((resolve, reject) => {
        exchange = makeExchange(key, route, request, resolve, reject);
        becameLeader();
      });
    };
    const resolution = this.cache.resolve<StoredResponse>(key, factory, policy);
    resolution.catch(() => {});
    const first = await Promise.race([resolution.then(ok, fail), leading]);
    if (first === LEAD) return { kind: "forward", exchange, cacheStatus: undefined };
    if (first.ok)
      return { kind: "respond", reply: this.#resolved(first.value, request, key, dispatched) };
    const error = first.error;
    if (error instanceof NotStorable && error.response && error.owner === self) {
      // Our own out-of-band run produced a response that may not be shared: send it to this
      // client only.
      return { kind: "respond", reply: this.#passThrough(error.response, key, error.reason) };
    }
    const reason = error instanceof NotStorable ? error.reason : "leader-failed";
    // The leader's run failed (an error status, a crash, a client gone): the waiting requests
    // coalesce once more behind a new leader rather than all hitting the origin at once.
    if (mayRetry && RETRYABLE.test(reason))
      return this.#lookup(request, route, key, dispatch, false);
    // The leader's response may not be shared (personal, too large, …): run our own handler.
    return this.#forward(undefined, "uri-miss", reason, key);
  }

  #resolved(
    resolution: Resolution<StoredResponse>,
    request: HttpRequest,
    key: string,
    dispatched: boolean,
  ): ReplyPlan {
    const { entry, outcome } = resolution;
    if (outcome === "hit") return this.#serve(entry, request, key, "hit");
    if (outcome === "miss")
      return this.#serve(entry, request, key, dispatched ? "refreshed" : "collapsed");
    switch (resolution.reason) {
      case "error":
        return this.#serve(entry, request, key, "stale-if-error", errorStatus(resolution.error));
      case "timeout":
        return this.#serve(entry, request, key, "stale-timeout");
      case "backoff":
        return this.#serve(entry, request, key, "stale-backoff");
      default:
        return this.#serve(entry, request, key, "stale-while-revalidate");
    }
  }

  async #dispatch(
    request: HttpRequest,
    route: CompiledRoute,
    dispatch: Dispatch,
    owner: object,
  ): Promise<StoredResponse> {
    const response = await dispatch({ method: "GET", url: request.url, headers: request.headers });
    const record = this.#record(route, response);
    if (record instanceof NotStorable) throw new NotStorable(record.reason, response, owner);
    return record;
  }

  #policyFor(request: HttpRequest, route: CompiledRoute): Policy {
    const { path } = splitUrl(request.url);
    return { ...route.policy, tags: [...route.policy.tags, ...route.tags, pathTag(path)] };
  }

  /** A stored response for `response`, or why it may not be stored. */
  #record(route: CompiledRoute, response: HttpResponse): StoredResponse | NotStorable {
    const { status, headers, body } = response;
    if (!route.statuses.has(status)) return new NotStorable(`status-${status}`);
    if (headers["set-cookie"] !== undefined) return new NotStorable("set-cookie");
    // RFC 9111 §5.2.2.5 (no-store), §5.2.2.7 (private); no-cache (§5.2.2.4) would need a
    // revalidation on every hit, which a server-side cache of its own app gains nothing from.
    const cc = parseCacheControl(headers["cache-control"]);
    if (cc.has("no-store")) return new NotStorable("no-store");
    if (cc.has("private")) return new NotStorable("private");
    if (cc.has("no-cache")) return new NotStorable("no-cache");
    const vary = parseVary(headers.vary);
    if (vary[0] === "*") return new NotStorable("vary-star");
    // RFC 9111 §4.1: a response may only be reused for requests that match on its Vary
    // headers; the key covers the route's declared ones, so anything else is not stored.
    for (const name of vary) {
      if (!route.vary.includes(name) && !route.key) return new NotStorable("vary");
    }
    if (body === undefined) return new NotStorable("stream");
    const bytes = typeof body === "string" ? Buffer.from(body, "utf8") : toBuffer(body);
    if (bytes.length > this.#maxEntrySize) return new NotStorable("too-large");
    const kept: Record<string, string | readonly string[]> = {};
    for (const [name, value] of Object.entries(headers)) {
      const lower = name.toLowerCase();
      if (value === undefined || NEVER_STORED.has(lower) || !this.#allowed.has(lower)) continue;
      kept[lower] = Array.isArray(value) ? value.map(String) : String(value);
    }
    const etag = typeof kept.etag === "string" ? kept.etag : strongEtag(bytes);
    kept.etag = etag;
    kept["content-length"] = String(bytes.length);
    const lastModified =
      typeof kept["last-modified"] === "string" ? Date.parse(kept["last-modified"]) : Number.NaN;
    return {
      status,
      headers: kept,
      body: bytes,
      etag,
      lastModified: Number.isNaN(lastModified) ? undefined : lastModified,
    };
  }

  /** The reply for a stored entry: full, HEAD, or 304, with `Age` and `Cache-Status`. */
  #serve(
    entry: Entry<StoredResponse>,
    request: HttpRequest,
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
  ): ReplyPlan {
    const record = entry.value;
    const now = this.cache.clock.now();
    const age = Math.max(0, Math.floor((now - entry.createdAt) / 1000));
    const ttl = Math.floor((entry.freshUntil - now) / 1000);
    const headers: Record<string, string | readonly string[]> = {
      ...record.headers,
      age: String(age),
    };
    switch (how) {
      case "hit":
        this.#status(headers, { hit: true, ttl, key });
        break;
      case "collapsed":
        this.#status(headers, { fwd: "uri-miss", collapsed: true, stored: true, key });
        break;
      case "refreshed":
        this.#status(headers, { fwd: "stale", fwdStatus: record.status, stored: true, ttl, key });
        break;
      case "stale-if-error":
        this.#status(headers, { fwd: "stale", fwdStatus, ttl, key, detail: how });
        break;
      case "stale-timeout":
        this.#status(headers, { fwd: "stale", ttl, key, detail: how });
        break;
      default:
        this.#status(headers, { hit: true, ttl, key, detail: how });
    }
    if (
      ifNoneMatchHits(request.headers["if-none-match"], record.etag) ||
      notModifiedSince(
        request.headers["if-modified-since"],
        request.headers["if-none-match"],
        record.lastModified,
      )
    ) {
      const notModified: Record<string, string | readonly string[]> = {};
      for (const name of NOT_MODIFIED_HEADERS) {
        const v = headers[name];
        if (v !== undefined) notModified[name] = v;
      }
      notModified.age = headers.age!;
      if (headers["cache-status"] !== undefined)
        notModified["cache-status"] = headers["cache-status"];
      return { status: 304, headers: notModified, body: undefined };
    }
    return { status: record.status, headers, body: record.body };
  }

  #passThrough(response: HttpResponse, key: string, reason: string): ReplyPlan {
    const headers: Record<string, string | readonly string[]> = {};
    for (const [name, value] of Object.entries(response.headers)) {
      const lower = name.toLowerCase();
      if (
        value === undefined ||
        lower === "content-length" ||
        lower === "transfer-encoding" ||
        lower === "connection"
      )
        continue;
      headers[lower] = Array.isArray(value) ? value.map(String) : String(value);
    }
    this.#status(headers, { fwd: "uri-miss", detail: reason, key });
    const body =
      response.body === undefined
        ? Buffer.alloc(0)
        : typeof response.body === "string"
          ? Buffer.from(response.body)
          : toBuffer(response.body);
    return { status: response.status, headers, body };
  }

  #forward(
    exchange: Exchange | undefined,
    fwd: "method" | "bypass" | "uri-miss",
    detail: string | undefined,
    key?: string,
  ): Decision {
    if (this.#statusName === false) return { kind: "forward", exchange, cacheStatus: undefined };
    const headers: Record<string, string> = {};
    this.#status(headers, { fwd, detail, key });
    return { kind: "forward", exchange, cacheStatus: headers["cache-status"] };
  }

  #status(
    headers: Record<string, string | readonly string[]>,
    fields: Parameters<typeof formatCacheStatus>[1],
  ): void {
    if (this.#statusName === false) return;
    headers["cache-status"] = formatCacheStatus(this.#statusName, {
      ...fields,
      key: this.#exposeKey ? fields.key : undefined,
    });
  }
}

/** What {@link HttpCache.handle} decided. */
export type Decision =
  | { readonly kind: "respond"; readonly reply: ReplyPlan }
  | {
      readonly kind: "forward";
      /** Present when this request leads its key: call `complete` (or `abandon`) with it. */
      readonly exchange: Exchange | undefined;
      /** `Cache-Status` to add to the handler's response when there is no exchange. */
      readonly cacheStatus: string | undefined;
    };

function makeExchange(
  key: string,
  route: CompiledRoute,
  request: HttpRequest,
  resolve: (record: StoredResponse) => void,
  reject: (error: NotStorable) => void,
): Exchange {
  let settled = false;
  return {
    key,
    route,
    request,
    settle(outcome) {
      if (settled) return;
      settled = true;
      if (outcome instanceof NotStorable) reject(outcome);
      else resolve(outcome);
    },
  };
}

function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

function fail(error: unknown): { ok: false; error: unknown } {
  return { ok: false, error };
}

/** The tag every stored response of a path carries, so that the path can be invalidated. */
export function pathTag(path: string): string {
  return path.length > 200 ? `@path:#${digest(path)}` : `@path:${path}`;
}

function errorStatus(error: unknown): number | undefined {
  if (error instanceof NotStorable && error.response) return error.response.status;
  return undefined;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function statusSet(statuses: readonly number[], option: string): ReadonlySet<number> {
  if (!Array.isArray(statuses) || statuses.length === 0) {
    throw new InvalidOptionError(option, "expected a non-empty array of HTTP status codes");
  }
  for (const s of statuses) {
    if (!Number.isInteger(s) || s < 200 || s > 599) {
      throw new InvalidOptionError(
        option,
        `expected status codes between 200 and 599, got ${JSON.stringify(s)}`,
      );
    }
  }
  return new Set(statuses);
}

/** Re-exported for adapters. */
export { headerString };
