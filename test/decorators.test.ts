import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Cache } from "../src/index.js";
import { cached, createCache, InvalidOptionError } from "../src/index.js";
import { manualClock, recordEvents } from "./helpers/core.js";

function setKeys(cache: Cache): () => string[] {
  const events = recordEvents(cache);
  return () => events.of("set").map((e) => e.key);
}

describe("@cache.cached", () => {
  it("caches a method under ClassName.method:args, without this in the key", async () => {
    const cache = createCache({ clock: manualClock() });
    const keys = setKeys(cache);
    class PostsService {
      calls = 0;
      constructor(readonly source: string) {}

      @cache.cached({ ttl: "60s" })
      async list(userId?: number): Promise<string> {
        this.calls++;
        return `${this.source}:${userId}`;
      }
    }
    const a = new PostsService("a");
    const b = new PostsService("b");
    assert.equal(await a.list(1), "a:1");
    assert.equal(await a.list(1), "a:1");
    assert.equal(await a.list(2), "a:2");
    assert.equal(a.calls, 2);
    // Another instance shares the entries: `this` is not part of the key.
    assert.equal(await b.list(1), "a:1");
    assert.equal(b.calls, 0);
    assert.equal(await a.list(), "a:undefined"); // no argument: key "[]"
    assert.deepEqual(keys(), [
      "PostsService.list:[1]",
      "PostsService.list:[2]",
      "PostsService.list:[]",
    ]);
  });

  it("caches static methods under ClassName.method:args", async () => {
    const cache = createCache({ clock: manualClock() });
    const keys = setKeys(cache);
    let calls = 0;
    // biome-ignore lint/complexity/noStaticOnlyClass: static methods are what is tested
    class Stats {
      static scale = 10;

      @cache.cached()
      static async count(kind: string): Promise<number> {
        calls++;
        return kind.length * Stats.scale;
      }
    }
    assert.equal(await Stats.count("posts"), 50);
    assert.equal(await Stats.count("posts"), 50);
    assert.equal(calls, 1);
    assert.deepEqual(keys(), ['Stats.count:["posts"]']);
  });

  it("takes name, key and entry options", async () => {
    const clock = manualClock();
    const cache = createCache({ clock });
    const keys = setKeys(cache);
    let calls = 0;
    class Users {
      @cache.cached({ name: "users", ttl: 1000 })
      async byId(id: number): Promise<number> {
        calls++;
        return id;
      }

      @cache.cached({ key: (id: number, _trace: string) => `id=${id}` })
      async traced(id: number, _trace: string): Promise<number> {
        calls++;
        return id;
      }
    }
    const users = new Users();
    await users.byId(1);
    await users.traced(1, "req-a");
    await users.traced(1, "req-b");
    assert.equal(calls, 2);
    assert.deepEqual(keys(), ["users:[1]", "Users.traced:id=1"]);
    clock.advance(1000);
    await users.byId(1);
    assert.equal(calls, 3, "ttl applies");
  });

  it("keys an inherited method by the class that declares it, whoever calls first", async () => {
    const run = async (first: "base" | "sub") => {
      const cache = createCache({ clock: manualClock() });
      const keys = setKeys(cache);
      let calls = 0;
      class Repository {
        @cache.cached()
        async find(id: number): Promise<number> {
          calls++;
          return id;
        }

        @cache.cached()
        static async all(): Promise<string> {
          calls++;
          return "all";
        }
      }
      class CachedRepository extends Repository {}
      if (first === "sub") {
        await new CachedRepository().find(1);
        await CachedRepository.all();
      }
      await new Repository().find(1);
      await Repository.all();
      await new CachedRepository().find(1);
      await CachedRepository.all();
      return { keys: keys(), calls };
    };
    for (const first of ["base", "sub"] as const) {
      const { keys, calls } = await run(first);
      assert.deepEqual(keys, ["Repository.find:[1]", "Repository.all:[]"], `${first} first`);
      assert.equal(calls, 2);
    }
  });

  it("keeps an overriding method's own entries apart from the method it overrides", async () => {
    const cache = createCache({ clock: manualClock() });
    const keys = setKeys(cache);
    class Base {
      @cache.cached()
      async get(id: number): Promise<string> {
        return `base ${id}`;
      }
    }
    class Derived extends Base {
      @cache.cached()
      override async get(id: number): Promise<string> {
        return `derived(${await super.get(id)})`;
      }
    }
    assert.equal(await new Derived().get(1), "derived(base 1)");
    assert.equal(await new Base().get(1), "base 1");
    assert.deepEqual(keys().sort(), ["Base.get:[1]", "Derived.get:[1]"]);
  });

  it("validates its options when applied", () => {
    const cache = createCache({ clock: manualClock() });
    assert.throws(
      () => cache.cached({ ttl: "soon" }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === "cached.ttl",
    );
  });
});

describe("standalone @cached", () => {
  it("works when applied before the cache exists", async () => {
    let appCache: Cache | undefined;
    let calls = 0;
    class PostsService {
      @cached({ cache: () => appCache!, ttl: "60s" })
      async list(userId: number): Promise<number[]> {
        calls++;
        return [userId];
      }
    }
    // The cache is created after the class, as the seed article's FastAPICache.init is.
    appCache = createCache({ clock: manualClock() });
    const keys = setKeys(appCache);
    const service = new PostsService();
    assert.deepEqual(await service.list(1), [1]);
    assert.deepEqual(await service.list(1), [1]);
    assert.equal(calls, 1);
    assert.deepEqual(keys(), ["PostsService.list:[1]"]);
    assert.deepEqual(await appCache.get("PostsService.list:[1]"), [1]);
  });

  it("takes a cache directly, and works on static methods", async () => {
    const cache = createCache({ clock: manualClock() });
    const keys = setKeys(cache);
    let calls = 0;
    // biome-ignore lint/complexity/noStaticOnlyClass: static methods are what is tested
    class Catalog {
      @cached({ cache, name: "catalog" })
      static async lookup(sku: string): Promise<string> {
        calls++;
        return sku.toUpperCase();
      }

      @cached({ cache })
      static async size(): Promise<number> {
        calls++;
        return 3;
      }
    }
    assert.equal(await Catalog.lookup("ab"), "AB");
    assert.equal(await Catalog.lookup("ab"), "AB");
    assert.equal(await Catalog.size(), 3);
    assert.equal(calls, 2);
    assert.deepEqual(keys(), ['catalog:["ab"]', "Catalog.size:[]"]);
  });

  it("keys an inherited method by its declaring class", async () => {
    const cache = createCache({ clock: manualClock() });
    const keys = setKeys(cache);
    class Base {
      @cached({ cache: () => cache })
      async find(id: number): Promise<number> {
        return id;
      }
    }
    class Sub extends Base {}
    await new Sub().find(1);
    await new Base().find(2);
    assert.deepEqual(keys(), ["Base.find:[1]", "Base.find:[2]"]);
  });

  it("rejects a missing cache when applied", () => {
    for (const options of [undefined, {}, { cache: null }, { cache: 42 }]) {
      assert.throws(
        () => cached(options as never),
        (error: unknown) => error instanceof InvalidOptionError && error.option === "cached.cache",
        JSON.stringify(options),
      );
    }
  });
});
