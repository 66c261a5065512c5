import { createHash } from "node:crypto";
import { connect, type Socket } from "node:net";
import { Client, Header, Server } from "memjs";
import type { Duration } from "../duration.js";
import { optionalMs } from "../duration.js";
import { InvalidOptionError, StoreError } from "../errors.js";
import type { Store } from "../store.js";
import {
  asBuffer,
  causeText,
  checkKey,
  checkTtl,
  describeValue,
  positiveInteger,
  withTimeout,
} from "./util.js";

/** Options of {@link memcachedStore}. Pass `servers` or `client`, not both. */
export interface MemcachedStoreOptions {
  /**
   * The Memcached servers: `"host:port"`, a comma-separated list, or an array of them; each
   * may carry SASL credentials as `user:password@host:port`. The port defaults to 11211. With
   * several servers a key lives on one of them, chosen by a hash of the key modulo the number
   * of servers (memjs's scheme, not consistent hashing): every instance must list the same
   * servers in the same order. Credentials come from here only (memjs's fallback to the
   * `MEMCACHIER_*`/`MEMCACHE_*` environment variables is turned off).
   * @default "127.0.0.1:11211" (when `client` is not given either)
   */
  servers?: string | readonly string[] | undefined;
  /**
   * An existing memjs `Client` to use instead of creating one. The store never closes it
   * (`disconnect()` only stops using it). Its own retry and timeout settings apply; the store
   * adds a deadline of `connectTimeout + timeout` to every call so that none can hang, but the
   * socket fixes of the store's own client (see the store's documentation) do not apply.
   * Prefer `servers`. Mutually exclusive with `servers`.
   */
  client?: MemcachedClientLike | undefined;
  /**
   * Prepended to every key, so that several applications can share one Memcached. Printable
   * ASCII without spaces, at most 128 characters; may be `""`.
   * @default "cachet:"
   */
  prefix?: string | undefined;
  /**
   * Longest silence of a server while a request waits for its reply, in milliseconds or as a
   * duration string. Past it, the connection is dropped and every request on it rejects with
   * `E_STORE_TIMEOUT` (a paused or overloaded server). The next call opens a new connection.
   * @default 500
   */
  timeout?: Duration | undefined;
  /**
   * Longest wait for a TCP connection (and SASL authentication, with credentials), in
   * milliseconds or as a duration string. A refused connection fails at once.
   * @default 1000
   */
  connectTimeout?: Duration | undefined;
  /**
   * The servers' largest item, in bytes: Memcached's `-I` option (`--max-item-size`). The
   * store accepts values up to 512 bytes less (room for the item header and the key), and
   * rejects larger ones before sending them; see {@link MemcachedStore.maxValueSize}.
   * @default 1048576 (1 MiB, Memcached's default)
   */
  maxItemSize?: number | undefined;
}

/** What the store needs from a memjs client: `Client` from `memjs` 1.x. */
export interface MemcachedClientLike {
  readonly seq: number;
  incrSeq(): void;
  perform(
    key: string,
    request: Buffer,
    seq: number,
    callback?: (error: Error | null, response: MemcachedResponse | null) => void,
    retries?: number,
  ): void;
  close(): void;
}

/** A binary-protocol response as memjs parses it. */
interface MemcachedResponse {
  readonly header: { readonly status: number; readonly cas: Buffer };
  readonly val: Buffer;
}

/**
 * The connection state, for health reporting:
 * - `idle`: not used yet (connections open on first use);
 * - `ready`: the last call reached a server;
 * - `failing`: the last call failed to reach a server (down, refused, silent); the next call
 *   tries again;
 * - `closed`: `disconnect()` was called.
 */
export type MemcachedStoreStatus = "idle" | "ready" | "failing" | "closed";

const DEFAULT_SERVERS = "127.0.0.1:11211";
const DEFAULT_PREFIX = "cachet:";
const DEFAULT_TIMEOUT = 500;
const DEFAULT_CONNECT_TIMEOUT = 1_000;
const DEFAULT_MAX_ITEM_SIZE = 1024 * 1024;
/** Room for Memcached's item header (about 60 bytes) and a 250-byte key. */
const ITEM_OVERHEAD = 512;
const MAX_PREFIX_LENGTH = 128;
/** Memcached's longest key, in bytes. */
export const MEMCACHED_MAX_KEY_LENGTH = 250;
/** Relative expiration times above this many seconds are read as Unix times by Memcached. */
const THIRTY_DAYS_S = 30 * 24 * 3600;

