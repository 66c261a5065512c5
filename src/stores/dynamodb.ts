import { createHash } from "node:crypto";
import {
  type AttributeValue,
  BatchGetItemCommand,
  type BatchGetItemCommandOutput,
  BatchWriteItemCommand,
  type BatchWriteItemCommandOutput,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  type DynamoDBClientConfig,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
  UpdateTimeToLiveCommand,
  type WriteRequest,
} from "@aws-sdk/client-dynamodb";
import type { Duration } from "../duration.js";
import { optionalMs } from "../duration.js";
import { CachetError, InvalidOptionError, StoreError } from "../errors.js";
import type { Store, StoreEntry } from "../store.js";
import { asBuffer, causeText, checkKey, checkTtl, describeValue, withTimeout } from "./util.js";

/**
 * What the store needs from a DynamoDB client: `send` (a `DynamoDBClient` from
 * `@aws-sdk/client-dynamodb` v3, or the `DynamoDBDocumentClient` around one).
 */
export interface DynamoDBClientLike {
  // biome-ignore lint/suspicious/noExplicitAny: the SDK's overloads take any of its commands
  send(command: any, options?: { abortSignal?: AbortSignal }): Promise<any>;
}

/** Names of the table's attributes. Each must be distinct. */
export interface DynamoDBAttributeNames {
  /** The partition key (type `S`). @default "pk" */
  key?: string | undefined;
  /** The value, as bytes (type `B`). @default "v" */
  value?: string | undefined;
  /**
   * The expiry in Unix seconds (type `N`): the table's TTL attribute, by which DynamoDB
   * deletes expired items (within a few days, not at once).
   * @default "ttl"
   */
  ttl?: string | undefined;
  /** The expiry in milliseconds since the epoch (type `N`), checked on every read. @default "exp" */
  expiresAt?: string | undefined;
}

/** Options of {@link dynamodbStore}. Pass `client` or `clientConfig`, not both. */
export interface DynamoDBStoreOptions {
  /**
   * The table: a partition key of type `S` named like `attributes.key` (`pk`) and no sort
   * key, with TTL enabled on `attributes.ttl` (`ttl`). {@link createDynamoTable} makes one.
   */
  table: string;
  /**
   * An existing client to use. The store never destroys it (`disconnect()` only stops using
   * it). Mutually exclusive with `clientConfig`.
   */
  client?: DynamoDBClientLike | undefined;
  /**
   * Configuration of the client the store creates (`region`, `credentials`, `endpoint` for
   * DynamoDB Local or dynalite, `maxAttempts`, …). Unless it sets `requestHandler`, the store
   * gives the client a connection timeout of `connectTimeout` and a request timeout of
   * `timeout`.
   * @default {} (the SDK's defaults: region and credentials from the environment)
   */
  clientConfig?: DynamoDBClientConfig | undefined;
  /**
   * Prepended to every key, so that several applications can share one table. May be `""`.
   * @default "cachet:"
   */
  prefix?: string | undefined;
  /** Attribute names; see {@link DynamoDBAttributeNames}. */
  attributes?: DynamoDBAttributeNames | undefined;
  /**
   * Strongly consistent reads. On by default: a cache needs to read what was just written
   * (a value, a tag invalidation, a lease) from any instance. `false` halves the read cost at
   * the price of reads that may be up to about a second behind writes.
   * @default true
   */
  consistentRead?: boolean | undefined;
  /**
   * Longest time one operation may take, retries included, in milliseconds or as a duration
   * string. Past it the call rejects with `E_STORE_TIMEOUT`. Inside a cache the cache's
   * `storeTimeout` (50 ms by default) is usually shorter and applies first.
   * @default 1000
   */
  timeout?: Duration | undefined;
  /**
   * Longest wait for a TCP (and TLS) connection, for the client the store creates, in
   * milliseconds or as a duration string.
   * @default 1000
   */
  connectTimeout?: Duration | undefined;
}

