import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import type {
  RedisArgument,
  RedisClientOptions,
  RedisFunctions,
  RedisModules,
  RedisScripts,
  RespVersions,
} from "redis";
import { DeadlineQueue } from "../deadlines.js";
import type { Duration } from "../duration.js";
import { optionalMs } from "../duration.js";
import { CachetError, InvalidOptionError, MissingPeerError, StoreError } from "../errors.js";
import { LEASE_LENGTH, LEASE_MAGIC } from "../lease.js";
import type { Store, StoreEntry } from "../store.js";
import { rejectUnknownOptions } from "../validate.js";
import {
  BUFFER_REPLIES,
  type BufferReplies,
  ClusterClient,
  IoRedisClient,
  type IoRedisLike,
  indexesBySlot,
  isIoRedis,
  isRedisCluster,
  isRedisSentinel,
  type MultiHostUrl,
  parseMultiHostUrl,
  type RedisClusterLike,
  type RedisNodeAddress,
  type RedisSentinelLike,
  SentinelClient,
} from "./redis-topology.js";

export { keySlot } from "./redis-topology.js";
export type { IoRedisLike, RedisClusterLike, RedisNodeAddress, RedisSentinelLike };

/**
 * node-redis, loaded on first need rather than imported: a store on a caller's ioredis client
 * never needs it, so `cachet/redis` works without `redis` installed.
 */
let nodeRedisModule: typeof import("redis") | undefined;
function nodeRedis(): typeof import("redis") {
  if (nodeRedisModule) return nodeRedisModule;
  try {
    nodeRedisModule = createRequire(import.meta.url)("redis") as typeof import("redis");
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== "MODULE_NOT_FOUND") throw cause;
    throw new MissingPeerError("redis", "redisStore", {
      cause,
      alternative: "or pass your own ioredis client as `client`",
    });
  }
  return nodeRedisModule;
}

/**
 * What the store needs from a node-redis client. Any standalone client made by `createClient()`
 * (from `redis` or `@redis/client`, v5 or v6) fits, whatever its modules, RESP version or
 * type mapping.
 */
export interface RedisClientLike {
  readonly isOpen: boolean;
  readonly isReady: boolean;
  readonly options?: { readonly keyPrefix?: RedisArgument | undefined } | undefined;
  connect(): Promise<unknown>;
  withTypeMapping(mapping: BufferReplies): RedisCommander;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  off(event: string, listener: (...args: unknown[]) => void): unknown;
  close(): Promise<void>;
  destroy(): void;
  /** A new client with the same options (used for the subscriber connection of the bus). */
  duplicate?(): RedisClientLike;
  subscribe?(
    channels: string,
    listener: (message: Buffer, channel: Buffer) => unknown,
    bufferMode: true,
  ): Promise<void>;
  unsubscribe?(channels?: string): Promise<void>;
}

/** Handlers of one bus channel. */
interface Subscription {
  readonly onMessage: (message: Buffer) => void;
  readonly onReset: () => void;
  readonly onLost: (() => void) | undefined;
}

/** A client (or a type-mapped view of one) that can send raw commands. */
export interface RedisCommander {
  sendCommand<T = unknown>(args: ReadonlyArray<RedisArgument>): Promise<T>;
}

/**
 * node-redis options passed through to the client the store creates (TLS, credentials,
 * database, `pingInterval`, socket options such as `keepAlive`, …). The options the store
 * manages itself are left out: the key prefix (`prefix`), the offline queue (always off, so
 * that commands fail fast while disconnected), reconnection (`maxReconnectDelay`) and the
 * connect timeout (`connectTimeout`).
 */
export type RedisStoreClientOptions = UndefinedAllowed<
  Omit<
    RedisClientOptions<RedisModules, RedisFunctions, RedisScripts, RespVersions>,
    "url" | "keyPrefix" | "disableOfflineQueue" | "commandOptions"
  >
>;

/**
 * node-redis's options with an explicit `undefined` accepted wherever a value may be left out, so
 * that `{ password: process.env.REDIS_PASSWORD }` compiles under `exactOptionalPropertyTypes`.
 */
type UndefinedAllowed<T> = { [K in keyof T]: T[K] | undefined };

/**
 * One node of a cluster to discover the others from, as node-redis takes it: `{ url }` or
 * `{ socket: { host, port } }`. Credentials and TLS for every node go in `clientOptions`.
 */
export type RedisStoreRootNode =
  | { readonly url: string }
  | { readonly socket: { readonly host?: string; readonly port?: number } };

/**
 * Redis Cluster through node-redis's `createCluster()`. The store adds what it manages to the
 * node connections (no offline queue, its reconnection backoff and connect timeout), and
 * applies `clientOptions` to every node (credentials, TLS, `RESP`…).
 */
export interface RedisStoreClusterOptions {
  /**
   * Some nodes of the cluster, used to discover the others (three is plenty; a node that is
   * down is skipped).
   */
  rootNodes: ReadonlyArray<RedisStoreRootNode>;
  /**
   * Read (`GET`, `MGET`) from replicas too. Replicas lag their master: another instance may
   * read a value a few milliseconds old, and the fleet-wide lease may wait a little longer.
   * @default false
   */
  useReplicas?: boolean | undefined;
  /** How many `MOVED`/`ASK` redirections one command may follow. @default 16 */
  maxCommandRedirections?: number | undefined;
  /**
   * Addresses to connect to instead of those the cluster announces (a cluster behind NAT or
   * in containers): a map from `"host:port"` or a function.
   */
  nodeAddressMap?:
    | Readonly<Record<string, RedisNodeAddress>>
    | ((address: string) => RedisNodeAddress | undefined)
    | undefined;
  /**
   * How soon, after a node connection starts failing, the store asks the other nodes for the
   * cluster's layout again (so that a replica promoted in place of a dead master is found),
   * in milliseconds or as a duration string. node-redis checks on each reconnection attempt
   * of the failing node. `0` turns it off.
   * @default 1000
   */
  topologyRefreshDelay?: Duration | undefined;
}

/**
 * Redis behind Sentinel through node-redis's `createSentinel()`: commands go to the current
 * master, which the client follows across failovers. `clientOptions` apply to the data nodes.
 */
export interface RedisStoreSentinelOptions {
  /** The master's name, as configured in the sentinels (`sentinel monitor <name> …`). */
  name: string;
  /** Some of the sentinels, used to find the others and the master. */
  sentinelRootNodes: ReadonlyArray<RedisNodeAddress>;
  /** Options of the connections to the sentinels themselves (their credentials, TLS). */
  sentinelClientOptions?: RedisStoreClientOptions | undefined;
  /** Connections to each replica for reads (`GET`, `MGET`); `0` reads from the master only. @default 0 */
  replicaPoolSize?: number | undefined;
  /** Interval at which the sentinels are asked for changes, in ms; `0` relies on their events. @default 0 */
  scanInterval?: number | undefined;
  /** Addresses to connect to instead of those the sentinels announce. */
  nodeAddressMap?:
    | Readonly<Record<string, RedisNodeAddress>>
    | ((address: string) => RedisNodeAddress | undefined)
    | undefined;
}

/** Which Redis deployment a store talks to (see {@link RedisStore.topology}). */
export type RedisTopology = "standalone" | "cluster" | "sentinel";

/**
 * Options of {@link redisStore}. Say where Redis is with one of `url`, `client`, `cluster` or
 * `sentinel` (none means `redis://127.0.0.1:6379`).
 */