const OP_GET = 0x00;
const OP_SET = 0x01;
const OP_ADD = 0x02;
const OP_DELETE = 0x04;
const STATUS_OK = 0x00;
const STATUS_NOT_FOUND = 0x01;
const STATUS_EXISTS = 0x02;
const STATUS_TEXT: Record<number, string> = {
  3: "value too large for the server (its -I option)",
  4: "invalid arguments",
  5: "item not stored",
  8: "authentication error",
  129: "unknown command",
  130: "out of memory",
  131: "not supported",
  132: "internal error",
  133: "busy",
  134: "temporary failure",
};

/**
 * The expiration time to send to Memcached for a TTL of `ttlMs` milliseconds written at `now`
 * (ms since the epoch).
 *
 * Memcached counts whole seconds on a clock that ticks once a second, so an item set with an
 * expiration of N seconds may expire up to one second early; the store sends
 * `ceil(ttlMs / 1000) + 1` seconds, so that nothing expires before its TTL (it may outlive it
 * by up to about two seconds; cachet entries carry their own freshness, so reads are not
 * affected). Memcached reads a relative time above 30 days as an absolute Unix time (the
 * 30-day rule): longer TTLs are sent as `now + ttl` in Unix seconds, which assumes the
 * server's clock agrees with this machine's. A time past what the protocol's 32 bits can hold
 * becomes `0` (no expiration; the item lives until evicted).
 */
export function memcachedExpiration(ttlMs: number, now: number = Date.now()): number {
  const seconds = Math.ceil(ttlMs / 1000) + 1;
  if (seconds <= THIRTY_DAYS_S) return seconds;
  const absolute = Math.ceil((now + ttlMs) / 1000) + 1;
  return absolute > 0xffff_ffff ? 0 : absolute;
}

/** Printable ASCII except `%` (the escape character): kept as is in a Memcached key. */
const PLAIN_KEY = /^[\x21-\x24\x26-\x7e]*$/;
const HASH_MARK = "%~";
/** A UTF-16 surrogate without its pair: such a string has no UTF-8 form. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const DIGEST_LENGTH = 43; // SHA-256, base64url, no padding

/**
 * The Memcached key for `key` under `prefix`. Memcached keys are at most 250 bytes without
 * spaces or control characters (the text protocol cannot carry them; the binary protocol
 * rejects longer keys and drops the connection). A key made of printable ASCII is used as it
 * is; other bytes (spaces, control characters, UTF-8 of non-ASCII text) and `%` itself are
 * percent-encoded, so the key stays readable and two keys never meet. When the result is too
 * long (or the key is not well-formed UTF-16) the key becomes its readable head, `%~`, and the
 * SHA-256 of the whole key (base64url). `%~` never appears in an encoded key, so a hashed key
 * cannot equal a readable one, and two hashed keys are equal only for the same key.
 */
export function memcachedKey(prefix: string, key: string): string {
  if (PLAIN_KEY.test(key) && prefix.length + key.length <= MEMCACHED_MAX_KEY_LENGTH) {
    return prefix.length + key.length > 0 ? prefix + key : hashedKey(prefix, key, "");
  }
  const wellFormed = !LONE_SURROGATE.test(key);
  const encoded = wellFormed ? percentEncode(key) : "";
  if (wellFormed && prefix.length + encoded.length <= MEMCACHED_MAX_KEY_LENGTH) {
    return prefix + encoded;
  }
  return hashedKey(prefix, key, encoded);
}

