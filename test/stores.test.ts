import { after } from "node:test";
import { memoryStore } from "../src/stores/memory.js";
import { redisStore } from "../src/stores/redis.js";
import { storeContract } from "../src/testing/store-contract.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";

const ALL = [
  "getMany",
  "setMany",
  "deleteMany",
  "setIfAbsent",
  "deleteIfEquals",
  "extendIfEquals",
  "extendManyIfEquals",
  "takeLease",
  "disconnect",
] as const;
const REDIS = [...ALL, "publish", "subscribe"] as const;
/** Short timeouts for the server-down tests (defaults are seconds). */
const redisAt = ({ host, port }: { host: string; port: number }) =>
  redisStore({ url: `redis://${host}:${port}`, connectTimeout: 500, commandTimeout: 500 });

storeContract("memory", async () => ({ store: memoryStore() }), { capabilities: ALL });

// One real redis-server for the file, started on first use.
let server: Promise<RedisServer> | undefined;
after(async () => {
  if (server) await (await server).stop();
});

storeContract(
  "redis",
  async () => {
    server ??= startRedis();
    const { url } = await server;
    return { store: redisStore({ url }) };
  },
  { capabilities: REDIS, storeAt: redisAt, downTimeout: 2_000 },
);

storeContract(
  "redis, empty prefix, RESP2",
  async () => {
    server ??= startRedis();
    const { url } = await server;
    return { store: redisStore({ url, prefix: "", clientOptions: { RESP: 2 } }) };
  },
  { capabilities: REDIS },
);