/**
 * The store's state, for health reporting:
 * - `idle`: not used yet;
 * - `ready`: the last call reached DynamoDB;
 * - `failing`: the last call failed to reach it (network, timeout, throttling, missing table);
 * - `closed`: `disconnect()` was called.
 */
export type DynamoDBStoreStatus = "idle" | "ready" | "failing" | "closed";

const DEFAULT_PREFIX = "cachet:";
const DEFAULT_TIMEOUT = 1_000;
const DEFAULT_CONNECT_TIMEOUT = 1_000;
const DEFAULT_ATTRIBUTES: Required<DynamoDBAttributeNames> = {
  key: "pk",
  value: "v",
  ttl: "ttl",
  expiresAt: "exp",
};
/** DynamoDB's largest item (400 KB, counted in KiB), in bytes. */
const MAX_ITEM_SIZE = 400 * 1024;
/** Room for the key (at most 2048 bytes), the attribute names and the two numbers. */
const ITEM_OVERHEAD = 4 * 1024;
/** DynamoDB's longest partition key, in bytes. */
export const DYNAMODB_MAX_KEY_LENGTH = 2048;
/** BatchGetItem takes at most 100 keys. */
const BATCH_GET_LIMIT = 100;
/** BatchWriteItem takes at most 25 requests. */
const BATCH_WRITE_LIMIT = 25;
const HASH_MARK = "#";
/** A UTF-16 surrogate without its pair: such a string has no UTF-8 form. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * The partition key for `key` under `prefix`: `prefix + key` when that is valid UTF-8 of 1 to
 * 2048 bytes and `key` does not start with `#`; otherwise `prefix + "#"` + the SHA-256 of the
 * key (base64url). A readable key never has `#` right after the prefix and a hashed one always
 * does, so they cannot meet; keys with lone surrogates are hashed because DynamoDB would store
 * them all as U+FFFD.
 */
export function dynamoKey(prefix: string, key: string): string {
  if (!key.startsWith(HASH_MARK) && !LONE_SURROGATE.test(key)) {
    const full = prefix + key;
    // A UTF-8 byte is at most 3 per UTF-16 unit: skip the count when it cannot exceed 2048.
    const fits =
      full.length * 3 <= DYNAMODB_MAX_KEY_LENGTH ||
      Buffer.byteLength(full, "utf8") <= DYNAMODB_MAX_KEY_LENGTH;
    if (full.length > 0 && fits) return full;
  }
  return `${prefix}${HASH_MARK}${createHash("sha256").update(key, "utf16le").digest("base64url")}`;
}

/**
 * A {@link Store} on a DynamoDB table through the AWS SDK v3: values as binary attributes,
 * the expiry both as the table's TTL attribute (Unix seconds, for DynamoDB's own clean-up)
 * and in milliseconds, checked on every read — DynamoDB deletes expired items lazily, up to
 * days later, so an expired item is a miss here however long it lingers. `setIfAbsent` and
 * `deleteIfEquals` are conditional writes (an expired item counts as absent), `getMany` is
 * `BatchGetItem` in chunks of 100 keys, retrying unprocessed keys with backoff.
 *
 * DynamoDB has no pub/sub (a cache on it has no bus: in-process tiers are kept coherent by
 * `l1MaxTtl`), and items are at most 400 KB: larger values are rejected (see
 * {@link maxValueSize}). Reads are strongly consistent unless `consistentRead: false`.
 */
export class DynamoDBStore implements Store {
  readonly name = "dynamodb";
  /** The table. */
  readonly table: string;
  /** The prefix prepended to every key. */
  readonly prefix: string;
  /**
   * The largest value accepted, in bytes: DynamoDB's 400 KB item minus 4 KiB for the key and
   * the other attributes.
   */
  readonly maxValueSize = MAX_ITEM_SIZE - ITEM_OVERHEAD;
  readonly #client: DynamoDBClientLike;
  readonly #owned: boolean;
  readonly #attributes: Required<DynamoDBAttributeNames>;
  readonly #consistentRead: boolean;
  readonly #timeout: number;
  readonly #inflight = new Set<Promise<unknown>>();
  #status: DynamoDBStoreStatus = "idle";
  #lastError: Error | undefined;