function hashedKey(prefix: string, key: string, encoded: string): string {
  // UTF-16 code units, so that even keys with lone surrogates hash apart.
  const digest = createHash("sha256").update(key, "utf16le").digest("base64url");
  let room = MEMCACHED_MAX_KEY_LENGTH - prefix.length - HASH_MARK.length - DIGEST_LENGTH;
  // Never cut an escape (%XX) in two.
  if (encoded[room - 1] === "%") room -= 1;
  else if (encoded[room - 2] === "%") room -= 2;
  return `${prefix}${encoded.slice(0, Math.max(0, room))}${HASH_MARK}${digest}`;
}

function percentEncode(key: string): string {
  let out = "";
  for (const byte of Buffer.from(key, "utf8")) {
    out +=
      byte > 0x20 && byte < 0x7f && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** The fields of memjs's `Server` the store's subclass works with. */
interface ServerInternals {
  _socket: Socket | undefined;
  connected: boolean;
  connectCallbacks: Array<(socket: Socket) => void>;
  errorCallbacks: Record<number, unknown>;
  username: string | undefined;
  password: string | undefined;
  host: string;
  port: number;
  responseHandler(data: Buffer): void;
  error(error: Error): void;
  listSasl(): void;
  once(event: string, listener: () => void): unknown;
  emit(event: string): boolean;
}

/** An error of the store's own connection handling; `timeout` marks a silent server. */
class ConnectionError extends Error {
  readonly timeout: boolean;
  constructor(message: string, timeout = false) {
    super(message);
    this.name = "ConnectionError";
    this.timeout = timeout;
  }
}

/**
 * memjs's `Server` with the store's connection handling. memjs 1.3 leaves a request pending
 * forever when the server closes the connection without an error (a restart, or a request it
 * rejects), lets the `close` of an old socket detach its successor (which then leaks, open),
 * half-closes a timed-out socket instead of destroying it (a paused server then holds it,
 * and the process, open), and measures its timeouts as socket idleness, which the requests
 * it keeps writing reset. This subclass keeps memjs's framing, SASL and callbacks, and
 * replaces the socket handling: one socket at a time; its failure, close or silence fails
 * every pending request at once; silence is measured from the last reply while requests wait.
 */
class StoreServer extends Server {
  readonly #timeoutMs: number;
  readonly #connectTimeoutMs: number;
  #timer: NodeJS.Timeout | undefined;
  /** Since when the server has been silent while requests wait; undefined when none wait. */
  #silentSince: number | undefined;
  #closed = false;

  constructor(
    host: string,
    port: number,
    username: string | undefined,
    password: string | undefined,
    timeoutMs: number,
    connectTimeoutMs: number,
  ) {
    super(host, port, username, password, {
      timeout: timeoutMs / 1000,
      conntimeout: connectTimeoutMs / 1000,
    });
    // Credentials come from the store's options only, not from memjs's environment fallback.
    const self = this as unknown as ServerInternals;
    self.username = username;
    self.password = password;
    this.#timeoutMs = timeoutMs;
    this.#connectTimeoutMs = connectTimeoutMs;
  }

  override sock(sasl: boolean, go: (socket: Socket) => void): void {
    const self = this as unknown as ServerInternals;
    if (this.#closed) {
      self.error(new ConnectionError("the store is disconnected"));
      return;
    }
    if (self._socket) {
      if (!self.connected && !sasl) self.connectCallbacks.push(go);
      else go(self._socket);
      return;
    }
    const socket = connect({ host: self.host, port: self.port });
    self._socket = socket;
    self.connected = false;
    socket.setNoDelay(true);
    const connectTimer = setTimeout(() => {
      this.#fail(
        socket,
        new ConnectionError(`connecting timed out after ${this.#connectTimeoutMs} ms`, true),
      );
    }, this.#connectTimeoutMs);
    connectTimer.unref();
    socket.once("connect", () => {
      if (self._socket !== socket) return;
      self.once("authenticated", () => {
        if (self._socket !== socket) return;
        clearTimeout(connectTimer);
        self.connected = true;
        go(socket);
        const waiting = self.connectCallbacks;
        self.connectCallbacks = [];
        for (const callback of waiting) callback(socket);
      });
      if (self.username && self.password) self.listSasl();
      else self.emit("authenticated");
    });
    socket.on("data", (data: Buffer) => {
      if (self._socket !== socket) return;
      this.#silentSince = Date.now();
      self.responseHandler(data);
      if (isEmpty(self.errorCallbacks)) this.#silentSince = undefined;
    });
    socket.on("error", (error) => {
      clearTimeout(connectTimer);
      this.#fail(socket, error);
    });
    socket.on("close", () => {
      clearTimeout(connectTimer);
      this.#fail(socket, new ConnectionError("the server closed the connection"));
    });
  }

  override write(blob: Uint8Array | string): void {
    this.sock(false, (socket) => {
      socket.write(blob);
      this.#silentSince ??= Date.now();
      this.#arm(this.#timeoutMs);
    });
  }

  /** Drop the connection; pending requests reject. Used by `disconnect()`. */
  override close(): void {
    this.#closed = true;
    const socket = (this as unknown as ServerInternals)._socket;
    if (socket) this.#fail(socket, new ConnectionError("the store is disconnected"));
  }

  #arm(ms: number): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => this.#check(), ms);
    this.#timer.unref();
  }

  #check(): void {
    this.#timer = undefined;
    const self = this as unknown as ServerInternals;
    const socket = self._socket;
    if (!socket || this.#silentSince === undefined) return;
    if (isEmpty(self.errorCallbacks)) {
      this.#silentSince = undefined;
      return;
    }
    const silentFor = Date.now() - this.#silentSince;
    if (silentFor >= this.#timeoutMs) {
      this.#fail(socket, new ConnectionError(`no reply within ${this.#timeoutMs} ms`, true));
    } else {
      this.#arm(this.#timeoutMs - silentFor);
    }
  }

  /** `socket` failed: destroy it and, if it is the current one, fail what waits on it. */
  #fail(socket: Socket, error: Error): void {
    socket.destroy();
    const self = this as unknown as ServerInternals;
    if (self._socket !== socket) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#silentSince = undefined;
    // memjs: forgets the socket and calls every pending request's error callback.
    self.error(error);
  }
}

