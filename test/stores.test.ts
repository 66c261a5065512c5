import { after } from "node:test";
import { memoryStore } from "../src/stores/memory.js";
import { redisStore } from "../src/stores/redis.js";
import { storeContract } from "../src/testing/store-contract.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";

const ALL = ["getMany", "setIfAbsent", "deleteIfEquals", "disconnect"] as const;

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
  { capabilities: ALL },
);

storeContract(
  "redis, empty prefix, RESP2",
  async () => {
    server ??= startRedis();
    const { url } = await server;
    return { store: redisStore({ url, prefix: "", clientOptions: { RESP: 2 } }) };
  },
  { capabilities: ALL },
);
