/**
 * Values kept decoded in the in-process tier are shared between callers, so a caller that
 * mutates what a hit returned must not change what the next hit returns. cachet deep-freezes
 * them (`freeze: true`, the default): a mutation throws a TypeError (module code is strict)
 * and the cached value stays as it was. Checked on a real Redis behind memory tiers, for a
 * value just produced, an in-process hit, and a value another instance read from Redis.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Cache, createCache } from "../../src/index.js";
import { redisStore } from "../../src/stores/redis.js";
import { type RedisServer, startRedis } from "../helpers/redis.js";

interface Profile {
  name: string;
  roles: string[];
  address: { city: string };
}

const original = (): Profile => ({ name: "Ada", roles: ["admin"], address: { city: "London" } });

/** Try every kind of mutation on `value`; each must throw, and none may stick. */
function tamper(value: Profile): void {
  assert.throws(() => {
    value.name = "Mallory";
  }, TypeError);
  assert.throws(() => {
    value.roles.push("root");
  }, TypeError);
  assert.throws(() => {
    value.address.city = "Nowhere";
  }, TypeError);
  assert.throws(() => {
    (value as unknown as Record<string, unknown>).extra = true;
  }, TypeError);
  assert.throws(() => {
    delete (value as Partial<Profile>).name;
  }, TypeError);
}

describe("a value returned from a hit cannot be corrupted by its caller", {
  timeout: 30_000,
}, () => {
  let redis: RedisServer;
  let a: Cache;
  let b: Cache;
  let remoteOnly: Cache;

  before(async () => {
    redis = await startRedis();
    const storeTimeout = "1s"; // not a timeout test, whatever the machine's load
    a = createCache({ store: redisStore({ url: redis.url }), l1: true, storeTimeout });
    b = createCache({ store: redisStore({ url: redis.url }), l1: true, storeTimeout });
    remoteOnly = createCache({ store: redisStore({ url: redis.url }), storeTimeout });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await remoteOnly?.close();
    await redis?.stop();
  });

  it("mutating what a miss, an in-process hit or another instance's hit returned changes nothing", async () => {
    const notCalled = (): Profile => assert.fail("the factory must not run: the value is cached");

    const produced = await a.getOrSet("profile:1", original);
    tamper(produced);
    const hit = await a.getOrSet("profile:1", notCalled);
    assert.deepEqual(hit, original());
    tamper(hit);
    assert.deepEqual(await a.getOrSet("profile:1", notCalled), original());

    // B reads it from Redis and holds it in its own memory tier.
    const fromRedis = await b.getOrSet("profile:1", notCalled);
    assert.deepEqual(fromRedis, original());
    tamper(fromRedis);
    assert.deepEqual(await b.getOrSet("profile:1", notCalled), original());
    assert.deepEqual(await b.get("profile:1"), original());

    // Without a memory tier every read decodes a fresh copy: mutating one is harmless.
    const copy = (await remoteOnly.get<Profile>("profile:1"))!;
    copy.name = "Mallory";
    copy.roles.push("root");
    assert.deepEqual(await remoteOnly.get("profile:1"), original());
    assert.deepEqual(await a.get("profile:1"), original());
  });

  it("a value the caller passed to set() and then mutates is not what the cache serves", async () => {
    const value = original();
    await a.set("profile:2", value);
    // The caller's own object is frozen with it: set() takes ownership of the value.
    assert.throws(() => {
      value.name = "Mallory";
    }, TypeError);
    assert.deepEqual(await b.get("profile:2"), original());
    assert.deepEqual(await a.get("profile:2"), original());
  });
});