function isEmpty(record: Record<number, unknown>): boolean {
  for (const _ in record) return false;
  return true;
}

/**
 * A {@link Store} on Memcached through memjs (binary protocol): values as raw bytes, TTLs
 * converted to Memcached's seconds at the boundary (see {@link memcachedExpiration}), keys
 * made safe for Memcached (see {@link memcachedKey}), `setIfAbsent` as `ADD`, `deleteIfEquals`
 * as `GET` then a `DELETE` guarded by the item's CAS value.
 *
 * What Memcached cannot do, the store does not pretend to: there is no pub/sub (a cache on it
 * has no bus, so in-process tiers are kept coherent only by `l1MaxTtl`), no multi-key read in
 * one round trip (the cache's parallel reads are pipelined on one connection per server), and
 * no persistence (a restarted server is empty).
 *
 * It fails fast: connections open on first use, a refused connection fails the call at once,
 * a silent server fails it after `timeout`; calls are never retried or queued while a server
 * is down, and the next call reconnects. Nothing it leaves behind keeps the process alive
 * after {@link disconnect}.
 */
export class MemcachedStore implements Store {
  readonly name = "memcached";
  /** The prefix prepended to every key. */
  readonly prefix: string;
  /** The largest value accepted, in bytes: `maxItemSize` minus 512. */
  readonly maxValueSize: number;
  readonly #client: MemcachedClientLike;
  readonly #owned: boolean;
  readonly #timeout: number;
  readonly #connectTimeout: number;
  readonly #inflight = new Set<Promise<unknown>>();
  #status: MemcachedStoreStatus = "idle";
  #lastError: Error | undefined;

