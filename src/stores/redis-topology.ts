/**
 * How the Redis store reaches Redis Cluster, Redis Sentinel and ioredis: each client is
 * adapted to the small interface the store drives for a standalone node-redis client
 * ({@link RedisClientLike}), so that the store stays one implementation and its standalone
 * path is untouched. Internal to `cachet/redis`.
 */
import type { RedisArgument } from "redis";
import type { RedisClientLike, RedisCommander } from "./redis.js";

/** Replies as Buffers (`RESP_TYPES.BLOB_STRING` is `$`, 36), without importing `redis`. */
export const BUFFER_REPLIES = { 36: Buffer } as const;
export type BufferReplies = typeof BUFFER_REPLIES;

type Listener = (...args: unknown[]) => void;

/** A host and port, as node-redis reports cluster nodes and Sentinel masters. */
export interface RedisNodeAddress {
  readonly host: string;
  readonly port: number;
}

// ---- hash slots ------------------------------------------------------------------------------

/** CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with. */
const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[i] = crc & 0xffff;
  }
  return table;
})();

/**
 * The cluster hash slot of `key` (0–16383), computed as Redis does (`keyHashSlot` in
 * `cluster.c`): over the UTF-8 bytes, or only over the hash tag — the bytes between the first
 * `{` and the first `}` after it — when that tag is not empty.
 */
export function keySlot(key: RedisArgument): number {
  const bytes = typeof key === "string" ? Buffer.from(key, "utf8") : key;
  let start = 0;
  let end = bytes.length;
  const open = bytes.indexOf(0x7b);
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc = ((crc << 8) ^ CRC16_TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!) & 0xffff;
  }
  return crc & 16383;
}

/**
 * `MGET` that never goes cross-slot: keys are grouped by hash slot and each group is one
 * `MGET` (the groups in parallel), the replies put back in the order of `keys`. A group that
 * meets `TRYAGAIN` (its slot is being migrated and its keys are split between two nodes) is
 * read key by key instead, each `GET` following the `ASK` redirection on its own.
 */
/** Indexes of `keys` grouped by hash slot, in the order each slot first appears. */
export function indexesBySlot(keys: readonly RedisArgument[]): number[][] {
  const groups = new Map<number, number[]>();
  for (let i = 0; i < keys.length; i++) {
    const slot = keySlot(keys[i]!);
    const group = groups.get(slot);
    if (group) group.push(i);
    else groups.set(slot, [i]);
  }
  return [...groups.values()];
}

export async function mgetBySlot(
  keys: readonly RedisArgument[],
  mget: (keys: RedisArgument[]) => Promise<Array<Buffer | null>>,
  get: (key: RedisArgument) => Promise<Buffer | null>,
): Promise<Array<Buffer | null>> {
  const groups = indexesBySlot(keys);
  const readGroup = (group: RedisArgument[]) =>
    group.length === 1
      ? get(group[0]!).then((reply) => [reply])
      : mget(group).catch((error: unknown) => {
          if (error instanceof Error && error.message.startsWith("TRYAGAIN"))
            return Promise.all(group.map(get));
          throw error;
        });
  if (groups.length === 1) return readGroup([...keys]);
  const out = new Array<Buffer | null>(keys.length);
  await Promise.all(
    groups.map(async (indexes) => {
      const replies = await readGroup(indexes.map((i) => keys[i]!));
      for (let j = 0; j < indexes.length; j++) out[indexes[j]!] = replies[j] ?? null;
    }),
  );
  return out;
}

// ---- node-redis Cluster ----------------------------------------------------------------------

/** What the store needs from a node-redis cluster client (`createCluster()`, v5 or v6). */
export interface RedisClusterLike {
  readonly isOpen: boolean;
  readonly isReady: boolean;
  /** The masters known now (empty before the first discovery). */
  readonly masters: ReadonlyArray<RedisNodeAddress>;
  readonly replicas: ReadonlyArray<RedisNodeAddress>;
  /** Each hash slot's shard (empty before the first discovery). */
  readonly slots: ReadonlyArray<{ readonly master: object } | undefined>;
  readonly _options: {
    readonly rootNodes: ReadonlyArray<{
      readonly url?: string | undefined;
      readonly socket?: object | undefined;
    }>;
    readonly defaults?: object | undefined;
    readonly keyPrefix?: RedisArgument | undefined;
    readonly nodeAddressMap?: unknown | undefined;
    readonly RESP?: unknown | undefined;
  };
  connect(): Promise<unknown>;
  withTypeMapping(mapping: BufferReplies): RedisClusterSender;
  getSlotRandomNode(slot: number): unknown;
  /** The connection to one node (connected on demand). */
  nodeClient(node: never): Promise<{
    sendCommand<T = unknown>(args: RedisArgument[]): Promise<T>;
  }>;
  on(event: string, listener: Listener): unknown;
  off(event: string, listener: Listener): unknown;
  close(): Promise<void>;
  destroy(): void;
}