  constructor(options: DynamoDBStoreOptions) {
    if (options === null || typeof options !== "object") {
      throw new InvalidOptionError(
        "dynamodbStore(options)",
        `expected an object with a \`table\`, got ${describeValue(options)}`,
      );
    }
    this.table = validateTable(options.table, "dynamodbStore.table");
    const { client, clientConfig } = options;
    if (client !== undefined && clientConfig !== undefined) {
      throw new InvalidOptionError(
        "dynamodbStore.client",
        "pass either `client` or `clientConfig`, not both",
      );
    }
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    if (typeof this.prefix !== "string") {
      throw new InvalidOptionError(
        "dynamodbStore.prefix",
        `expected a string, got ${describeValue(this.prefix)}`,
      );
    }
    if (Buffer.byteLength(this.prefix) > 1024 || LONE_SURROGATE.test(this.prefix)) {
      throw new InvalidOptionError(
        "dynamodbStore.prefix",
        "expected well-formed text of at most 1024 bytes",
      );
    }
    this.#attributes = validateAttributes(options.attributes, "dynamodbStore.attributes");
    if (options.consistentRead !== undefined && typeof options.consistentRead !== "boolean") {
      throw new InvalidOptionError(
        "dynamodbStore.consistentRead",
        `expected true or false, got ${describeValue(options.consistentRead)}`,
      );
    }
    this.#consistentRead = options.consistentRead ?? true;
    this.#timeout = optionalMs(options.timeout, "dynamodbStore.timeout", DEFAULT_TIMEOUT, false);
    const connectTimeout = optionalMs(
      options.connectTimeout,
      "dynamodbStore.connectTimeout",
      DEFAULT_CONNECT_TIMEOUT,
      false,
    );
    if (client !== undefined) {
      if (client === null || typeof client !== "object" || typeof client.send !== "function") {
        throw new InvalidOptionError(
          "dynamodbStore.client",
          "expected a DynamoDBClient from @aws-sdk/client-dynamodb",
        );
      }
      this.#client = client;
      this.#owned = false;
    } else {
      if (
        clientConfig !== undefined &&
        (clientConfig === null || typeof clientConfig !== "object")
      ) {
        throw new InvalidOptionError(
          "dynamodbStore.clientConfig",
          `expected an object, got ${describeValue(clientConfig)}`,
        );
      }
      this.#client = new DynamoDBClient({
        ...clientConfig,
        requestHandler: clientConfig?.requestHandler ?? {
          connectionTimeout: connectTimeout,
          requestTimeout: this.#timeout,
          throwOnRequestTimeout: true,
        },
      });
      this.#owned = true;
    }
  }

  /** The store's state; see {@link DynamoDBStoreStatus}. */
  get status(): DynamoDBStoreStatus {
    return this.#status;
  }

  /** The last error seen talking to DynamoDB, if any (kept after recovery, for reporting). */
  get lastError(): Error | undefined {
    return this.#lastError;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const pk = this.#key(key, "get");
    const out = await this.#send("get", (signal) =>
      this.#client.send(
        new GetItemCommand({
          TableName: this.table,
          Key: { [this.#attributes.key]: { S: pk } },
          ConsistentRead: this.#consistentRead,
          ProjectionExpression: "#v, #e",
          ExpressionAttributeNames: {
            "#v": this.#attributes.value,
            "#e": this.#attributes.expiresAt,
          },
        }),
        { abortSignal: signal },
      ),
    );
    return this.#live(out.Item, Date.now());
  }

  async getMany(keys: readonly string[]): Promise<Array<Uint8Array | undefined>> {
    if (!Array.isArray(keys)) {
      throw new InvalidOptionError(
        "dynamodbStore.getMany(keys)",
        `expected an array of strings, got ${describeValue(keys)}`,
      );
    }
    if (keys.length === 0) return [];
    const pks = keys.map((key) => this.#key(key, "getMany"));
    // BatchGetItem rejects a request that names one key twice.
    const unique = [...new Set(pks)];
    const found = new Map<string, Record<string, AttributeValue>>();
    await this.#send("getMany", async (signal) => {
      const chunks: string[][] = [];
      for (let i = 0; i < unique.length; i += BATCH_GET_LIMIT) {
        chunks.push(unique.slice(i, i + BATCH_GET_LIMIT));
      }
      await Promise.all(chunks.map((chunk) => this.#batchGet(chunk, found, signal)));
    });
    const now = Date.now();
    return pks.map((pk) => this.#live(found.get(pk), now));
  }

  async set(key: string, value: Uint8Array, ttlMs: number): Promise<void> {
    const item = this.#item(key, value, ttlMs, "set");
    await this.#send("set", (signal) =>
      this.#client.send(new PutItemCommand({ TableName: this.table, Item: item }), {
        abortSignal: signal,
      }),
    );
  }

  /** A conditional put: succeeds when there is no item, or only an expired one. */
  async setIfAbsent(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    const item = this.#item(key, value, ttlMs, "setIfAbsent");
    try {
      await this.#send("setIfAbsent", (signal) =>
        this.#client.send(
          new PutItemCommand({
            TableName: this.table,
            Item: item,
            ConditionExpression: "attribute_not_exists(#k) OR #e <= :now",
            ExpressionAttributeNames: {
              "#k": this.#attributes.key,
              "#e": this.#attributes.expiresAt,
            },
            ExpressionAttributeValues: { ":now": { N: String(Date.now()) } },
          }),
          { abortSignal: signal },
        ),
      );
      return true;
    } catch (error) {
      if (isConditionFailed(error)) return false;
      throw error;
    }
  }

  /** A conditional delete: only while the item holds `value` and has not expired. */
  async deleteIfEquals(key: string, value: Uint8Array): Promise<boolean> {
    const pk = this.#key(key, "deleteIfEquals");
    const bytes = asBuffer(value, "dynamodbStore.deleteIfEquals(value)");
    try {
      await this.#send("deleteIfEquals", (signal) =>
        this.#client.send(
          new DeleteItemCommand({
            TableName: this.table,
            Key: { [this.#attributes.key]: { S: pk } },
            ConditionExpression: "#v = :v AND #e > :now",
            ExpressionAttributeNames: {
              "#v": this.#attributes.value,
              "#e": this.#attributes.expiresAt,
            },
            ExpressionAttributeValues: { ":v": { B: bytes }, ":now": { N: String(Date.now()) } },
          }),
          { abortSignal: signal },
        ),
      );
      return true;
    } catch (error) {
      if (isConditionFailed(error)) return false;
      throw error;
    }
  }

  /** A conditional update of the expiry: only while the item holds `value` and is live. */
  async extendIfEquals(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    const item = this.#item(key, value, ttlMs, "extendIfEquals");
    const a = this.#attributes;
    try {
      await this.#send("extendIfEquals", (signal) =>
        this.#client.send(
          new UpdateItemCommand({
            TableName: this.table,
            Key: { [a.key]: item[a.key] as AttributeValue },
            UpdateExpression: "SET #e = :e, #t = :t",
            ConditionExpression: "#v = :v AND #e > :now",
            ExpressionAttributeNames: { "#v": a.value, "#e": a.expiresAt, "#t": a.ttl },
            ExpressionAttributeValues: {
              ":v": item[a.value] as AttributeValue,
              ":e": item[a.expiresAt] as AttributeValue,
              ":t": item[a.ttl] as AttributeValue,
              ":now": { N: String(Date.now()) },
            },
          }),
          { abortSignal: signal },
        ),
      );
      return true;
    } catch (error) {
      if (isConditionFailed(error)) return false;
      throw error;
    }
  }

  /** Resolves `true` when it removed an item that had not expired. */
  async delete(key: string): Promise<boolean> {
    const pk = this.#key(key, "delete");
    const out = await this.#send("delete", (signal) =>
      this.#client.send(
        new DeleteItemCommand({
          TableName: this.table,
          Key: { [this.#attributes.key]: { S: pk } },
          ReturnValues: "ALL_OLD",
        }),
        { abortSignal: signal },
      ),
    );
    return this.#live(out.Attributes, Date.now()) !== undefined;
  }

  /**
   * Stop using DynamoDB. Calls in flight get up to `timeout` to finish; then the store's own
   * client is destroyed (its sockets closed; a caller's `client` is left alone). Later calls
   * reject.
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
    if (this.#owned) (this.#client as DynamoDBClient).destroy();
  }

  // ---- batch writes (setMany / deleteMany) ---------------------------------------------------

  /**
   * `BatchWriteItem` puts in chunks of 25 (the chunks in parallel), unprocessed items retried
   * with backoff. A key given twice: the last entry wins.
   */
  async setMany(entries: readonly StoreEntry[]): Promise<void> {
    if (!Array.isArray(entries)) {
      throw new InvalidOptionError(
        "dynamodbStore.setMany(entries)",
        `expected an array of { key, value, ttlMs }, got ${describeValue(entries)}`,
      );
    }
    const items = new Map<string, WriteRequest>();
    for (const entry of entries) {
      const item = this.#item(entry?.key, entry.value, entry.ttlMs, "setMany");
      const pk = item[this.#attributes.key]!.S!;
      items.delete(pk);
      items.set(pk, { PutRequest: { Item: item } });
    }
    await this.#batchWrite("setMany", [...items.values()]);
  }

  /** `BatchWriteItem` deletes in chunks of 25, unprocessed ones retried with backoff. */
  async deleteMany(keys: readonly string[]): Promise<void> {
    if (!Array.isArray(keys)) {
      throw new InvalidOptionError(
        "dynamodbStore.deleteMany(keys)",
        `expected an array of strings, got ${describeValue(keys)}`,
      );
    }
    const pks = new Set(keys.map((key) => this.#key(key, "deleteMany")));
    await this.#batchWrite(
      "deleteMany",
      Array.from(pks, (pk) => ({ DeleteRequest: { Key: { [this.#attributes.key]: { S: pk } } } })),
    );
  }

  async #batchWrite(operation: string, requests: WriteRequest[]): Promise<void> {
    if (requests.length === 0) return;
    await this.#send(operation, async (signal) => {
      const chunks: WriteRequest[][] = [];
      for (let i = 0; i < requests.length; i += BATCH_WRITE_LIMIT) {
        chunks.push(requests.slice(i, i + BATCH_WRITE_LIMIT));
      }
      await Promise.all(
        chunks.map(async (chunk) => {
          let pending = chunk;
          for (let attempt = 0; pending.length > 0; attempt++) {
            if (attempt > 0) await sleep(Math.min(25 * 2 ** (attempt - 1), 500), signal);
            const out: BatchWriteItemCommandOutput = await this.#client.send(
              new BatchWriteItemCommand({ RequestItems: { [this.table]: pending } }),
              { abortSignal: signal },
            );
            pending = out.UnprocessedItems?.[this.table] ?? [];
          }
        }),
      );
    });
  }

  /** One BatchGetItem chunk, with its unprocessed keys retried (backoff) until the signal. */
  async #batchGet(
    keys: string[],
    found: Map<string, Record<string, AttributeValue>>,
    signal: AbortSignal,
  ): Promise<void> {
    const a = this.#attributes;
    let pending: Array<Record<string, AttributeValue>> = keys.map((pk) => ({ [a.key]: { S: pk } }));
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt > 0) await sleep(Math.min(25 * 2 ** (attempt - 1), 500), signal);
      const out: BatchGetItemCommandOutput = await this.#client.send(
        new BatchGetItemCommand({
          RequestItems: {
            [this.table]: {
              Keys: pending,
              ConsistentRead: this.#consistentRead,
              ProjectionExpression: "#k, #v, #e",
              ExpressionAttributeNames: { "#k": a.key, "#v": a.value, "#e": a.expiresAt },
            },
          },
        }),
        { abortSignal: signal },
      );
      for (const item of out.Responses?.[this.table] ?? []) {
        const pk = item[a.key]?.S;
        if (pk !== undefined) found.set(pk, item);
      }
      pending = out.UnprocessedKeys?.[this.table]?.Keys ?? [];
    }
  }

  /** The bytes of an item that has not expired at `now`; undefined otherwise. */
  #live(item: Record<string, AttributeValue> | undefined, now: number): Uint8Array | undefined {
    if (!item) return undefined;
    const expiresAt = Number(item[this.#attributes.expiresAt]?.N);
    // An item without a valid expiry was not written by this store: treat it as absent.
    if (!(expiresAt > now)) return undefined;
    return item[this.#attributes.value]?.B ?? new Uint8Array(0);
  }

  #item(
    key: string,
    value: Uint8Array,
    ttlMs: number,
    operation: string,
  ): Record<string, AttributeValue> {
    const pk = this.#key(key, operation);
    const bytes = asBuffer(value, `dynamodbStore.${operation}(value)`);
    const ttl = checkTtl(ttlMs, `dynamodbStore.${operation}(ttlMs)`);
    if (bytes.byteLength > this.maxValueSize) {
      throw new StoreError(
        this.name,
        operation,
        `value of ${bytes.byteLength} bytes exceeds maxValueSize (${this.maxValueSize} bytes: DynamoDB items are at most 400 KB)`,
      );
    }
    // Milliseconds, capped so that the number stays exact; the TTL attribute in seconds, up.
    const expiresAt = Math.min(Date.now() + Math.ceil(ttl), Number.MAX_SAFE_INTEGER);
    const a = this.#attributes;
    return {
      [a.key]: { S: pk },
      // A copy: the SDK serializes the request later, after the caller may reuse its buffer.
      [a.value]: { B: new Uint8Array(bytes) },
      [a.expiresAt]: { N: String(expiresAt) },
      [a.ttl]: { N: String(Math.ceil(expiresAt / 1000)) },
    };
  }

  #key(key: string, operation: string): string {
    return dynamoKey(this.prefix, checkKey(key, `dynamodbStore.${operation}(key)`));
  }

  /** The state after a call; `closed` stays closed. */
  #mark(status: "ready" | "failing"): void {
    if (this.#status !== "closed") this.#status = status;
  }

  /** Run one operation with its deadline, tracking it for `disconnect()`, mapping errors. */
  async #send<T>(operation: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.#status === "closed") {
      throw new StoreError(this.name, operation, "the store is disconnected");
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.#timeout);
    timer.unref();
    const pending = (async () => run(controller.signal))();
    this.#inflight.add(pending);
    try {
      const out = await pending;
      this.#mark("ready");
      return out;
    } catch (error) {
      if (isConditionFailed(error)) {
        this.#mark("ready");
        throw error;
      }
      this.#lastError = error instanceof Error ? error : new Error(String(error));
      this.#mark("failing");
      if (error instanceof CachetError) throw error;
      // Our deadline (the abort signal), or one of the SDK's own (connection, request).
      const aborted = controller.signal.aborted;
      const timedOut =
        aborted ||
        (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError"));
      throw new StoreError(
        this.name,
        operation,
        aborted ? `no answer within ${this.#timeout} ms (${causeText(error)})` : causeText(error),
        { cause: error, ...(timedOut ? { code: "E_STORE_TIMEOUT" as const } : {}) },
      );
    } finally {
      clearTimeout(timer);
      this.#inflight.delete(pending);
    }
  }
}