  constructor(options: MemcachedStoreOptions = {}) {
    if (options === null || typeof options !== "object") {
      throw new InvalidOptionError(
        "memcachedStore(options)",
        `expected an object, got ${describeValue(options)}`,
      );
    }
    const { servers, client } = options;
    if (servers !== undefined && client !== undefined) {
      throw new InvalidOptionError(
        "memcachedStore.client",
        "pass either `servers` or `client`, not both",
      );
    }
    this.prefix = validatePrefix(options.prefix ?? DEFAULT_PREFIX);
    this.#timeout = optionalMs(options.timeout, "memcachedStore.timeout", DEFAULT_TIMEOUT, false);
    this.#connectTimeout = optionalMs(
      options.connectTimeout,
      "memcachedStore.connectTimeout",
      DEFAULT_CONNECT_TIMEOUT,
      false,
    );
    const maxItemSize = positiveInteger(
      options.maxItemSize,
      "memcachedStore.maxItemSize",
      DEFAULT_MAX_ITEM_SIZE,
    );
    if (maxItemSize <= ITEM_OVERHEAD) {
      throw new InvalidOptionError(
        "memcachedStore.maxItemSize",
        `must be more than ${ITEM_OVERHEAD} bytes, got ${maxItemSize}`,
      );
    }
    this.maxValueSize = maxItemSize - ITEM_OVERHEAD;
    if (client !== undefined) {
      if (
        client === null ||
        typeof client !== "object" ||
        typeof client.perform !== "function" ||
        typeof client.incrSeq !== "function"
      ) {
        throw new InvalidOptionError("memcachedStore.client", "expected a memjs Client");
      }
      this.#client = client;
      this.#owned = false;
    } else {
      const list = parseServers(servers ?? DEFAULT_SERVERS);
      const instances = list.map(
        (s) =>
          new StoreServer(
            s.host,
            s.port,
            s.username,
            s.password,
            this.#timeout,
            this.#connectTimeout,
          ),
      );
      // One attempt per call (memjs would retry after 200 ms on a timer that holds the
      // process open); no failover (it would move keys between servers, differently in each
      // instance); no logging (the store reports through its errors and `lastError`).
      this.#client = new Client(instances, {
        retries: 1,
        failover: false,
        expires: 0,
        logger: { log: () => {} },
      }) as unknown as MemcachedClientLike;
      this.#owned = true;
    }
  }

  /** The connection state; see {@link MemcachedStoreStatus}. */
  get status(): MemcachedStoreStatus {
    return this.#status;
  }

  /** The last error seen talking to a server, if any (kept after recovery, for reporting). */
  get lastError(): Error | undefined {
    return this.#lastError;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const response = await this.#request("get", OP_GET, key, undefined, undefined);
    if (response.header.status === STATUS_NOT_FOUND) return undefined;
    this.#expect("get", response, STATUS_OK);
    return response.val;
  }

  async set(key: string, value: Uint8Array, ttlMs: number): Promise<void> {
    const response = await this.#request("set", OP_SET, key, value, ttlMs);
    this.#expect("set", response, STATUS_OK);
  }

  /** `ADD`: stores only when the key is absent (or expired). */
  async setIfAbsent(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    const response = await this.#request("setIfAbsent", OP_ADD, key, value, ttlMs);
    if (response.header.status === STATUS_EXISTS) return false;
    this.#expect("setIfAbsent", response, STATUS_OK);
    return true;
  }

  /**
   * `GET` the value and its CAS version; if it equals `value`, `DELETE` with that CAS, which
   * Memcached refuses when the item changed in between. So only the value that was compared
   * is ever deleted.
   */
  async deleteIfEquals(key: string, value: Uint8Array): Promise<boolean> {
    const expected = asBuffer(value, "memcachedStore.deleteIfEquals(value)");
    const current = await this.#request("deleteIfEquals", OP_GET, key, undefined, undefined);
    if (current.header.status === STATUS_NOT_FOUND) return false;
    this.#expect("deleteIfEquals", current, STATUS_OK);
    if (!current.val.equals(expected)) return false;
    const response = await this.#request(
      "deleteIfEquals",
      OP_DELETE,
      key,
      undefined,
      undefined,
      current.header.cas,
    );
    const status = response.header.status;
    if (status === STATUS_NOT_FOUND || status === STATUS_EXISTS) return false;
    this.#expect("deleteIfEquals", response, STATUS_OK);
    return true;
  }

  /**
   * `GET` the value and its CAS version; if it equals `value`, `SET` it again with the new
   * life and that CAS, which Memcached refuses when the item changed in between.
   */
  async extendIfEquals(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    const expected = asBuffer(value, "memcachedStore.extendIfEquals(value)");
    const current = await this.#request("extendIfEquals", OP_GET, key, undefined, undefined);
    if (current.header.status === STATUS_NOT_FOUND) return false;
    this.#expect("extendIfEquals", current, STATUS_OK);
    if (!current.val.equals(expected)) return false;
    const response = await this.#request(
      "extendIfEquals",
      OP_SET,
      key,
      expected,
      ttlMs,
      current.header.cas,
    );
    const status = response.header.status;
    if (status === STATUS_NOT_FOUND || status === STATUS_EXISTS) return false;
    this.#expect("extendIfEquals", response, STATUS_OK);
    return true;
  }

  async delete(key: string): Promise<boolean> {
    const response = await this.#request("delete", OP_DELETE, key, undefined, undefined);
    if (response.header.status === STATUS_NOT_FOUND) return false;
    this.#expect("delete", response, STATUS_OK);
    return true;
  }

  /**
   * Stop using Memcached. Calls in flight get up to `timeout` to finish; then the store's own
   * connections are destroyed (a caller's `client` is left open). Later calls reject.
   */
  async disconnect(): Promise<void> {
    if (this.#status === "closed") return;
    this.#status = "closed";
    if (this.#inflight.size > 0) {
      await withTimeout(
        Promise.allSettled([...this.#inflight]),
        this.#timeout,
        () => new Error("in-flight calls"),
      ).catch(() => {});
    }
    if (this.#owned) this.#client.close();
  }

  /** Send one binary-protocol request and resolve with the server's response. */
  #request(
    operation: string,
    opcode: number,
    key: string,
    value: Uint8Array | undefined,
    ttlMs: number | undefined,
    cas?: Buffer,
  ): Promise<MemcachedResponse> {
    if (this.#status === "closed") {
      return Promise.reject(new StoreError(this.name, operation, "the store is disconnected"));
    }
    let request: Buffer;
    let safeKey: string;
    try {
      safeKey = memcachedKey(this.prefix, checkKey(key, `memcachedStore.${operation}(key)`));
      let extras: Buffer | undefined;
      let body: Buffer | undefined;
      if (value !== undefined) {
        body = asBuffer(value, `memcachedStore.${operation}(value)`);
        if (body.byteLength > this.maxValueSize) {
          return Promise.reject(
            new StoreError(
              this.name,
              operation,
              `value of ${body.byteLength} bytes exceeds maxValueSize (${this.maxValueSize} bytes; set maxItemSize to the servers' -I)`,
            ),
          );
        }
        extras = Buffer.alloc(8); // flags (0), then the expiration
        extras.writeUInt32BE(
          memcachedExpiration(checkTtl(ttlMs, `memcachedStore.${operation}(ttlMs)`)),
          4,
        );
      }
      this.#client.incrSeq();
      request = encodeRequest(opcode, safeKey, extras, body, this.#client.seq, cas);
    } catch (error) {
      return Promise.reject(error);
    }
    const seq = this.#client.seq;
    const pending = new Promise<MemcachedResponse>((resolve, reject) => {
      this.#client.perform(safeKey, request, seq, (error, response) => {
        if (error || !response) {
          const cause = error ?? new Error("no response");
          this.#failed(cause);
          reject(
            new StoreError(this.name, operation, causeText(cause), {
              cause,
              ...(cause instanceof ConnectionError && cause.timeout
                ? { code: "E_STORE_TIMEOUT" as const }
                : {}),
            }),
          );
          return;
        }
        if (this.#status !== "closed") this.#status = "ready";
        resolve(response);
      });
    });
    const bounded = this.#owned
      ? pending
      : withTimeout(pending, this.#connectTimeout + this.#timeout, () => {
          const error = new StoreError(
            this.name,
            operation,
            `no reply within ${this.#connectTimeout + this.#timeout} ms`,
            { code: "E_STORE_TIMEOUT" },
          );
          this.#failed(error);
          return error;
        });
    this.#inflight.add(bounded);
    const forget = () => this.#inflight.delete(bounded);
    bounded.then(forget, forget);
    return bounded;
  }

  #failed(error: unknown): void {
    this.#lastError = error instanceof Error ? error : new Error(String(error));
    if (this.#status !== "closed") this.#status = "failing";
  }

  /** A status other than `expected` (and the ones the caller handled) is an error. */
  #expect(operation: string, response: MemcachedResponse, expected: number): void {
    const status = response.header.status;
    if (status === expected) return;
    const text = STATUS_TEXT[status] ?? `status 0x${status.toString(16)}`;
    const detail = response.val.length > 0 ? `: ${response.val.toString("latin1", 0, 200)}` : "";
    const error = new StoreError(this.name, operation, `Memcached answered ${text}${detail}`);
    this.#lastError = error;
    throw error;
  }
}