export interface RedisStoreOptions {
  /**
   * Where Redis is: `redis://[[user][:password]@]host[:port][/db]`, `rediss://…` for TLS, or
   * `unix:///path/to/redis.sock`; a cluster as
   * `redis+cluster://[[user][:password]@]host:port,host:port…` (`rediss+cluster://` for TLS;
   * the hosts are root nodes, see {@link RedisStoreClusterOptions.rootNodes}); Redis behind
   * Sentinel as `redis+sentinel://[[user][:password]@]host:port,host:port…/<master name>`
   * (the hosts are sentinels, the credentials the data nodes'). Validated when the store is
   * created; the connection opens on first use.
   * @default "redis://127.0.0.1:6379" (when `client`, `cluster` and `sentinel` are not given)
   */
  url?: string | undefined;
  /**
   * An existing client to use instead of creating one, told apart by its shape: a node-redis
   * client (`createClient()`), cluster (`createCluster()`) or Sentinel client
   * (`createSentinel()`), or an ioredis `Redis` or `Cluster`. The store connects it on first
   * use if it is not open yet, but never closes it: `disconnect()` only detaches the store.
   * The client keeps its own reconnection settings; the store still fails fast by rejecting
   * commands whenever the client is not ready. It must not have a `keyPrefix` (use
   * `prefix`). The bus subscribes on a connection of the store's own (a duplicate of the
   * client, or a connection to one cluster node). Mutually exclusive with `url`, `cluster`,
   * `sentinel` and `clientOptions`.
   */
  client?: RedisClientLike | RedisClusterLike | RedisSentinelLike | IoRedisLike | undefined;
  /** Redis Cluster: see {@link RedisStoreClusterOptions}. */
  cluster?: RedisStoreClusterOptions | undefined;
  /** Redis behind Sentinel: see {@link RedisStoreSentinelOptions}. */
  sentinel?: RedisStoreSentinelOptions | undefined;
  /**
   * Prepended to every key, so that several applications (or caches) can share one Redis.
   * May be `""`.
   * @default "cachet:"
   */
  prefix?: string | undefined;
  /**
   * Longest wait for a connection to be established and ready (TCP, TLS, handshake), in
   * milliseconds or as a duration string. On first use, commands wait for the first attempt
   * at most this long; while reconnecting they do not wait at all.
   * @default 2000
   */
  connectTimeout?: Duration | undefined;
  /**
   * Longest wait for the reply to one command, in milliseconds or as a duration string;
   * `0` turns the bound off. A command without a reply by then rejects with a `StoreError`
   * of code `E_STORE_TIMEOUT` (its late reply is dropped). This only matters when Redis stops
   * answering while the connection stays open (a paused or overloaded server): a closed
   * connection fails pending commands at once. Inside a cache, the cache's `storeTimeout`
   * (50 ms by default) is usually shorter and applies first.
   * @default 1000
   */
  commandTimeout?: Duration | undefined;
  /**
   * Upper bound of the delay between two reconnection attempts, in milliseconds or as a
   * duration string. The delay starts at 50 ms and doubles after each failed attempt (with
   * jitter) up to this bound, so a restarted Redis is used again at most about this long
   * after it comes back.
   * @default 2000
   */
  maxReconnectDelay?: Duration | undefined;
  /**
   * node-redis client options for the connections the store creates — to the one server, or
   * to every cluster or data node. See {@link RedisStoreClientOptions}.
   */
  clientOptions?: RedisStoreClientOptions | undefined;
}

/**
 * The connection state, for health reporting:
 * - `idle`: not used yet (the store connects on first use);
 * - `connecting`: the first connection is being opened;
 * - `ready`: connected, commands go to Redis;
 * - `reconnecting`: the connection failed or was lost; commands are rejected at once while
 *   the store retries in the background;
 * - `closed`: `disconnect()` was called.
 */
export type RedisStoreStatus = "idle" | "connecting" | "ready" | "reconnecting" | "closed";

const DEFAULT_URL = "redis://127.0.0.1:6379";
const DEFAULT_PREFIX = "cachet:";
const DEFAULT_CONNECT_TIMEOUT = 2_000;
const DEFAULT_COMMAND_TIMEOUT = 1_000;
const DEFAULT_MAX_RECONNECT_DELAY = 2_000;
const FIRST_RECONNECT_DELAY = 50;
const URL_SCHEMES = new Set(["redis:", "rediss:", "unix:"]);
/**
 * The write buffer of the store's own connections, in bytes. node-redis stops writing once
 * this much waits in the socket's buffer and resumes on `drain`, in a later turn of the event
 * loop: at Node's default (16 KiB) each command larger than that leaves alone, one per turn,
 * so a busy process fills a burst of 30 KB writes at a few dozen a second and keeps the rest
 * queued in the client, where their store timeout runs out before Redis has seen them (see
 * docs/failure-modes.md, "A burst of fills is not an outage"). It only sets when writing
 * pauses: while Redis answers, the kernel takes the bytes at once; a frozen Redis holds at most
 * this much in the process, per connection. `clientOptions.socket.writableHighWaterMark`
 * overrides it.
 */
const WRITE_HIGH_WATER_MARK = 8 * 1024 * 1024;

/**
 * Command options of the store's own clients: node-redis 6 bounds every command with an
 * `AbortSignal.timeout` (5 s by default), which costs more CPU than the rest of sending a GET
 * (about 10 µs a command: a signal, a weak reference, an event listener). The store bounds
 * its commands itself (`commandTimeout`, one plain timer) and the cache's guard judges
 * silence (`storeTimeout`), so node-redis's bound is turned off (`0`).
 */
const CLIENT_COMMAND_OPTIONS = { timeout: 0 } as const;
/** node-redis asks the other nodes for the layout this soon after a node starts failing. */
const DEFAULT_TOPOLOGY_REFRESH_DELAY = 1_000;

/** Release a lease only while it still holds the owner's token. */
const DELETE_IF_EQUALS = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`;
const DELETE_IF_EQUALS_SHA = createHash("sha1").update(DELETE_IF_EQUALS).digest("hex");
/** Renew a lease only while it still holds the owner's token. */
const EXTEND_IF_EQUALS = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`;
const EXTEND_IF_EQUALS_SHA = createHash("sha1").update(EXTEND_IF_EQUALS).digest("hex");
/**
 * `extendManyIfEquals`: `EXTEND_IF_EQUALS` for each key (ARGV holds value, ttl pairs); one
 * 0/1 per key. `pcall`: a key holding another type is not renewed, and does not fail the rest.
 */
const EXTEND_MANY_IF_EQUALS = `local out = {}
for i = 1, #KEYS do
  if redis.pcall("GET", KEYS[i]) == ARGV[2 * i - 1] then out[i] = redis.call("PEXPIRE", KEYS[i], ARGV[2 * i]) else out[i] = 0 end
end
return out`;
const EXTEND_MANY_IF_EQUALS_SHA = createHash("sha1").update(EXTEND_MANY_IF_EQUALS).digest("hex");
/**
 * Keys per `extendManyIfEquals` script at most: a script blocks the server while it runs, and
 * a thousand `GET` + `PEXPIRE` pairs take about 1.3 ms (measured on a busy 2-core machine).
 */
const EXTEND_MANY_MAX_KEYS = 1_000;
/**
 * Take a lease unless a live, well-formed one is there: an absent key, a value without the
 * lease prefix and length (ARGV[3], ARGV[4]) or without an expiry (PTTL < 0) is replaced.
 */
const TAKE_LEASE = `local v = redis.call("GET", KEYS[1])
if v and #v == tonumber(ARGV[4]) and string.sub(v, 1, #ARGV[3]) == ARGV[3] and redis.call("PTTL", KEYS[1]) > 0 then return 0 end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return 1`;
const TAKE_LEASE_SHA = createHash("sha1").update(TAKE_LEASE).digest("hex");
/** `setMany` in one command: `SET key value PX ttl` for each key (ARGV holds value, ttl pairs). */
const SET_MANY = `for i = 1, #KEYS do redis.call("SET", KEYS[i], ARGV[2 * i - 1], "PX", ARGV[2 * i]) end return #KEYS`;
const SET_MANY_SHA = createHash("sha1").update(SET_MANY).digest("hex");

/** Options the store sets on its own client; passing them in `clientOptions` is an error. */
const MANAGED_CLIENT_OPTIONS: Record<string, string> = {
  url: "use the store's `url` option",
  keyPrefix: "use the store's `prefix` option",
  disableOfflineQueue: "the store always disables the offline queue so that commands fail fast",
  commandOptions: "the store sets its own command options (Buffer replies)",
};
const MANAGED_SOCKET_OPTIONS: Record<string, string> = {
  reconnectStrategy: "the store reconnects by itself; use `maxReconnectDelay`",
  connectTimeout: "use the store's `connectTimeout` option",
};