/**
 * A DynamoDB store. Creates its client at once (no I/O until the first call).
 *
 * @example
 * import { createCache } from "cachet";
 * import { dynamodbStore } from "cachet/dynamodb";
 *
 * const cache = createCache({
 *   store: dynamodbStore({ table: "cachet", clientConfig: { region: "eu-west-1" } }),
 *   l1: true,
 *   l1MaxTtl: "5s", // no pub/sub on DynamoDB: this bounds how stale another instance's L1 can be
 * });
 */
export function dynamodbStore(options: DynamoDBStoreOptions): DynamoDBStore {
  return new DynamoDBStore(options);
}

/** Options of {@link createDynamoTable}. */
export interface CreateDynamoTableOptions {
  /** The table to create. */
  table: string;
  /** A client to use; otherwise one is made from `clientConfig` and destroyed afterwards. */
  client?: DynamoDBClientLike | undefined;
  /** Configuration of the client made when `client` is not given. */
  clientConfig?: DynamoDBClientConfig | undefined;
  /** Attribute names, as given to the store. Only `key` and `ttl` matter here. */
  attributes?: DynamoDBAttributeNames | undefined;
  /** Longest wait for the table to become active, in milliseconds or as a string. @default "2m" */
  wait?: Duration | undefined;
}

/** What {@link createDynamoTable} did. */
export interface CreateDynamoTableResult {
  /** `false` when the table existed already (with the right key). */
  readonly created: boolean;
  /**
   * `enabled`: TTL is on, on the right attribute (now or before). `unsupported`: the server
   * does not implement `UpdateTimeToLive` (dynalite, some emulators); the store's read-side
   * expiry check still hides expired items, but nothing deletes them.
   */
  readonly ttl: "enabled" | "unsupported";
}