/**
 * A Memcached store. Connects on first use.
 *
 * @example
 * import { createCache } from "cachet";
 * import { memcachedStore } from "cachet/memcached";
 *
 * const cache = createCache({
 *   store: memcachedStore({ servers: process.env.MEMCACHED_URL }),
 *   l1: true,
 *   l1MaxTtl: "5s", // no pub/sub on Memcached: this bounds how stale another instance's L1 can be
 * });
 */
export function memcachedStore(options?: MemcachedStoreOptions): MemcachedStore {
  return new MemcachedStore(options);
}

/** A binary-protocol request: header (with `cas` when given), extras, key, value. */
function encodeRequest(
  opcode: number,
  key: string,
  extras: Buffer | undefined,
  value: Buffer | undefined,
  opaque: number,
  cas: Buffer | undefined,
): Buffer {
  const keyBytes = Buffer.from(key, "latin1"); // the key is ASCII (memcachedKey)
  const extrasLength = extras?.length ?? 0;
  const valueLength = value?.length ?? 0;
  const header = Header.toBuffer({
    magic: 0x80,
    opcode,
    keyLength: keyBytes.length,
    extrasLength,
    totalBodyLength: extrasLength + keyBytes.length + valueLength,
    opaque,
    ...(cas ? { cas } : {}),
  });
  const parts = [header];
  if (extras) parts.push(extras);
  parts.push(keyBytes);
  if (value) parts.push(value);
  return Buffer.concat(parts, 24 + extrasLength + keyBytes.length + valueLength);
}