/** How the store reaches Redis: which client library, which deployment. */
type Kind = "standalone" | "cluster" | "sentinel" | "ioredis";

/**
 * A {@link Store} on Redis through node-redis (standalone, Cluster or Sentinel) or a caller's
 * ioredis client: bytes in and out as Buffers, TTLs as `PX`, `getMany` as one `MGET` (one per
 * hash slot on a cluster), leases with `SET NX PX` and a compare-and-delete script.
 *
 * It fails fast and recovers by itself: it connects lazily, never queues commands while
 * disconnected (they reject at once with a `StoreError`), reconnects in the background with
 * a capped exponential backoff, and works again as soon as Redis is back, without a restart.
 * Nothing it leaves behind keeps the process alive after {@link disconnect} (on a cluster or
 * Sentinel, node-redis reconnects nodes itself: a backoff step already under way when
 * `disconnect()` is called may delay the process's exit by up to `maxReconnectDelay`).
 */
export class RedisStore implements Store {
  readonly name = "redis";
  /** The prefix prepended to every key. */
  readonly prefix: string;
  readonly #kind: Kind;
  readonly #url: string | undefined;
  /** Options of every connection the store creates (URL credentials and TLS included). */
  readonly #clientOptions: RedisStoreClientOptions;
  readonly #cluster: RedisStoreClusterOptions | undefined;
  readonly #sentinel: RedisStoreSentinelOptions | undefined;
  readonly #connectTimeout: number;
  readonly #commandTimeout: number;
  /** The commands' deadlines (`commandTimeout`), one timer for all; none when it is 0. */
  readonly #deadlines: DeadlineQueue | undefined;
  readonly #maxReconnectDelay: number;
  /** Whether the store created its client(s), and so owns and closes them. */
  readonly #owned: boolean;

  #client: RedisClientLike | undefined;
  #commander: RedisCommander | undefined;
  /** The first connection, awaited by commands issued before it settles. */
  #opening: Promise<RedisCommander> | undefined;
  /** The state of the store's own client; for a caller's client, only idle / in use / closed. */
  #status: RedisStoreStatus = "idle";
  #lastError: Error | undefined;
  #wasReady = false;
  #attempts = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  /** Listeners put on a caller's client, removed again by `disconnect()`. */
  #detach: (() => void) | undefined;
  /** Bus channels (prefixed) this store is subscribed to, on its own connection. */
  readonly #subscriptions = new Map<string, Subscription>();
  #subscriber: RedisClientLike | undefined;
  #subscriberOpening: Promise<void> | undefined;
  #subscriberAttempts = 0;
  #subscriberTimer: NodeJS.Timeout | undefined;
  /** SHAs of the scripts the server has been sent whole (so `EVALSHA` finds them). */
  readonly #scripts = new Set<string>();
  /** Where the bus subscriber's node rotation starts (cluster), so that a fleet spreads out. */
  readonly #subscriberSeed = Math.floor(Math.random() * 1024);