/**
 * Create the store's table if it does not exist — partition key `attributes.key` (type `S`),
 * on-demand billing — wait until it is active, and enable TTL on `attributes.ttl`. Safe to
 * call when the table exists: it checks the key schema and the TTL attribute instead. The AWS
 * CLI equivalent is in docs/stores.md.
 *
 * @example
 * await createDynamoTable({ table: "cachet", clientConfig: { region: "eu-west-1" } });
 */
export async function createDynamoTable(
  options: CreateDynamoTableOptions,
): Promise<CreateDynamoTableResult> {
  if (options === null || typeof options !== "object") {
    throw new InvalidOptionError("createDynamoTable(options)", "expected an object with a `table`");
  }
  const table = validateTable(options.table, "createDynamoTable.table");
  const attributes = validateAttributes(options.attributes, "createDynamoTable.attributes");
  const wait = optionalMs(options.wait, "createDynamoTable.wait", 120_000, false);
  if (options.client !== undefined && options.clientConfig !== undefined) {
    throw new InvalidOptionError(
      "createDynamoTable.client",
      "pass either `client` or `clientConfig`, not both",
    );
  }
  const owned = options.client === undefined;
  const client = options.client ?? new DynamoDBClient(options.clientConfig ?? {});
  try {
    let created = false;
    let description = await describeTable(client, table);
    if (!description) {
      try {
        await client.send(
          new CreateTableCommand({
            TableName: table,
            AttributeDefinitions: [{ AttributeName: attributes.key, AttributeType: "S" }],
            KeySchema: [{ AttributeName: attributes.key, KeyType: "HASH" }],
            BillingMode: "PAY_PER_REQUEST",
          }),
        );
        created = true;
      } catch (error) {
        // Created by someone else in the meantime: fine, it is checked below.
        if ((error as Error).name !== "ResourceInUseException") throw error;
      }
    }
    const deadline = Date.now() + wait;
    for (;;) {
      description = await describeTable(client, table);
      if (description?.TableStatus === "ACTIVE") break;
      if (Date.now() > deadline) {
        throw new CachetError(
          "E_STORE",
          `cachet: dynamodb table "${table}" is not active after ${wait} ms (status ${description?.TableStatus ?? "missing"})`,
        );
      }
      await sleep(200);
    }
    const keySchema = description.KeySchema ?? [];
    const keyType = description.AttributeDefinitions?.find(
      (d: { AttributeName?: string }) => d.AttributeName === attributes.key,
    )?.AttributeType;
    if (
      keySchema.length !== 1 ||
      keySchema[0]?.AttributeName !== attributes.key ||
      keySchema[0]?.KeyType !== "HASH" ||
      keyType !== "S"
    ) {
      throw new CachetError(
        "E_STORE",
        `cachet: dynamodb table "${table}" exists with another key: expected a partition key "${attributes.key}" of type S and no sort key`,
      );
    }
    return { created, ttl: await enableTtl(client, table, attributes.ttl) };
  } finally {
    if (owned) (client as DynamoDBClient).destroy();
  }
}