interface RedisClusterSender {
  sendCommand<T = unknown>(
    firstKey: RedisArgument | undefined,
    isReadonly: boolean | undefined,
    args: RedisArgument[],
  ): Promise<T>;
}

/**
 * Routes the store's raw commands through a node-redis cluster client: by the key (the
 * script's key for `EVAL`/`EVALSHA`), `MGET` split by slot, `PUBLISH` by its channel. Classic
 * pub/sub is broadcast to the whole cluster, so any node would do for `PUBLISH`, but one
 * publisher's messages keep their order only when they all leave from the same node (each
 * node forwards over its own cluster-bus links): the channel's slot owner is that node.
 * node-redis follows `MOVED` and `ASK`.
 */
class ClusterCommander implements RedisCommander {
  readonly #cluster: RedisClusterSender;
  readonly #raw: RedisClusterLike;

  constructor(cluster: RedisClusterSender, raw: RedisClusterLike) {
    this.#cluster = cluster;
    this.#raw = raw;
  }

  sendCommand<T = unknown>(args: ReadonlyArray<RedisArgument>): Promise<T> {
    const cluster = this.#cluster;
    const argv = args as RedisArgument[];
    switch (argv[0]) {
      case "GET":
        return cluster.sendCommand<T>(argv[1], true, argv);
      case "MGET":
        return mgetBySlot(
          argv.slice(1),
          (keys) => cluster.sendCommand(keys[0], true, ["MGET", ...keys]),
          (key) => cluster.sendCommand(key, true, ["GET", key]),
        ) as Promise<T>;
      case "EVAL":
      case "EVALSHA":
        return cluster.sendCommand<T>(argv[3], false, argv);
      case "PUBLISH":
        return this.#publish<T>(argv);
      default:
        return cluster.sendCommand<T>(argv[1], false, argv);
    }
  }

  /**
   * node-redis sends `PUBLISH` (a command without a key) to a random node: send it to the
   * master of the channel's slot instead, always the same node for one channel.
   */
  async #publish<T>(argv: RedisArgument[]): Promise<T> {
    const shard = this.#raw.slots[keySlot(argv[1]!)];
    if (!shard) throw new Error("the cluster's layout is not known yet");
    const node = await this.#raw.nodeClient(shard.master as never);
    return node.sendCommand<T>(argv);
  }
}

/** A node-redis cluster client seen as the store's client. */
export class ClusterClient implements RedisClientLike {
  readonly cluster: RedisClusterLike;

  constructor(cluster: RedisClusterLike) {
    this.cluster = cluster;
  }

  get isOpen(): boolean {
    return this.cluster.isOpen;
  }

  get isReady(): boolean {
    return this.cluster.isReady;
  }

  get options() {
    return { keyPrefix: this.cluster._options?.keyPrefix };
  }

  connect(): Promise<unknown> {
    return this.cluster.connect();
  }

  withTypeMapping(mapping: BufferReplies): RedisCommander {
    return new ClusterCommander(this.cluster.withTypeMapping(mapping), this.cluster);
  }

  on(event: string, listener: Listener): this {
    for (const name of clusterEvents(event)) this.cluster.on(name, listener);
    return this;
  }

  off(event: string, listener: Listener): this {
    for (const name of clusterEvents(event)) this.cluster.off(name, listener);
    return this;
  }

  close(): Promise<void> {
    return this.cluster.close();
  }

  destroy(): void {
    this.cluster.destroy();
  }

  /** Every node known now (masters first), mapped through `nodeAddressMap`. */
  nodes(): RedisNodeAddress[] {
    const map = this.cluster._options?.nodeAddressMap;
    return [...this.cluster.masters, ...this.cluster.replicas].map((node) => {
      const address = `${node.host}:${node.port}`;
      const mapped =
        typeof map === "function"
          ? (map as (address: string) => RedisNodeAddress | undefined)(address)
          : (map as Record<string, RedisNodeAddress> | undefined)?.[address];
      return mapped ?? { host: node.host, port: node.port };
    });
  }
}