  constructor(options: RedisStoreOptions = {}) {
    if (options === null || typeof options !== "object") {
      throw new InvalidOptionError(
        "redisStore(options)",
        `expected an object, got ${JSON.stringify(options)}`,
      );
    }
    const hostHint =
      'redisStore takes a URL (`url: "redis://host:port"`), or your own client (`client`)';
    rejectUnknownOptions(
      options,
      [
        "url",
        "client",
        "cluster",
        "sentinel",
        "prefix",
        "connectTimeout",
        "commandTimeout",
        "maxReconnectDelay",
        "clientOptions",
      ],
      "redisStore",
      { host: hostHint, port: hostHint, password: "put it in the URL, or in `clientOptions`" },
    );
    const { url, client, cluster, sentinel, clientOptions } = options;
    if ("url" in options && url === undefined && !client && !cluster && !sentinel) {
      // `redisStore({ url: process.env.REDIS_URL })` with the variable unset: fail now rather
      // than run on a local Redis nobody configured.
      throw new InvalidOptionError(
        "redisStore.url",
        "is undefined (an unset environment variable?): give a redis:// URL, or leave `url` out to mean redis://127.0.0.1:6379",
      );
    }
    const given = (["url", "client", "cluster", "sentinel"] as const).filter(
      (name) => options[name] !== undefined,
    );
    if (given.length > 1) {
      throw new InvalidOptionError(
        `redisStore.${given[1]}`,
        `pass only one of \`url\`, \`client\`, \`cluster\` and \`sentinel\`, got ${given.map((name) => `\`${name}\``).join(" and ")}`,
      );
    }
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    if (typeof this.prefix !== "string") {
      throw new InvalidOptionError(
        "redisStore.prefix",
        `expected a string, got ${describe(this.prefix)}`,
      );
    }
    this.#connectTimeout = optionalMs(
      options.connectTimeout,
      "redisStore.connectTimeout",
      DEFAULT_CONNECT_TIMEOUT,
      false,
    );
    this.#commandTimeout = optionalMs(
      options.commandTimeout,
      "redisStore.commandTimeout",
      DEFAULT_COMMAND_TIMEOUT,
    );
    this.#deadlines =
      this.#commandTimeout > 0 ? new DeadlineQueue(this.#commandTimeout) : undefined;
    this.#maxReconnectDelay = optionalMs(
      options.maxReconnectDelay,
      "redisStore.maxReconnectDelay",
      DEFAULT_MAX_RECONNECT_DELAY,
      false,
    );
    if (client !== undefined) {
      if (clientOptions !== undefined) {
        throw new InvalidOptionError(
          "redisStore.clientOptions",
          "applies only to the client the store creates; configure your `client` yourself",
        );
      }
      const adopted = adoptClient(client);
      this.#kind = adopted.kind;
      this.#owned = false;
      this.#url = undefined;
      this.#clientOptions = {};
      this.#cluster = undefined;
      this.#sentinel = undefined;
      this.#client = adopted.client;
      this.#commander = adopted.client.withTypeMapping(BUFFER_REPLIES);
      this.#listen(adopted.client);
      return;
    }
    this.#owned = true;
    const validated = validateClientOptions(clientOptions);
    const multi = url === undefined ? undefined : validateMultiHostUrl(url);
    if (cluster !== undefined || multi?.kind === "cluster") {
      this.#kind = "cluster";
      this.#url = undefined;
      this.#cluster = cluster !== undefined ? validateCluster(cluster) : clusterFromUrl(multi!);
      this.#sentinel = undefined;
    } else if (sentinel !== undefined || multi?.kind === "sentinel") {
      this.#kind = "sentinel";
      this.#url = undefined;
      this.#cluster = undefined;
      this.#sentinel =
        sentinel !== undefined ? validateSentinel(sentinel) : sentinelFromUrl(multi!);
    } else {
      this.#kind = "standalone";
      this.#url = validateUrl(url ?? DEFAULT_URL);
      this.#cluster = undefined;
      this.#sentinel = undefined;
    }
    this.#clientOptions = multi ? withUrlCredentials(validated, multi) : validated;
    // Let node-redis judge its own options now rather than on first use. Creating a client
    // does no I/O; destroying one that never connected releases nothing but itself.
    try {
      this.#createClient().destroy();
    } catch (cause) {
      if (cause instanceof MissingPeerError) throw cause;
      const option = this.#kind === "standalone" ? "clientOptions" : this.#kind;
      throw new InvalidOptionError(
        `redisStore.${option}`,
        `node-redis rejected them: ${causeText(cause)}`,
        { cause },
      );
    }
  }

  /**
   * The deployment the store talks to: one server (`standalone`), Redis Cluster (`cluster`)
   * or a master behind Sentinel (`sentinel`).
   */
  get topology(): RedisTopology {
    if (this.#kind !== "ioredis") return this.#kind;
    return (this.#client as IoRedisClient).isCluster ? "cluster" : "standalone";
  }

  /** The connection state; see {@link RedisStoreStatus}. */
  get status(): RedisStoreStatus {
    if (this.#owned || this.#status === "closed") return this.#status;
    // A caller's client reconnects on its own: read its state.
    const client = this.#client!;
    if (client.isReady) return "ready";
    if (this.#wasReady) return client.isOpen ? "reconnecting" : "closed";
    return !client.isOpen && this.#status === "idle" ? "idle" : "connecting";
  }

  /** The last connection or command error seen, if any (kept after recovery, for reporting). */
  get lastError(): Error | undefined {
    return this.#lastError;
  }

  get(key: string): Promise<Uint8Array | undefined> {
    let name: string;
    try {
      name = this.#key(key, "get");
    } catch (error) {
      return Promise.reject(error);
    }
    // `null` (absent) becomes `undefined` where the reply is handled: no promise more per read.
    return this.#send<Buffer | undefined>("get", ["GET", name], true);
  }

  async getMany(keys: readonly string[]): Promise<Array<Uint8Array | undefined>> {
    if (!Array.isArray(keys)) {
      throw new InvalidOptionError(
        "redisStore.getMany(keys)",
        `expected an array of strings, got ${describe(keys)}`,
      );
    }
    if (keys.length === 0) return [];
    const args: RedisArgument[] = ["MGET"];
    for (const key of keys) args.push(this.#key(key, "getMany"));
    const replies = await this.#send<Array<Buffer | null>>("getMany", args);
    return replies.map((reply) => reply ?? undefined);
  }

  async set(key: string, value: Uint8Array, ttlMs: number): Promise<void> {
    await this.#send("set", [
      "SET",
      this.#key(key, "set"),
      toBuffer(value, "set"),
      "PX",
      ttlArg(ttlMs, "set"),
    ]);
  }

  async setIfAbsent(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    const reply = await this.#send<unknown>("setIfAbsent", [
      "SET",
      this.#key(key, "setIfAbsent"),
      toBuffer(value, "setIfAbsent"),
      "NX",
      "PX",
      ttlArg(ttlMs, "setIfAbsent"),
    ]);
    return reply !== null;
  }

  async deleteIfEquals(key: string, value: Uint8Array): Promise<boolean> {
    const args = [this.#key(key, "deleteIfEquals"), toBuffer(value, "deleteIfEquals")];
    const removed = await this.#script<number>(
      "deleteIfEquals",
      DELETE_IF_EQUALS,
      DELETE_IF_EQUALS_SHA,
      args,
    );
    return removed > 0;
  }

  /** A Lua script: `PEXPIRE` only while the key holds `value`. */
  async extendIfEquals(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    const args = [
      this.#key(key, "extendIfEquals"),
      toBuffer(value, "extendIfEquals"),
      ttlArg(ttlMs, "extendIfEquals"),
    ];
    const extended = await this.#script<number>(
      "extendIfEquals",
      EXTEND_IF_EQUALS,
      EXTEND_IF_EQUALS_SHA,
      args,
    );
    return extended > 0;
  }

  /**
   * {@link extendIfEquals} for many keys: one script (`EVALSHA`) over up to 1,000 keys, a
   * larger batch in several sent together; on a cluster, one per hash slot (a script's keys
   * must share a slot), the slots in parallel. Each key is compared and renewed atomically.
   */
  async extendManyIfEquals(entries: readonly StoreEntry[]): Promise<boolean[]> {
    const operation = "extendManyIfEquals";
    const { keys, argv } = this.#entryArgs(entries, operation);
    const out = new Array<boolean>(entries.length).fill(false);
    const calls: Array<Promise<void>> = [];
    for (const group of this.#bySlot(keys)) {
      for (let start = 0; start < group.length; start += EXTEND_MANY_MAX_KEYS) {
        const chunk = group.slice(start, start + EXTEND_MANY_MAX_KEYS);
        calls.push(
          this.#scriptKeys<unknown[]>(
            operation,
            EXTEND_MANY_IF_EQUALS,
            EXTEND_MANY_IF_EQUALS_SHA,
            scriptArgs(chunk, keys, argv),
          ).then((replies) => {
            for (let j = 0; j < chunk.length; j++) out[chunk[j]!] = Number(replies[j]) > 0;
          }),
        );
      }
    }
    await Promise.all(calls);
    return out;
  }

  /**
   * Run a Lua script by its SHA; `args` begins with the number of keys. Its first use sends
   * it whole (`EVAL` caches it on the server): `EVALSHA` first would cost a round trip for the
   * `NOSCRIPT` answer and another one, twice the time a call is given, for every concurrent
   * first call of a burst.
   */
  #scriptKeys<T>(
    operation: string,
    script: string,
    sha: string,
    args: RedisArgument[],
  ): Promise<T> {
    if (!this.#scripts.has(sha)) {
      return this.#send<T>(operation, ["EVAL", script, ...args]).then((reply) => {
        this.#scripts.add(sha);
        return reply;
      });
    }
    return this.#send<T>(operation, ["EVALSHA", sha, ...args]).catch((error: unknown) => {
      // The script cache is empty after a restart or a SCRIPT FLUSH: send the script itself.
      if (!(error instanceof StoreError) || !causeMessage(error).startsWith("NOSCRIPT"))
        throw error;
      return this.#send<T>(operation, ["EVAL", script, ...args]);
    });
  }

  /** A Lua script: `SET PX` unless a live lease in the lease format (with a PTTL) is there. */
  async takeLease(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    const args = [
      this.#key(key, "takeLease"),
      toBuffer(value, "takeLease"),
      ttlArg(ttlMs, "takeLease"),
      LEASE_MAGIC,
      String(LEASE_LENGTH),
    ];
    const taken = await this.#script<number>("takeLease", TAKE_LEASE, TAKE_LEASE_SHA, args);
    return taken > 0;
  }

  /** {@link #scriptKeys} for a one-key script. */
  #script<T>(operation: string, script: string, sha: string, args: RedisArgument[]): Promise<T> {
    return this.#scriptKeys<T>(operation, script, sha, ["1", ...args]);
  }

  async delete(key: string): Promise<boolean> {
    const removed = await this.#send<number>("delete", ["DEL", this.#key(key, "delete")]);
    return removed > 0;
  }

  // ---- batch writes (setMany / deleteMany) ---------------------------------------------------

  /**
   * Store every entry with its own TTL in one command: a script running `SET … PX` per key
   * (`EVALSHA`, the script itself after a `NOSCRIPT`). On a cluster, one command per hash slot,
   * the slots in parallel.
   */
  async setMany(entries: readonly StoreEntry[]): Promise<void> {
    const { keys, argv } = this.#entryArgs(entries, "setMany");
    await Promise.all(
      this.#bySlot(keys).map((group) => {
        if (group.length === 1) {
          const i = group[0]!;
          return this.#send("setMany", ["SET", keys[i]!, argv[2 * i]!, "PX", argv[2 * i + 1]!]);
        }
        return this.#scriptKeys("setMany", SET_MANY, SET_MANY_SHA, scriptArgs(group, keys, argv));
      }),
    );
  }

  /** Remove every key with one `DEL` (one per hash slot on a cluster). */
  async deleteMany(keys: readonly string[]): Promise<void> {
    if (!Array.isArray(keys)) {
      throw new InvalidOptionError(
        "redisStore.deleteMany(keys)",
        `expected an array of strings, got ${describe(keys)}`,
      );
    }
    const names = keys.map((key) => this.#key(key, "deleteMany"));
    await Promise.all(
      this.#bySlot(names).map((group) =>
        this.#send<number>("deleteMany", ["DEL", ...group.map((i) => names[i]!)]),
      ),
    );
  }

  /** The prefixed keys of `entries` and their `value, ttl` arguments, in order; checked. */
  #entryArgs(
    entries: readonly StoreEntry[],
    operation: string,
  ): { keys: string[]; argv: RedisArgument[] } {
    if (!Array.isArray(entries)) {
      throw new InvalidOptionError(
        `redisStore.${operation}(entries)`,
        `expected an array of { key, value, ttlMs }, got ${describe(entries)}`,
      );
    }
    const keys: string[] = [];
    const argv: RedisArgument[] = [];
    for (const entry of entries) {
      keys.push(this.#key(entry?.key, operation));
      argv.push(toBuffer(entry.value, operation), ttlArg(entry.ttlMs, operation));
    }
    return { keys, argv };
  }

  /** Indexes of `keys` grouped by hash slot on a cluster; one group otherwise (none if empty). */
  #bySlot(keys: readonly string[]): number[][] {
    if (keys.length === 0) return [];
    if (this.topology !== "cluster") return [keys.map((_, i) => i)];
    return indexesBySlot(keys);
  }

  /** Publish `message` on the bus channel `channel` (prefixed like keys). */
  async publish(channel: string, message: Uint8Array): Promise<void> {
    await this.#send("publish", [
      "PUBLISH",
      this.#key(channel, "publish"),
      toBuffer(message, "publish"),
    ]);
  }

  /**
   * Receive the messages published on `channel`, on a connection of its own. `onReset` is
   * called whenever messages may have been missed: the subscription was re-established after
   * the connection dropped; `onLost` as soon as the store's own subscriber connection drops.
   * Resolves once subscribed (or rejects when Redis cannot be reached; the store keeps trying
   * in the background and calls `onReset` when it succeeds).
   */
  async subscribe(
    channel: string,
    onMessage: (message: Buffer) => void,
    onReset: () => void,
    onLost?: () => void,
  ): Promise<() => Promise<void>> {
    const name = this.#key(channel, "subscribe");
    if (this.#status === "closed") {
      throw new StoreError(this.name, "subscribe", "the store is disconnected");
    }
    this.#subscriptions.set(name, { onMessage, onReset, onLost });
    const subscriber = this.#subscriber;
    if (subscriber?.isReady) await this.#subscribeOn(subscriber, name);
    else await this.#openSubscriber(false);
    return async () => {
      this.#subscriptions.delete(name);
      const current = this.#subscriber;
      if (current?.isReady) await current.unsubscribe?.(name).catch(() => {});
    };
  }

  /**
   * Stop using Redis. A client the store created is closed (pending commands get a bounded
   * moment to finish, then the socket is destroyed) and reconnection stops; a client passed
   * in is left open and only detached. Idempotent. The store rejects commands afterwards.
   */
  async disconnect(): Promise<void> {
    if (this.#status === "closed") return;
    this.#status = "closed";
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    clearTimeout(this.#subscriberTimer);
    this.#subscriberTimer = undefined;
    this.#subscriptions.clear();
    const subscriber = this.#subscriber;
    this.#subscriber = undefined;
    subscriber?.destroy();
    const client = this.#client;
    this.#opening = undefined;
    if (!this.#owned) {
      this.#detach?.();
      this.#detach = undefined;
      return;
    }
    this.#client = undefined;
    this.#commander = undefined;
    if (!client) return;
    if (client.isReady) {
      // Let in-flight commands finish, but never wait on a server that stopped answering.
      await withDeadline(client.close(), this.#commandTimeout || DEFAULT_COMMAND_TIMEOUT).catch(
        () => {},
      );
    }
    client.destroy();
  }

  // ---- internals ---------------------------------------------------------------------------

  #key(key: string, operation: string): string {
    if (typeof key !== "string") {
      throw new InvalidOptionError(
        `redisStore.${operation}(key)`,
        `expected a string, got ${describe(key)}`,
      );
    }
    return this.prefix + key;
  }

  /**
   * Send one command: at once when connected, after the first connection, or reject fast.
   * `nullIsAbsent`: a `null` reply (an absent key) resolves as `undefined`.
   */
  #send<T>(operation: string, args: RedisArgument[], nullIsAbsent = false): Promise<T> {
    const client = this.#client;
    const pending =
      client?.isReady && this.#status !== "closed"
        ? this.#commander!.sendCommand<T>(args)
        : this.#whenConnected(operation).then((commander) => commander.sendCommand<T>(args));
    return this.#bounded(operation, pending, nullIsAbsent);
  }

  /** The commander once connected; rejects at once unless the first connection is under way. */
  #whenConnected(operation: string): Promise<RedisCommander> {
    if (this.#status === "closed") {
      return Promise.reject(new StoreError(this.name, operation, "the store is disconnected"));
    }
    // A caller's client is connected by the store only if it never was (its owner may have
    // closed it since, and the store must not reopen it).
    if (this.#status === "idle" && !(this.#wasReady && !this.#owned))
      this.#opening = this.#connect();
    if (this.#opening) return this.#opening;
    const reason = this.#lastError ? `: ${this.#lastError.message}` : "";
    return Promise.reject(
      new StoreError(this.name, operation, `not connected (${this.status})${reason}`, {
        cause: this.#lastError,
      }),
    );
  }

  /** Bound a command by `commandTimeout` and turn its failure into a `StoreError`. */
  #bounded<T>(operation: string, pending: Promise<T>, nullIsAbsent: boolean): Promise<T> {
    const deadlines = this.#deadlines;
    if (deadlines === undefined) {
      return pending.then(
        (reply) => (nullIsAbsent && reply === null ? (undefined as T) : reply),
        (error: unknown) => this.#failure(operation, error),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const waiter = deadlines.add(() => {
        const error = new StoreError(
          this.name,
          operation,
          `no reply within commandTimeout (${this.#commandTimeout} ms)`,
          { code: "E_STORE_TIMEOUT" },
        );
        this.#lastError = error;
        reject(error);
      });
      pending.then(
        (reply) => {
          deadlines.settle(waiter);
          resolve(nullIsAbsent && reply === null ? (undefined as T) : reply);
        },
        (error: unknown) => {
          deadlines.settle(waiter);
          reject(this.#failureOf(operation, error));
        },
      );
    });
  }

  #failure(operation: string, error: unknown): never {
    throw this.#failureOf(operation, error);
  }

  /** A command's failure as the store reports it. */
  #failureOf(operation: string, error: unknown): CachetError {
    // Errors from Redis or the socket are worth reporting; the store's own "not connected"
    // rejections would only hide the reason behind them.
    if (!(error instanceof CachetError)) this.#recordError(error);
    return this.#wrap(operation, error);
  }

  #wrap(operation: string, error: unknown): CachetError {
    if (error instanceof CachetError) return error;
    return new StoreError(this.name, operation, causeText(error), { cause: error });
  }

  /** First use: open the connection (own client) or wait for the caller's client. */
  #connect(): Promise<RedisCommander> {
    const opening = this.#owned ? this.#open() : this.#adopt(this.#client!);
    // Commands awaiting it handle its rejection; nothing else must see it as unhandled.
    opening.catch(() => {});
    return opening;
  }

  /**
   * Open a connection with a fresh client. node-redis's own reconnection is off
   * (`reconnectStrategy: false`): its retry loop sleeps on a timer that cannot be unref'd or
   * cancelled, which would keep the process alive after `disconnect()`. The store retries with
   * its own unref'd timer instead, one client per attempt.
   */
  #open(): Promise<RedisCommander> {
    let client: RedisClientLike;
    try {
      client = this.#createClient();
    } catch (error) {
      // Checked at construction, so not expected; never let it escape a retry timer.
      this.#recordError(error);
      return Promise.reject(this.#wrap("connect", error));
    }
    this.#status = this.#status === "idle" ? "connecting" : "reconnecting";
    const commander = client.withTypeMapping(BUFFER_REPLIES);
    this.#client = client;
    this.#commander = commander;
    client.on("error", (error: unknown) => this.#recordError(error));
    // Emitted when a connection fails or is lost and node-redis gives up on it.
    client.on("terminated", (cause: unknown) => this.#lost(client, cause));
    return withDeadline(client.connect(), this.#connectTimeout, "connect").then(
      () => {
        if (this.#client !== client) {
          client.destroy();
          throw new StoreError(this.name, "connect", "the store was disconnected while connecting");
        }
        this.#status = "ready";
        this.#wasReady = true;
        this.#attempts = 0;
        this.#opening = undefined;
        return commander;
      },
      (error: unknown) => {
        this.#recordError(error);
        this.#lost(client, error);
        throw this.#wrap("connect", error);
      },
    );
  }

  /**
   * A new client of the store's own for its data connection. On a cluster or Sentinel,
   * node-redis reconnects the node connections itself (a cluster client or a Sentinel client
   * cannot replace one node's connection from outside), with the store's backoff; the store
   * replaces the whole client only when its first connection fails.
   */
  #createClient(): RedisClientLike {
    const redis = nodeRedis();
    switch (this.#kind) {
      case "cluster":
        return new ClusterClient(
          redis.createCluster(this.#clusterConfig() as never) as unknown as RedisClusterLike,
        );
      case "sentinel":
        return new SentinelClient(
          redis.createSentinel(this.#sentinelConfig() as never) as unknown as RedisSentinelLike,
        );
      default:
        return redis.createClient(this.#clientConfig()) as unknown as RedisClientLike;
    }
  }

  /** Reconnection of cluster and Sentinel node connections: the store's backoff, until closed. */
  readonly #nodeReconnect = (retries: number): number | false =>
    this.#status === "closed" ? false : backoff(retries, this.#maxReconnectDelay);

  /** Options of every cluster or Sentinel data-node connection the store's clients open. */
  #nodeConfig() {
    const options = this.#clientOptions;
    return {
      ...options,
      disableOfflineQueue: true,
      commandOptions: CLIENT_COMMAND_OPTIONS,
      socket: {
        writableHighWaterMark: WRITE_HIGH_WATER_MARK,
        ...options.socket,
        connectTimeout: this.#connectTimeout,
        reconnectStrategy: this.#nodeReconnect,
      },
    };
  }

  #clusterConfig() {
    const { rootNodes, topologyRefreshDelay, ...rest } = this.#cluster!;
    const refresh = optionalMs(
      topologyRefreshDelay,
      "redisStore.cluster.topologyRefreshDelay",
      DEFAULT_TOPOLOGY_REFRESH_DELAY,
    );
    return {
      ...rest,
      // Root nodes only serve to discover the layout (node-redis does not reuse their options
      // for the node connections): an idle timeout keeps a silent one from hanging discovery.
      rootNodes: rootNodes.map((node) => ({
        ...node,
        socket: {
          ...("socket" in node ? node.socket : undefined),
          socketTimeout: this.#connectTimeout,
        },
      })),
      defaults: this.#nodeConfig(),
      commandOptions: CLIENT_COMMAND_OPTIONS,
      RESP: this.#clientOptions.RESP,
      topologyRefreshOnReconnectionAttemptStrategy: refresh === 0 ? false : refresh,
    };
  }

  #sentinelConfig() {
    const { sentinelRootNodes, sentinelClientOptions, ...rest } = this.#sentinel!;
    return {
      ...rest,
      sentinelRootNodes: sentinelRootNodes.map(({ host, port }) => ({ host, port })),
      RESP: this.#clientOptions.RESP,
      commandOptions: CLIENT_COMMAND_OPTIONS,
      nodeClientOptions: this.#nodeConfig(),
      sentinelClientOptions: {
        ...sentinelClientOptions,
        socket: { ...sentinelClientOptions?.socket, connectTimeout: this.#connectTimeout },
      },
    };
  }

  /** The options of the store's own clients: the caller's, plus what the store manages. */
  #clientConfig() {
    const options = this.#clientOptions;
    return {
      ...options,
      url: this.#url,
      disableOfflineQueue: true,
      commandOptions: CLIENT_COMMAND_OPTIONS,
      socket: {
        writableHighWaterMark: WRITE_HIGH_WATER_MARK,
        ...options.socket,
        connectTimeout: this.#connectTimeout,
        reconnectStrategy: false as const,
      },
    };
  }

  /** The connection behind `client` failed or was lost: drop it and retry in the background. */
  #lost(client: RedisClientLike, cause: unknown): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    this.#commander = undefined;
    this.#opening = undefined;
    this.#recordError(cause);
    // Let node-redis fail the pending commands with the real cause first.
    queueMicrotask(() => client.destroy());
    if (this.#status === "closed") return;
    this.#status = "reconnecting";
    const delay = backoff(this.#attempts++, this.#maxReconnectDelay);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#status !== "closed") this.#open().catch(() => {});
    }, delay);
    this.#retryTimer.unref();
  }

  /**
   * Listen to a caller's client from the start: an `error` event without a listener would
   * crash the process, and `ready` tells a first connection from a reconnection.
   */
  #listen(client: RedisClientLike): void {
    const onError = (error: unknown) => this.#recordError(error);
    const onReady = () => {
      this.#wasReady = true;
    };
    client.on("error", onError);
    client.on("ready", onReady);
    this.#wasReady = client.isReady;
    this.#detach = () => {
      client.off("error", onError);
      client.off("ready", onReady);
    };
  }

  /** First use of a caller's client that is not ready: connect it if needed, wait a bounded time. */
  #adopt(client: RedisClientLike): Promise<RedisCommander> {
    this.#status = "connecting";
    const commander = this.#commander!;
    const settle = () => {
      this.#opening = undefined;
      if (this.#status !== "closed") this.#status = "ready";
    };
    if (client.isReady) {
      settle();
      return Promise.resolve(commander);
    }
    const ready = client.isOpen
      ? new Promise<void>((resolve) => {
          client.on("ready", function once() {
            client.off("ready", once);
            resolve();
          });
        })
      : client.connect();
    return withDeadline(ready, this.#connectTimeout, "connect").then(
      () => {
        settle();
        return commander;
      },
      (error: unknown) => {
        this.#recordError(error);
        // The client reconnects (or not) on its own terms; later commands fail fast until it is ready.
        settle();
        throw this.#wrap("connect", error);
      },
    );
  }

  /**
   * Open the subscriber connection and subscribe to every channel. node-redis's reconnection
   * is off for it too: on a loss the store opens a new connection with backoff, resubscribes,
   * and tells every subscription to reset (messages may have been lost meanwhile). On a
   * cluster the connection goes to one node, another one on each attempt: classic `PUBLISH`
   * reaches the subscribers of every node, so any live node will do.
   */
  #openSubscriber(reconnecting: boolean): Promise<void> {
    if (this.#subscriberOpening) return this.#subscriberOpening;
    const opening = this.#connectSubscriber(reconnecting).finally(() => {
      if (this.#subscriberOpening === opening) this.#subscriberOpening = undefined;
    });
    this.#subscriberOpening = opening;
    return opening;
  }

  async #connectSubscriber(reconnecting: boolean): Promise<void> {
    let client: RedisClientLike;
    let reconnectsItself: boolean;
    try {
      ({ client, reconnectsItself } = this.#newSubscriber());
    } catch (error) {
      this.#recordError(error);
      throw this.#wrap("subscribe", error);
    }
    this.#subscriber = client;
    client.on("error", (error: unknown) => this.#recordError(error));
    client.on("terminated", (cause: unknown) => this.#subscriberLost(client, cause));
    if (reconnectsItself) {
      // A duplicate of the caller's client reconnects and resubscribes by its own strategy
      // (a Sentinel client follows the master too): every `ready` after the first is a
      // reconnection, with a possible gap.
      let readies = 0;
      client.on("ready", () => {
        if (++readies > 1 && this.#subscriber === client) this.#resetSubscriptions();
      });
    }
    try {
      await withDeadline(client.connect(), this.#connectTimeout, "connect");
      for (const name of this.#subscriptions.keys()) await this.#subscribeOn(client, name);
    } catch (error) {
      this.#recordError(error);
      this.#subscriberLost(client, error);
      throw this.#wrap("subscribe", error);
    }
    if (this.#subscriber !== client) {
      client.destroy();
      return;
    }
    this.#subscriberAttempts = 0;
    if (reconnecting) this.#resetSubscriptions();
  }

  /**
   * A new connection for the bus subscriber. `reconnectsItself`: the client reconnects and
   * resubscribes on its own (the store only watches it); otherwise the store replaces it
   * when it reports `terminated`.
   */
  #newSubscriber(): { client: RedisClientLike; reconnectsItself: boolean } {
    switch (this.#kind) {
      case "standalone":
        return this.#owned
          ? {
              client: nodeRedis().createClient(this.#clientConfig()) as unknown as RedisClientLike,
              reconnectsItself: false,
            }
          : { client: this.#client!.duplicate!(), reconnectsItself: true };
      case "cluster": {
        const nodes = this.#clusterNodes();
        const node = nodes[(this.#subscriberSeed + this.#subscriberAttempts) % nodes.length]!;
        const config = this.#clusterSubscriberConfig(node);
        return {
          client: nodeRedis().createClient(config as never) as unknown as RedisClientLike,
          reconnectsItself: false,
        };
      }
      case "sentinel":
        return {
          client: new SentinelClient(
            this.#owned
              ? (nodeRedis().createSentinel(
                  this.#sentinelConfig() as never,
                ) as unknown as RedisSentinelLike)
              : (this.#client as SentinelClient).sentinel.duplicate(),
          ),
          reconnectsItself: true,
        };
      case "ioredis":
        return {
          client: (this.#client as IoRedisClient).subscriberConnection(
            this.#subscriberSeed + this.#subscriberAttempts,
            this.#connectTimeout,
          ),
          reconnectsItself: false,
        };
    }
  }

  /** The cluster's nodes known now, or its root nodes before the first discovery. */
  #clusterNodes(): RedisNodeAddress[] {
    const client = this.#client as ClusterClient | undefined;
    const known = client?.isReady ? client.nodes() : [];
    if (known.length > 0) return known;
    const roots = this.#owned ? this.#cluster!.rootNodes : client!.cluster._options.rootNodes;
    return roots.map(rootNodeAddress);
  }

  /** A plain connection to one cluster node, with the options of the cluster's node connections. */
  #clusterSubscriberConfig(node: RedisNodeAddress) {
    const cluster = this.#owned ? undefined : (this.#client as ClusterClient).cluster;
    const base = (cluster ? (cluster._options.defaults ?? {}) : this.#clientOptions) as {
      socket?: object | undefined;
      RESP?: unknown | undefined;
    };
    return {
      ...base,
      RESP: cluster ? (cluster._options.RESP ?? base.RESP) : this.#clientOptions.RESP,
      disableOfflineQueue: true,
      socket: {
        ...base.socket,
        host: node.host,
        port: node.port,
        connectTimeout: this.#connectTimeout,
        reconnectStrategy: false as const,
      },
    };
  }

  #resetSubscriptions(): void {
    for (const subscription of this.#subscriptions.values()) {
      try {
        subscription.onReset();
      } catch {
        // A subscriber's bug must not stop the others.
      }
    }
  }

  #subscribeOn(client: RedisClientLike, name: string): Promise<void> {
    if (!client.subscribe) {
      return Promise.reject(
        new StoreError(this.name, "subscribe", "this client does not support pub/sub"),
      );
    }
    return withDeadline(
      client.subscribe(
        name,
        (message: Buffer) => {
          const subscription = this.#subscriptions.get(name);
          if (!subscription) return;
          try {
            subscription.onMessage(message);
          } catch {
            // A handler's bug must not break the connection.
          }
        },
        true,
      ),
      this.#connectTimeout,
      "subscribe",
    );
  }

  #subscriberLost(client: RedisClientLike, cause: unknown): void {
    if (this.#subscriber !== client) return;
    this.#subscriber = undefined;
    this.#recordError(cause);
    queueMicrotask(() => client.destroy());
    if (this.#status === "closed" || this.#subscriptions.size === 0) return;
    // Nothing arrives until the resubscription (which calls onReset): say so now, so that
    // the bus stops trusting what it was told and reads tag states again.
    for (const subscription of this.#subscriptions.values()) {
      try {
        subscription.onLost?.();
      } catch {
        // A subscriber's bug must not stop the reconnection.
      }
    }
    const delay = backoff(this.#subscriberAttempts++, this.#maxReconnectDelay);
    clearTimeout(this.#subscriberTimer);
    this.#subscriberTimer = setTimeout(() => {
      this.#subscriberTimer = undefined;
      if (this.#status !== "closed") this.#openSubscriber(true).catch(() => {});
    }, delay);
    this.#subscriberTimer.unref();
  }

  #recordError(error: unknown): void {
    this.#lastError = error instanceof Error ? error : new Error(String(error));
  }
}

/**
 * A Redis store. Connects on first use.
 *
 * @example
 * const cache = createCache({ store: redisStore({ url: process.env.REDIS_URL }), l1: true });
 */
export function redisStore(options?: RedisStoreOptions): RedisStore {
  return new RedisStore(options);
}

function validateUrl(url: unknown, option = "redisStore.url"): string {
  if (typeof url !== "string") {
    throw new InvalidOptionError(option, `expected a string, got ${describe(url)}`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new InvalidOptionError(option, `not a valid URL: ${JSON.stringify(url)}`, {
      cause,
    });
  }
  if (!URL_SCHEMES.has(parsed.protocol)) {
    throw new InvalidOptionError(
      option,
      `unsupported scheme "${parsed.protocol}" in ${JSON.stringify(url)}; expected redis:, rediss:, unix:, redis+cluster:, rediss+cluster:, redis+sentinel: or rediss+sentinel:`,
    );
  }
  if (parsed.protocol !== "unix:") {
    if (parsed.hostname === "") {
      throw new InvalidOptionError(option, `no host in ${JSON.stringify(url)}`);
    }
    if (parsed.pathname.length > 1 && !/^\/\d+$/.test(parsed.pathname)) {
      throw new InvalidOptionError(
        option,
        `the path must be a database number (such as "/0"), got ${JSON.stringify(parsed.pathname)}`,
      );
    }
  }
  return url;
}

function validateClientOptions(
  options: RedisStoreClientOptions | undefined,
  option = "redisStore.clientOptions",
): RedisStoreClientOptions {
  if (options === undefined) return {};
  if (options === null || typeof options !== "object") {
    throw new InvalidOptionError(option, `expected an object, got ${describe(options)}`);
  }
  for (const [name, why] of Object.entries(MANAGED_CLIENT_OPTIONS)) {
    if ((options as Record<string, unknown>)[name] !== undefined) {
      throw new InvalidOptionError(`${option}.${name}`, `not accepted: ${why}`);
    }
  }
  const socket = options.socket as Record<string, unknown> | undefined;
  for (const [name, why] of Object.entries(MANAGED_SOCKET_OPTIONS)) {
    if (socket?.[name] !== undefined) {
      throw new InvalidOptionError(`${option}.socket.${name}`, `not accepted: ${why}`);
    }
  }
  return options;
}

/**
 * Tell a caller's client apart by its shape (ioredis, a node-redis cluster or Sentinel client,
 * or a standalone node-redis client) and adapt it to the interface the store drives.
 */
function adoptClient(client: unknown): { kind: Kind; client: RedisClientLike } {
  const invalid = () =>
    new InvalidOptionError(
      "redisStore.client",
      "expected a node-redis client (createClient(), createCluster() or createSentinel()) or an ioredis Redis or Cluster",
    );
  if (client === null || typeof client !== "object") throw invalid();
  let adopted: { kind: Kind; client: RedisClientLike };
  if (isIoRedis(client)) adopted = { kind: "ioredis", client: new IoRedisClient(client) };
  else if (isRedisCluster(client)) adopted = { kind: "cluster", client: new ClusterClient(client) };
  else if (isRedisSentinel(client))
    adopted = { kind: "sentinel", client: new SentinelClient(client) };
  else {
    const methods = ["connect", "withTypeMapping", "on", "off", "destroy"] as const;
    if (methods.some((m) => typeof (client as Record<string, unknown>)[m] !== "function")) {
      throw invalid();
    }
    adopted = { kind: "standalone", client: client as RedisClientLike };
  }
  const keyPrefix = adopted.client.options?.keyPrefix;
  if (keyPrefix !== undefined && keyPrefix.length > 0) {
    throw new InvalidOptionError(
      "redisStore.client",
      "the client has a keyPrefix, which does not apply to scripts; use the store's `prefix` option instead",
    );
  }
  return adopted;
}

/** A `redis+cluster://` or `redis+sentinel://` URL, parsed; `undefined` for other schemes. */
function validateMultiHostUrl(url: unknown): MultiHostUrl | undefined {
  if (typeof url !== "string") return undefined;
  try {
    return parseMultiHostUrl(url);
  } catch (cause) {
    throw new InvalidOptionError(
      "redisStore.url",
      `${causeText(cause)} (in ${JSON.stringify(url)})`,
      { cause },
    );
  }
}

/** Credentials and TLS from a multi-host URL apply to every data-node connection. */
function withUrlCredentials(
  options: RedisStoreClientOptions,
  url: MultiHostUrl,
): RedisStoreClientOptions {
  const out: Record<string, unknown> = { ...options };
  if (url.username !== undefined) out.username = url.username;
  if (url.password !== undefined) out.password = url.password;
  if (url.tls) out.socket = { ...options.socket, tls: true };
  return out as RedisStoreClientOptions;
}

function clusterFromUrl(url: MultiHostUrl): RedisStoreClusterOptions {
  return { rootNodes: url.hosts.map(({ host, port }) => ({ socket: { host, port } })) };
}

function sentinelFromUrl(url: MultiHostUrl): RedisStoreSentinelOptions {
  return {
    name: url.path,
    sentinelRootNodes: url.hosts,
    ...(url.tls ? { sentinelClientOptions: { socket: { tls: true } } } : {}),
  } as RedisStoreSentinelOptions;
}

/** Cluster options the store manages itself; passing them is an error. */
const MANAGED_CLUSTER_OPTIONS: Record<string, string> = {
  defaults: "use the store's `clientOptions`, which apply to every node",
  keyPrefix: "use the store's `prefix` option",
  commandOptions: "the store sets its own command options (Buffer replies)",
  RESP: "use `clientOptions.RESP`",
};

function validateCluster(cluster: RedisStoreClusterOptions): RedisStoreClusterOptions {
  if (cluster === null || typeof cluster !== "object" || Array.isArray(cluster)) {
    throw new InvalidOptionError(
      "redisStore.cluster",
      `expected an object such as { rootNodes: [{ url: "redis://host:port" }] }, got ${describe(cluster)}`,
    );
  }
  for (const [name, why] of Object.entries(MANAGED_CLUSTER_OPTIONS)) {
    if ((cluster as unknown as Record<string, unknown>)[name] !== undefined) {
      throw new InvalidOptionError(`redisStore.cluster.${name}`, `not accepted: ${why}`);
    }
  }
  const { rootNodes } = cluster;
  if (!Array.isArray(rootNodes) || rootNodes.length === 0) {
    throw new InvalidOptionError(
      "redisStore.cluster.rootNodes",
      `expected a non-empty array of { url } or { socket: { host, port } }, got ${describe(rootNodes)}`,
    );
  }
  rootNodes.forEach((node, i) => {
    const option = `redisStore.cluster.rootNodes[${i}]`;
    if (node !== null && typeof node === "object" && "url" in node) {
      validateUrl(node.url, option);
      if (node.url.startsWith("unix:")) {
        throw new InvalidOptionError(
          option,
          "a cluster node is reached over TCP, not a unix socket",
        );
      }
    } else if (
      node === null ||
      typeof node !== "object" ||
      !("socket" in node) ||
      typeof node.socket !== "object" ||
      node.socket === null
    ) {
      throw new InvalidOptionError(
        option,
        `expected { url: "redis://host:port" } or { socket: { host, port } }, got ${describe(node)}`,
      );
    }
  });
  optionalMs(
    cluster.topologyRefreshDelay,
    "redisStore.cluster.topologyRefreshDelay",
    DEFAULT_TOPOLOGY_REFRESH_DELAY,
  );
  return cluster;
}

/** Sentinel options the store manages itself; passing them is an error. */
const MANAGED_SENTINEL_OPTIONS: Record<string, string> = {
  nodeClientOptions: "use the store's `clientOptions`, which apply to every data node",
  keyPrefix: "use the store's `prefix` option",
  commandOptions: "the store sets its own command options (Buffer replies)",
  RESP: "use `clientOptions.RESP`",
};

function validateSentinel(sentinel: RedisStoreSentinelOptions): RedisStoreSentinelOptions {
  if (sentinel === null || typeof sentinel !== "object" || Array.isArray(sentinel)) {
    throw new InvalidOptionError(
      "redisStore.sentinel",
      `expected an object such as { name: "mymaster", sentinelRootNodes: [{ host, port }] }, got ${describe(sentinel)}`,
    );
  }
  for (const [name, why] of Object.entries(MANAGED_SENTINEL_OPTIONS)) {
    if ((sentinel as unknown as Record<string, unknown>)[name] !== undefined) {
      throw new InvalidOptionError(`redisStore.sentinel.${name}`, `not accepted: ${why}`);
    }
  }
  if (typeof sentinel.name !== "string" || sentinel.name === "") {
    throw new InvalidOptionError(
      "redisStore.sentinel.name",
      `expected the master's name (a non-empty string), got ${describe(sentinel.name)}`,
    );
  }
  const nodes = sentinel.sentinelRootNodes;
  if (
    !Array.isArray(nodes) ||
    nodes.length === 0 ||
    nodes.some(
      (node) =>
        node === null ||
        typeof node !== "object" ||
        typeof node.host !== "string" ||
        !Number.isInteger(node.port),
    )
  ) {
    throw new InvalidOptionError(
      "redisStore.sentinel.sentinelRootNodes",
      `expected a non-empty array of { host, port }, got ${describe(nodes)}`,
    );
  }
  if (sentinel.sentinelClientOptions !== undefined) {
    validateClientOptions(
      sentinel.sentinelClientOptions,
      "redisStore.sentinel.sentinelClientOptions",
    );
  }
  return sentinel;
}

/** The address of a cluster root node given as `{ url }` or `{ socket: { host, port } }`. */
function rootNodeAddress(node: {
  readonly url?: string | undefined;
  readonly socket?: object | undefined;
}): RedisNodeAddress {
  if (typeof node.url === "string") {
    const parsed = new URL(node.url);
    return {
      host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: parsed.port === "" ? 6379 : Number(parsed.port),
    };
  }
  const socket = (node.socket ?? {}) as { host?: string; port?: number };
  return { host: socket.host ?? "localhost", port: socket.port ?? 6379 };
}

/**
 * The delay before reconnection attempt `attempt` (0-based): starts at 50 ms and doubles up
 * to `max`; half fixed, half random, so that a fleet does not reconnect in lockstep.
 */
function backoff(attempt: number, max: number): number {
  const ceiling = Math.min(FIRST_RECONNECT_DELAY * 2 ** Math.min(attempt, 20), max);
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

function toBuffer(value: Uint8Array, operation: string): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array)
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new InvalidOptionError(
    `redisStore.${operation}(value)`,
    `expected a Uint8Array or Buffer, got ${describe(value)}`,
  );
}

/** TTLs are integer milliseconds (`PX`); a fraction rounds up so that nothing expires early. */
function ttlArg(ttlMs: number, operation: string): string {
  if (typeof ttlMs !== "number" || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new InvalidOptionError(
      `redisStore.${operation}(ttlMs)`,
      `expected a positive number of milliseconds, got ${describe(ttlMs)}`,
    );
  }
  return String(Math.ceil(ttlMs));
}

/** A multi-key script's arguments for the entries at `indexes`: the key count, keys, then argv pairs. */
function scriptArgs(
  indexes: readonly number[],
  keys: readonly string[],
  argv: readonly RedisArgument[],
): RedisArgument[] {
  const args: RedisArgument[] = [String(indexes.length)];
  for (const i of indexes) args.push(keys[i]!);
  for (const i of indexes) args.push(argv[2 * i]!, argv[2 * i + 1]!);
  return args;
}

/** Reject with a timeout error when `promise` has not settled within `ms`; unref'd. */
function withDeadline<T>(promise: Promise<T>, ms: number, what = "operation"): Promise<T> {
  promise.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

function causeText(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const name = error.constructor.name;
    return `${name === "Error" ? "" : `${name}: `}${error.message}${typeof code === "string" && !error.message.includes(code) ? ` (${code})` : ""}`;
  }
  return String(error);
}

function causeMessage(error: StoreError): string {
  const cause = error.cause;
  return cause instanceof Error ? cause.message : "";
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object")
    return value.constructor?.name ? `a ${value.constructor.name}` : "an object";
  if (typeof value === "string")
    return `a string (${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)})`;
  return `${typeof value} ${String(value)}`;
}