// biome-ignore lint/suspicious/noExplicitAny: the SDK's TableDescription, loosely
async function describeTable(client: DynamoDBClientLike, table: string): Promise<any> {
  try {
    return (await client.send(new DescribeTableCommand({ TableName: table }))).Table;
  } catch (error) {
    if ((error as Error).name === "ResourceNotFoundException") return undefined;
    throw error;
  }
}

async function enableTtl(
  client: DynamoDBClientLike,
  table: string,
  attribute: string,
): Promise<"enabled" | "unsupported"> {
  let current: { TimeToLiveStatus?: string; AttributeName?: string } | undefined;
  try {
    current = (await client.send(new DescribeTimeToLiveCommand({ TableName: table })))
      .TimeToLiveDescription;
  } catch (error) {
    if (isUnknownOperation(error)) return "unsupported";
    throw error;
  }
  const status = current?.TimeToLiveStatus;
  if (status === "ENABLED" || status === "ENABLING") {
    if (current?.AttributeName === attribute) return "enabled";
    throw new CachetError(
      "E_STORE",
      `cachet: dynamodb table "${table}" has TTL on "${current?.AttributeName}", not on "${attribute}"; change one of them (a table has one TTL attribute)`,
    );
  }
  try {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: table,
        TimeToLiveSpecification: { Enabled: true, AttributeName: attribute },
      }),
    );
  } catch (error) {
    if (isUnknownOperation(error)) return "unsupported";
    throw error;
  }
  return "enabled";
}