/**
 * The cluster reports readiness as `connect` (after the first discovery), and errors of its
 * node connections as `node-error`: both count as the store's `ready` and `error`.
 */
function clusterEvents(event: string): string[] {
  if (event === "ready") return ["connect"];
  if (event === "error") return ["error", "node-error"];
  return [event];
}

export function isRedisCluster(client: object): client is RedisClusterLike {
  const c = client as Record<string, unknown>;
  return (
    typeof c.withTypeMapping === "function" &&
    typeof c.getSlotRandomNode === "function" &&
    typeof c.nodeClient === "function"
  );
}

// ---- node-redis Sentinel ---------------------------------------------------------------------

/** What the store needs from a node-redis Sentinel client (`createSentinel()`). */
export interface RedisSentinelLike {
  readonly isOpen: boolean;
  readonly isReady: boolean;
  readonly _keyPrefix?: RedisArgument | undefined;
  /** The master this client is connected to, when its connection is ready. */
  getMasterNode(): RedisNodeAddress | undefined;
  getSentinelNode(): RedisNodeAddress | undefined;
  connect(): Promise<unknown>;
  withTypeMapping(mapping: BufferReplies): RedisSentinelSender;
  duplicate(): RedisSentinelLike;
  subscribe(
    channels: string,
    listener: (message: Buffer, channel: Buffer) => unknown,
    bufferMode: true,
  ): Promise<unknown>;
  unsubscribe(channels?: string): Promise<unknown>;
  on(event: string, listener: Listener): unknown;
  off(event: string, listener: Listener): unknown;
  close(): Promise<void>;
  destroy(): Promise<void>;
}

interface RedisSentinelSender {
  sendCommand<T = unknown>(isReadonly: boolean | undefined, args: RedisArgument[]): Promise<T>;
}

/** A node-redis Sentinel client seen as the store's client. */
export class SentinelClient implements RedisClientLike {
  readonly sentinel: RedisSentinelLike;

  constructor(sentinel: RedisSentinelLike) {
    this.sentinel = sentinel;
  }

  get isOpen(): boolean {
    return this.sentinel.isOpen;
  }

  /**
   * Ready only while the master connection is: node-redis would otherwise hold a command
   * until its next topology discovery (a failover takes seconds), and the store fails fast.
   */
  get isReady(): boolean {
    return this.sentinel.isReady && this.sentinel.getMasterNode() !== undefined;
  }

  get options() {
    return { keyPrefix: this.sentinel._keyPrefix };
  }

  connect(): Promise<unknown> {
    return this.sentinel.connect();
  }

  withTypeMapping(mapping: BufferReplies): RedisCommander {
    const sentinel = this.sentinel.withTypeMapping(mapping);
    return {
      // Reads may go to replicas when the client has a replica pool (`replicaPoolSize`).
      sendCommand: <T>(args: ReadonlyArray<RedisArgument>) =>
        sentinel.sendCommand<T>(args[0] === "GET" || args[0] === "MGET", args as RedisArgument[]),
    };
  }

  on(event: string, listener: Listener): this {
    this.sentinel.on(sentinelEvent(event), listener);
    return this;
  }

  off(event: string, listener: Listener): this {
    this.sentinel.off(sentinelEvent(event), listener);
    return this;
  }

  close(): Promise<void> {
    return this.sentinel.close();
  }

  destroy(): void {
    this.sentinel.destroy().catch(() => {});
  }

  subscribe(
    channel: string,
    listener: (message: Buffer, channel: Buffer) => unknown,
    bufferMode: true,
  ): Promise<void> {
    return this.sentinel.subscribe(channel, listener, bufferMode).then(() => {});
  }

  unsubscribe(channel?: string): Promise<void> {
    return this.sentinel.unsubscribe(channel).then(() => {});
  }
}

/** A Sentinel client never gives up on its own; it ends when destroyed or when it cannot start. */
function sentinelEvent(event: string): string {
  return event === "terminated" ? "end" : event;
}

export function isRedisSentinel(client: object): client is RedisSentinelLike {
  const c = client as Record<string, unknown>;
  return typeof c.getMasterNode === "function" && typeof c.getSentinelNode === "function";
}

// ---- ioredis ---------------------------------------------------------------------------------

