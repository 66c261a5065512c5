import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { Cache } from "../src/index.js";
import { cached, createCache, InvalidOptionError } from "../src/index.js";
import { manualClock, recordEvents } from "./helpers/core.js";

function setKeys(cache: Cache): () => string[] {
  const events = recordEvents(cache);
  return () => events.of("set").map((e) => e.key);
}

describe("@cache.cached", () => {
  it("never lets two instances with different data share an entry (the instance's fields are in the key)", async () => {
    const cache = createCache({ clock: manualClock() });
    const keys = setKeys(cache);
    let calls = 0;
    class Repo {
      constructor(readonly tenant: string) {}

      @cache.cached({ ttl: "60s" })
      async forTenant(id: number): Promise<string> {
        calls++;
        return `${this.tenant}:${id}`;
      }
    }
    const a = new Repo("tenant-a");
    const b = new Repo("tenant-b");
    assert.equal(await a.forTenant(1), "tenant-a:1");
    assert.equal(await b.forTenant(1), "tenant-b:1", "tenant-b never gets tenant-a's data");
    assert.equal(await a.forTenant(1), "tenant-a:1");
    // Another instance with the same data shares the entries (in every process).
    assert.equal(await new Repo("tenant-a").forTenant(1), "tenant-a:1");
    assert.equal(calls, 2);
    assert.deepEqual(keys(), [
      'Repo.forTenant:[[{"tenant":"tenant-a"},"[1]"]]',
      'Repo.forTenant:[[{"tenant":"tenant-b"},"[1]"]]',
    ]);
  });

  it("a service that holds only clients keys on the arguments alone, shared across instances", async () => {
    const cache = createCache({ clock: manualClock() });
    const keys = setKeys(cache);
    class Client {
      query(id: number) {
        return Promise.resolve(`row ${id}`);
      }
    }
    let calls = 0;
    class PostsService {
      constructor(readonly db: Client) {}

      @cache.cached({ ttl: "60s" })
      async list(userId?: number): Promise<string> {
        calls++;
        return this.db.query(userId ?? 0);
      }
    }
    assert.equal(await new PostsService(new Client()).list(1), "row 1");
    assert.equal(await new PostsService(new Client()).list(1), "row 1");
    assert.equal(calls, 1);
    assert.deepEqual(keys(), ["PostsService.list:[1]"]);
  });

  it('scope: "shared" or a function of the instance says what goes into the key', async () => {
    const cache = createCache({ clock: manualClock() });
    const keys = setKeys(cache);
    class Tenanted {
      hits = 0; // a counter: with the default scope every call would be a miss
      #tenant: string; // private: invisible to the default scope
      constructor(tenant: string) {
        this.#tenant = tenant;
      }
      get tenant() {
        return this.#tenant;
      }

      @cache.cached({ scope: (self: Tenanted) => self.tenant })
      async data(): Promise<string> {
        this.hits++;
        return this.#tenant;
      }

      @cache.cached({ scope: "shared" })
      async version(): Promise<string> {
        this.hits++;
        return "v1";
      }
    }
    const a = new Tenanted("a");
    assert.equal(await a.data(), "a");
    assert.equal(await a.data(), "a");
    assert.equal(await new Tenanted("b").data(), "b");
    assert.equal(await a.version(), "v1");
    assert.equal(await new Tenanted("b").version(), "v1");
    assert.equal(a.hits, 2);
    assert.deepEqual(keys(), [
      'Tenanted.data:[["a","[]"]]',
      'Tenanted.data:[["b","[]"]]',
      "Tenanted.version:[]",
    ]);
    assert.throws(() => cache.cached({ scope: "everyone" as never }), InvalidOptionError);
  });

  it("caches static methods under ClassName.method:args, with the class's static data", async () => {
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
    assert.deepEqual(keys(), ['Stats.count:[[{"scale":10},"[\\"posts\\"]"]]']);
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

  it("takes the cache from the instance (a cache injected into the constructor)", async () => {
    const first = createCache({ clock: manualClock() });
    const second = createCache({ clock: manualClock() });
    let calls = 0;
    class PostsService {
      constructor(private readonly cache: Cache) {}
      @cached({ cache: (self: PostsService) => self.cache, ttl: "60s" })
      async list(page: number): Promise<number> {
        calls++;
        return page;
      }
    }
    const a = new PostsService(first);
    const b = new PostsService(second);
    assert.equal(await a.list(1), 1);
    assert.equal(await a.list(1), 1);
    assert.equal(calls, 1);
    // Each instance's own cache: b does not see a's entry, and writes its own.
    assert.equal(await b.list(1), 1);
    assert.equal(calls, 2);
    assert.deepEqual(await first.get("PostsService.list:[1]"), 1);
    assert.deepEqual(await second.get("PostsService.list:[1]"), 1);
  });

  it("says so when the cache function returns something that is not a cache", async () => {
    class Service {
      @cached({ cache: () => ({}) as Cache })
      async find(): Promise<number> {
        return 1;
      }
    }
    await assert.rejects(
      () => new Service().find(),
      (error: unknown) =>
        error instanceof InvalidOptionError &&
        error.option === "cached.cache" &&
        /returned object, not a Cache/.test(error.message),
    );
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

describe("@cached as a legacy decorator (experimentalDecorators, NestJS's default)", () => {
  it("compiles with experimentalDecorators and emitDecoratorMetadata, and keeps instances apart", () => {
    const dir = mkdtempSync(join(tmpdir(), "cachet-legacy-"));
    try {
      const dist = join(process.cwd(), "dist", "index.js");
      writeFileSync(
        join(dir, "app.ts"),
        `import { cached, createCache } from ${JSON.stringify(dist)};
const cache = createCache();
let calls = 0;
class Repo {
  constructor(readonly tenant: string) {}
  @cache.cached({ ttl: "60s" })
  async forTenant(id: number): Promise<string> {
    calls++;
    return this.tenant + ":" + id;
  }
  @cached({ cache: () => cache, scope: "shared" })
  async version(): Promise<string> {
    calls++;
    return "v1";
  }
}
const a = new Repo("a");
const b = new Repo("b");
const out = [await a.forTenant(1), await b.forTenant(1), await a.forTenant(1), await a.version(), await b.version()];
console.log(JSON.stringify({ out, calls }));
`,
      );
      writeFileSync(join(dir, "package.json"), '{ "type": "module" }');
      const tsc = spawnSync(
        process.execPath,
        [
          join(process.cwd(), "node_modules", "typescript", "bin", "tsc"),
          "--experimentalDecorators",
          "--emitDecoratorMetadata",
          "--strict",
          "--target",
          "es2022",
          "--module",
          "nodenext",
          "--skipLibCheck",
          "--outDir",
          join(dir, "out"),
          join(dir, "app.ts"),
        ],
        { encoding: "utf8" },
      );
      assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
      const run = spawnSync(process.execPath, [join(dir, "out", "app.js")], { encoding: "utf8" });
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(JSON.parse(run.stdout), {
        out: ["a:1", "b:1", "a:1", "v1", "v1"],
        calls: 3,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