function isUnknownOperation(error: unknown): boolean {
  const name = (error as { name?: unknown })?.name;
  return name === "UnknownOperationException" || name === "UnrecognizedClientException";
}

function isConditionFailed(error: unknown): boolean {
  return (error as { name?: unknown })?.name === "ConditionalCheckFailedException";
}

/** Wait `ms`, or reject as soon as `signal` aborts. The timer is unref'd. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error("aborted"));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Error("aborted"));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    timer.unref();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function validateTable(table: unknown, option: string): string {
  if (typeof table !== "string" || !/^[A-Za-z0-9_.-]{3,255}$/.test(table)) {
    throw new InvalidOptionError(
      option,
      `expected a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ . -), got ${describeValue(table)}`,
    );
  }
  return table;
}

function validateAttributes(
  attributes: DynamoDBAttributeNames | undefined,
  option: string,
): Required<DynamoDBAttributeNames> {
  if (attributes === undefined) return DEFAULT_ATTRIBUTES;
  if (attributes === null || typeof attributes !== "object") {
    throw new InvalidOptionError(option, `expected an object, got ${describeValue(attributes)}`);
  }
  const out = { ...DEFAULT_ATTRIBUTES };
  for (const name of Object.keys(DEFAULT_ATTRIBUTES) as Array<keyof DynamoDBAttributeNames>) {
    const value = attributes[name];
    if (value === undefined) continue;
    if (typeof value !== "string" || value.length === 0 || Buffer.byteLength(value) > 255) {
      throw new InvalidOptionError(
        `${option}.${name}`,
        `expected an attribute name of 1 to 255 bytes, got ${describeValue(value)}`,
      );
    }
    out[name] = value;
  }
  if (new Set(Object.values(out)).size !== 4) {
    throw new InvalidOptionError(
      option,
      `the key, value, ttl and expiresAt attributes must be distinct, got ${JSON.stringify(out)}`,
    );
  }
  return out;
}