/** What the store needs from an ioredis client (`new Redis()` or `new Cluster()`, v5). */
export interface IoRedisLike {
  readonly status: string;
  readonly isCluster?: boolean | undefined;
  readonly options?: {
    readonly host?: string | undefined;
    readonly port?: number | undefined;
    readonly keyPrefix?: string | undefined;
    readonly redisOptions?: { readonly keyPrefix?: string | undefined } | undefined;
  };
  callBuffer(command: string, args: Array<string | Buffer | number>): Promise<unknown>;
  connect(): Promise<void>;
  duplicate(override?: object): IoRedisLike;
  /** Cluster only: the node connections. */
  nodes?(role?: "all" | "master" | "slave"): IoRedisLike[];
  subscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  quit(): Promise<unknown>;
  disconnect(): void;
  on(event: string, listener: Listener): unknown;
  off(event: string, listener: Listener): unknown;
}

const IOREDIS_OPEN = new Set(["connecting", "connect", "ready", "reconnecting"]);

/**
 * An ioredis client (or Cluster) seen as the store's client. Commands go through
 * `callBuffer`, so replies come back as Buffers; on a Cluster, `MGET` is split by slot and
 * `PUBLISH` always leaves from the same master (ioredis would pick a random node for a command
 * without a key, and the bus's messages would arrive out of order); ioredis routes every other
 * command by its key and follows `MOVED`/`ASK` itself.
 */
export class IoRedisClient implements RedisClientLike {
  readonly client: IoRedisLike;
  readonly #channels = new Map<string, (message: Buffer, channel: Buffer) => unknown>();
  #onMessage: Listener | undefined;

  constructor(client: IoRedisLike) {
    this.client = client;
  }

  get isCluster(): boolean {
    return this.client.isCluster === true;
  }

  get isOpen(): boolean {
    return IOREDIS_OPEN.has(this.client.status);
  }

  get isReady(): boolean {
    return this.client.status === "ready";
  }

  get options() {
    const options = this.client.options;
    return { keyPrefix: options?.keyPrefix || options?.redisOptions?.keyPrefix || undefined };
  }

  connect(): Promise<unknown> {
    return this.client.connect();
  }

  withTypeMapping(): RedisCommander {
    const client = this.client;
    const call = (name: string, args: RedisArgument[]) => client.callBuffer(name, args);
    if (!this.isCluster) {
      return {
        sendCommand: <T>(args: ReadonlyArray<RedisArgument>) =>
          call(args[0] as string, args.slice(1) as RedisArgument[]) as Promise<T>,
      };
    }
    return {
      sendCommand: <T>(args: ReadonlyArray<RedisArgument>) => {
        if (args[0] === "PUBLISH")
          return this.#publisher().callBuffer("PUBLISH", args.slice(1)) as Promise<T>;
        if (args[0] !== "MGET") return call(args[0] as string, args.slice(1)) as Promise<T>;
        return mgetBySlot(
          args.slice(1),
          (keys) => call("MGET", keys) as Promise<Array<Buffer | null>>,
          (key) => call("GET", [key]) as Promise<Buffer | null>,
        ) as Promise<T>;
      },
    };
  }

  /** The cluster's master with the lowest address: every publisher of a fleet agrees on it. */
  #publisher(): IoRedisLike {
    let chosen: IoRedisLike = this.client;
    let lowest: string | undefined;
    for (const node of this.client.nodes?.("master") ?? []) {
      const address = `${node.options?.host}:${node.options?.port}`;
      if (lowest === undefined || address < lowest) {
        lowest = address;
        chosen = node;
      }
    }
    return chosen;
  }

  on(event: string, listener: Listener): this {
    this.client.on(ioredisEvent(event), listener);
    return this;
  }

  off(event: string, listener: Listener): this {
    this.client.off(ioredisEvent(event), listener);
    return this;
  }

  close(): Promise<void> {
    return this.client.quit().then(() => {});
  }

  destroy(): void {
    this.client.disconnect();
  }

  subscribe(
    channel: string,
    listener: (message: Buffer, channel: Buffer) => unknown,
    _bufferMode: true,
  ): Promise<void> {
    this.#channels.set(channel, listener);
    if (!this.#onMessage) {
      this.#onMessage = (name, message) => {
        const key = (name as Buffer).toString();
        this.#channels.get(key)?.(message as Buffer, name as Buffer);
      };
      this.client.on("messageBuffer", this.#onMessage);
    }
    return this.client.subscribe(channel).then(() => {});
  }

  unsubscribe(channel?: string): Promise<void> {
    if (channel === undefined) this.#channels.clear();
    else this.#channels.delete(channel);
    return (
      channel === undefined ? this.client.unsubscribe() : this.client.unsubscribe(channel)
    ).then(() => {});
  }

  /**
   * A new connection for the bus subscriber, owned by the store: no reconnection of its own
   * (the store replaces it when it ends, and knows messages may have been missed), no offline
   * queue. On a Cluster it goes to one node, chosen by `attempt` (classic pub/sub reaches
   * subscribers on every node).
   */
  subscriberConnection(attempt: number, connectTimeout: number): IoRedisClient {
    const overrides = {
      lazyConnect: true,
      enableOfflineQueue: false,
      retryStrategy: () => null,
      autoResubscribe: false,
      connectTimeout,
      maxRetriesPerRequest: 0,
    };
    if (!this.isCluster) return new IoRedisClient(this.client.duplicate(overrides));
    const nodes = this.client.nodes?.("all") ?? [];
    if (nodes.length === 0) throw new Error("no ioredis cluster node is known yet");
    return new IoRedisClient(nodes[attempt % nodes.length]!.duplicate(overrides));
  }
}

