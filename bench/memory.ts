/**
 * Memory after N distinct keys in an in-process store, run by bench/run.ts in its own process
 * (with `--expose-gc` and a capped heap): each key's value is a fresh parse of the posts (as a
 * handler produces it), inserted through the library's usual call. Prints `progress <keys>`
 * lines and, at the end, one `MEMORY_JSON …` line with heap and RSS after a full GC.
 *
 * Usage: node --expose-gc --import tsx bench/memory.ts <lib> <upstream-url> [keys]
 *   lib: cachet | bentocache | cache-manager | acd
 */
import { createCache as createAcd } from "async-cache-dedupe";
import { BentoCache, bentostore } from "bentocache";
import { memoryDriver } from "bentocache/drivers/memory";
import { createCache as createCacheManager } from "cache-manager";
import { createCache } from "cachet";

export interface MemoryResult {
  readonly lib: string;
  readonly keys: number;
  readonly seconds: number;
  readonly heapUsed: number;
  readonly rss: number;
  /** Heap and RSS before the first insertion (after a GC). */
  readonly baseHeapUsed: number;
  readonly baseRss: number;
  /** Highest RSS of the process during the run (getrusage maxrss). */
  readonly peakRss: number;
  /** Of the first and the last key inserted, which are still cached (a bounded store evicts the first). */
  readonly firstKeyKept: boolean;
  readonly lastKeyKept: boolean;
}

const gc = (globalThis as { gc?: () => void }).gc;

async function main(): Promise<void> {
  const [lib, upstreamUrl, rawKeys] = process.argv.slice(2);
  const keys = Number(rawKeys ?? "100000");
  if (!lib || !upstreamUrl || !gc) {
    throw new Error(
      "usage: node --expose-gc --import tsx bench/memory.ts <lib> <upstream-url> [keys]",
    );
  }
  const text = await (await fetch(`${upstreamUrl}/posts`)).text();
  const factory = () => JSON.parse(text) as unknown;
  const ttl = 60_000;
  const calls = { n: 0 };
  const counted = () => {
    calls.n++;
    return factory();
  };

  let set: (key: string) => Promise<unknown>;
  let close: () => Promise<unknown> = async () => {};
  switch (lib) {
    case "cachet": {
      const cache = createCache({ ttl });
      set = (key) => cache.getOrSet(key, counted);
      close = () => cache.close();
      break;
    }
    case "bentocache": {
      const bento = new BentoCache({
        default: "cache",
        stores: { cache: bentostore().useL1Layer(memoryDriver({ maxSize: "100mb" })) },
      });
      set = (key) => bento.getOrSet({ key, factory: counted, ttl });
      close = () => bento.disconnectAll();
      break;
    }
    case "cache-manager": {
      const cache = createCacheManager({ ttl });
      set = (key) => cache.wrap(key, counted, ttl);
      close = () => cache.disconnect();
      break;
    }
    case "acd": {
      const cache = createAcd({ ttl: ttl / 1000, storage: { type: "memory" } }).define(
        "getPosts",
        (_key: string) => counted(),
      );
      set = async (key) => cache.getPosts(key);
      break;
    }
    default:
      throw new Error(`unknown lib ${lib}`);
  }

  gc();
  const base = process.memoryUsage();
  const started = performance.now();
  for (let i = 0; i < keys; i++) {
    await set(`posts:${i}`);
    if ((i + 1) % 10_000 === 0) console.log(`progress ${i + 1} ${process.memoryUsage().rss}`);
  }
  const seconds = (performance.now() - started) / 1000;
  gc();
  const after = process.memoryUsage();
  // A key is still cached when reading it does not call the factory again.
  const kept = async (key: string) => {
    const before = calls.n;
    await set(key);
    return calls.n === before;
  };
  const lastKeyKept = await kept(`posts:${keys - 1}`);
  const firstKeyKept = await kept("posts:0");
  const result: MemoryResult = {
    lib,
    keys,
    seconds,
    heapUsed: after.heapUsed,
    rss: after.rss,
    baseHeapUsed: base.heapUsed,
    baseRss: base.rss,
    peakRss: process.resourceUsage().maxRSS * 1024,
    firstKeyKept,
    lastKeyKept,
  };
  await close();
  console.log(`MEMORY_JSON ${JSON.stringify(result)}`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? error.stack : error);
    process.exit(1);
  },
);