interface ServerAddress {
  host: string;
  port: number;
  username: string | undefined;
  password: string | undefined;
}

const SERVER = /^(?:([^:@]+):([^@]*)@)?([A-Za-z0-9.-]+)(?::(\d{1,5}))?$/;

function parseServers(servers: unknown): ServerAddress[] {
  const option = "memcachedStore.servers";
  let list: unknown[];
  if (typeof servers === "string") list = servers.split(",");
  else if (Array.isArray(servers)) list = servers;
  else {
    throw new InvalidOptionError(
      option,
      `expected "host:port", a comma-separated list or an array of them, got ${describeValue(servers)}`,
    );
  }
  if (list.length === 0) throw new InvalidOptionError(option, "expected at least one server");
  return list.map((entry) => {
    const text = typeof entry === "string" ? entry.trim() : undefined;
    const match = text === undefined ? null : SERVER.exec(text);
    const port = match?.[4] === undefined ? 11211 : Number(match[4]);
    if (!match || !(port >= 1 && port <= 65_535)) {
      throw new InvalidOptionError(
        option,
        `expected [user:password@]host[:port] with a port from 1 to 65535, got ${describeValue(entry)}`,
      );
    }
    return { host: match[3]!, port, username: match[1], password: match[2] };
  });
}

function validatePrefix(prefix: unknown): string {
  if (typeof prefix !== "string") {
    throw new InvalidOptionError(
      "memcachedStore.prefix",
      `expected a string, got ${describeValue(prefix)}`,
    );
  }
  if (!PLAIN_KEY.test(prefix.replaceAll("%", "!")) || prefix.length > MAX_PREFIX_LENGTH) {
    throw new InvalidOptionError(
      "memcachedStore.prefix",
      `expected at most ${MAX_PREFIX_LENGTH} printable ASCII characters without spaces, got ${describeValue(prefix)}`,
    );
  }
  return prefix;
}