/** ioredis says `end` when a connection is closed for good (no more reconnection). */
function ioredisEvent(event: string): string {
  return event === "terminated" ? "end" : event;
}

export function isIoRedis(client: object): client is IoRedisLike {
  const c = client as Record<string, unknown>;
  return typeof c.callBuffer === "function" && typeof c.status === "string";
}

// ---- URLs ------------------------------------------------------------------------------------

/** A `redis+cluster://` or `redis+sentinel://` URL, parsed. */
export interface MultiHostUrl {
  readonly kind: "cluster" | "sentinel";
  readonly tls: boolean;
  readonly hosts: RedisNodeAddress[];
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** The path without its leading `/`, decoded (the Sentinel master's name). */
  readonly path: string;
}

const MULTI_HOST_URL = /^(rediss?)\+(cluster|sentinel):\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?$/;

/**
 * Parse `redis+cluster://[user:password@]host:port,host:port` (or `rediss+cluster://` for TLS)
 * and `redis+sentinel://[user:password@]host:port,host:port/<master name>`; `undefined` for
 * any other scheme. Throws a plain `Error` describing what is wrong.
 */
export function parseMultiHostUrl(url: string): MultiHostUrl | undefined {
  const scheme = /^([a-z+]+):/i.exec(url)?.[1]?.toLowerCase();
  if (!scheme?.includes("+")) return undefined;
  const match = MULTI_HOST_URL.exec(url);
  if (!match) {
    throw new Error(
      "expected redis+cluster://[user:password@]host:port[,host:port…] or redis+sentinel://[user:password@]host:port[,host:port…]/<master name>",
    );
  }
  const [, base, kind, userinfo, hostList, rawPath] = match as unknown as [
    string,
    "redis" | "rediss",
    "cluster" | "sentinel",
    string | undefined,
    string,
    string | undefined,
  ];
  const defaultPort = kind === "sentinel" ? 26379 : 6379;
  const hosts = hostList.split(",").map((host) => {
    let parsed: URL;
    try {
      parsed = new URL(`redis://${host}`);
    } catch {
      throw new Error(`not a valid host:port: ${JSON.stringify(host)}`);
    }
    if (parsed.hostname === "" || parsed.pathname !== "" || parsed.username !== "") {
      throw new Error(`not a valid host:port: ${JSON.stringify(host)}`);
    }
    return {
      host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: parsed.port === "" ? defaultPort : Number(parsed.port),
    };
  });
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined) {
    const credentials = new URL(`redis://${userinfo}@localhost`);
    username = credentials.username === "" ? undefined : decodeURIComponent(credentials.username);
    password = credentials.password === "" ? undefined : decodeURIComponent(credentials.password);
  }
  const path = decodeURIComponent((rawPath ?? "").replace(/^\//, ""));
  if (kind === "cluster" && path !== "" && path !== "0") {
    throw new Error(`a cluster has only database 0, got the path ${JSON.stringify(rawPath)}`);
  }
  if (kind === "sentinel" && (path === "" || path.includes("/"))) {
    throw new Error("expected the Sentinel master's name as the path, e.g. /mymaster");
  }
  return { kind, tls: base === "rediss", hosts, username, password, path };
}
