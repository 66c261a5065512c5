// Type test for the Memcached and DynamoDB stores and cachet/testing: compiled with
// `tsc --noEmit` by test/types.test.ts. Every `@ts-expect-error` line must be an error.
import { createCache, type Store } from "../../src/index.js";
import {
  createDynamoTable,
  type DynamoDBStoreStatus,
  dynamodbStore,
} from "../../src/stores/dynamodb.js";
import { type MemcachedStoreStatus, memcachedStore } from "../../src/stores/memcached.js";
import { type StoreContractOptions, storeContract } from "../../src/testing/index.js";

// Both are stores the cache takes.
const memcached: Store = memcachedStore({ servers: "127.0.0.1:11211", timeout: "500ms" });
const dynamodb: Store = dynamodbStore({ table: "cachet", clientConfig: { region: "eu-west-1" } });
createCache({ store: memcached, l1: true, l1MaxTtl: "5s" });
createCache({ store: dynamodb, l1: true });

memcachedStore({ servers: ["a:11211", "user:pass@b:11211"], maxItemSize: 8 * 1024 * 1024 });
// @ts-expect-error maxItemSize is a number of bytes
memcachedStore({ maxItemSize: "8m" });
// @ts-expect-error servers is a string or an array of strings
memcachedStore({ servers: 11211 });

// @ts-expect-error table is required
dynamodbStore({});
// @ts-expect-error attribute names are strings
dynamodbStore({ table: "cachet", attributes: { key: 1 } });
dynamodbStore({ table: "cachet", consistentRead: false, attributes: { ttl: "expires" } });

export const created: Promise<{ created: boolean; ttl: "enabled" | "unsupported" }> =
  createDynamoTable({ table: "cachet" });

// Status values for health endpoints.
export const a: MemcachedStoreStatus = memcachedStore().status;
export const b: DynamoDBStoreStatus = dynamodbStore({ table: "cachet" }).status;
// @ts-expect-error "reconnecting" is Redis's, not Memcached's
export const c: MemcachedStoreStatus = "reconnecting";

// The contract suite's options.
const options: StoreContractOptions = {
  capabilities: ["getMany", "setIfAbsent", "deleteIfEquals", "publish", "subscribe", "disconnect"],
  storeAt: ({ host, port }) => memcachedStore({ servers: `${host}:${port}` }),
  downTimeout: 1_000,
};
// @ts-expect-error "lease" is not a store method
export const wrongCapability: StoreContractOptions = { capabilities: ["lease"] };
export const register: typeof storeContract = storeContract;
export { options };
