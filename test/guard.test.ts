import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { GuardOptions } from "../src/guard.js";
import { GuardedStore, MAX_WINDOWS } from "../src/guard.js";
import type { BreakerState, Store } from "../src/index.js";
import { StoreError } from "../src/index.js";
import { deferred, flush, isSettled, MapStore, manualClock } from "./helpers/core.js";

function guarded(
  store: Store,
  options: Partial<GuardOptions> = {},
  clock = manualClock(),
  now?: () => number,
) {
  const errors: Array<{ operation: string; key: string | undefined; error: StoreError }> = [];
  const states: Array<{ state: BreakerState; error?: unknown }> = [];
  const guard = new GuardedStore(
    store,
    { timeout: 50, failureThreshold: 3, breakerCooldown: 1000, ...options },
    {
      clock,
      ...(now ? { now } : {}),
      onError: (operation, key, error) => errors.push({ operation, key, error }),
      onBreaker: (state, error) => states.push({ state, error }),
    },
  );
  return { guard, errors, states, clock };
}

describe("GuardedStore: failures become misses and no-ops", () => {
  it("passes answers through while the store is healthy", async () => {
    const store = new MapStore(manualClock());
    const { guard, errors } = guarded(store);
    assert.equal(await guard.set("k", Buffer.from("v"), 1000), true);
    assert.deepEqual(await guard.get("k"), Buffer.from("v"));
    assert.deepEqual(await guard.getMany(["k", "absent"]), [Buffer.from("v"), undefined]);
    assert.equal(await guard.delete("k"), true);
    assert.equal(await guard.get("k"), undefined);
    assert.deepEqual(errors, []);
    assert.equal(guard.name, "fake-remote");
    assert.equal(guard.state, "closed");
  });

  it("reports each failure once as a coded StoreError with the cause", async () => {
    const store = new MapStore(manualClock());
    const { guard, errors } = guarded(store, { failureThreshold: 100 });
    const cause = new Error("ECONNREFUSED");
    store.failWith = cause;
    assert.equal(await guard.get("k"), undefined);
    assert.equal(await guard.set("k", Buffer.from("v"), 1000), false);
    assert.equal(await guard.delete("k"), false);
    assert.equal(await guard.getMany(["a", "b"]), undefined, "a failure is not a list of misses");
    assert.deepEqual(
      errors.map((e) => [e.operation, e.key]),
      [
        ["get", "k"],
        ["set", "k"],
        ["delete", "k"],
        ["getMany", "a"],
      ],
    );
    for (const { error } of errors) {
      assert.ok(error instanceof StoreError);
      assert.equal(error.code, "E_STORE");
      assert.equal(error.store, "fake-remote");
      assert.equal(error.cause, cause);
      assert.match(error.message, /fake-remote store/);
    }
  });

  it("treats a store that throws synchronously like one that rejects", async () => {
    const store: Store = {
      name: "sync-thrower",
      get() {
        throw new Error("sync");
      },
      async set() {},
      async delete() {
        return true;
      },
    };
    const { guard, errors } = guarded(store);
    assert.equal(await guard.get("k"), undefined);
    assert.equal(errors.length, 1);
  });

  it("bounds every call by the timeout and drops the late answer", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const late = deferred<Uint8Array | undefined>();
    const store: Store = {
      name: "slow",
      get: () => late.promise,
      async set() {},
      async delete() {
        return true;
      },
    };
    const { guard, errors } = guarded(store);
    const pending = guard.get("k");
    await flush();
    t.mock.timers.tick(49);
    assert.equal(await isSettled(pending), false);
    t.mock.timers.tick(1);
    assert.equal(await pending, undefined);
    assert.equal(errors[0]?.error.code, "E_STORE_TIMEOUT");
    assert.match(errors[0]?.error.message ?? "", /timed out after 50 ms/);
    // A late rejection must not surface as an unhandled rejection.
    late.reject(new Error("late"));
    await flush();
  });

  it("reports absent optional capabilities as undefined", async () => {
    const store = new MapStore(manualClock());
    const { guard, errors } = guarded(store);
    assert.equal(await guard.setIfAbsent("k", Buffer.from("v"), 1000), undefined);
    assert.equal(await guard.deleteIfEquals("k", Buffer.from("v")), undefined);
    assert.deepEqual(errors, []);
  });

  it("uses the store's getMany when it has one", async () => {
    let batched = 0;
    const store: Store = {
      name: "batched",
      async get() {
        throw new Error("get should not be used");
      },
      async getMany(keys) {
        batched++;
        return keys.map((k) => Buffer.from(k));
      },
      async set() {},
      async delete() {
        return true;
      },
    };
    const { guard } = guarded(store);
    assert.deepEqual(await guard.getMany(["a", "b"]), [Buffer.from("a"), Buffer.from("b")]);
    assert.equal(batched, 1);
  });
});

describe("GuardedStore: circuit breaker", () => {
  it("opens after the threshold of consecutive failures and skips the store", async () => {
    const store = new MapStore(manualClock());
    const { guard, errors, states } = guarded(store);
    store.failWith = new Error("down");
    await guard.get("a");
    await guard.get("b");
    assert.equal(guard.state, "closed");
    await guard.get("c");
    assert.equal(guard.state, "open");
    assert.equal(states.length, 1);
    assert.equal(states[0]?.state, "open");
    assert.ok(states[0]?.error instanceof StoreError);
    for (let i = 0; i < 10; i++) assert.equal(await guard.get("k"), undefined);
    assert.equal(await guard.set("k", Buffer.from("v"), 1000), false);
    assert.equal(store.calls.get, 3);
    assert.equal(store.calls.set, 0);
    assert.equal(errors.length, 3, "skipped calls are not reported as new errors");
  });

  it("counts only consecutive failures", async () => {
    const store = new MapStore(manualClock());
    const { guard } = guarded(store);
    for (let i = 0; i < 5; i++) {
      store.failWith = new Error("blip");
      await guard.get("k");
      await guard.get("k");
      store.failWith = undefined;
      await guard.get("k");
    }
    assert.equal(guard.state, "closed");
  });

  it("lets exactly one probe through after the cooldown, and closes when it succeeds", async () => {
    const store = new MapStore(manualClock());
    const { guard, states, clock } = guarded(store);
    store.failWith = new Error("down");
    for (let i = 0; i < 3; i++) await guard.get("k");
    clock.advance(999);
    await guard.get("k");
    assert.equal(store.calls.get, 3, "still cooling down");
    clock.advance(1);
    store.failWith = undefined;
    const gate = deferred<void>();
    const slowGet = store.get.bind(store);
    store.get = async (key) => {
      await gate.promise;
      return slowGet(key);
    };
    const probe = guard.get("k");
    assert.equal(guard.state, "half-open");
    // Concurrent calls during the probe are skipped.
    assert.equal(await guard.get("other"), undefined);
    assert.equal(await guard.set("other", Buffer.from("v"), 1000), false);
    assert.equal(store.calls.set, 0);
    gate.resolve();
    await probe;
    assert.equal(guard.state, "closed");
    assert.deepEqual(
      states.map((s) => s.state),
      ["open", "half-open", "closed"],
    );
    assert.equal(await guard.set("k", Buffer.from("v"), 1000), true);
  });

  it("re-opens for a full cooldown when the probe fails", async () => {
    const store = new MapStore(manualClock());
    const { guard, states, clock } = guarded(store);
    store.failWith = new Error("down");
    for (let i = 0; i < 3; i++) await guard.get("k");
    clock.advance(1000);
    await guard.get("k");
    assert.equal(store.calls.get, 4);
    assert.equal(guard.state, "open");
    clock.advance(999);
    await guard.get("k");
    assert.equal(store.calls.get, 4);
    clock.advance(1);
    store.failWith = undefined;
    await guard.get("k");
    assert.equal(guard.state, "closed");
    assert.deepEqual(
      states.map((s) => s.state),
      ["open", "half-open", "open", "half-open", "closed"],
    );
  });

  it("counts timeouts as failures", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const store = new MapStore(manualClock());
    store.hang = true;
    const { guard } = guarded(store, { failureThreshold: 2, timeout: 10 });
    for (let i = 0; i < 2; i++) {
      const pending = guard.get("k");
      await flush();
      t.mock.timers.tick(10);
      await pending;
    }
    assert.equal(guard.state, "open");
  });
});

describe("GuardedStore: a stalled store is waited for once, not once per call", () => {
  /** A store whose calls wait until the test settles them. */
  function stallingStore() {
    const calls: Array<ReturnType<typeof deferred<undefined>>> = [];
    const call = () => {
      const d = deferred<undefined>();
      calls.push(d);
      return d.promise;
    };
    const store: Store = {
      name: "frozen",
      get: call,
      set: call as unknown as Store["set"],
      delete: call as unknown as Store["delete"],
    };
    return { store, calls };
  }

  it("after a call timed out with nothing answered since, the next calls fail at once", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const { store, calls } = stallingStore();
    const { guard, errors } = guarded(store, { failureThreshold: 100 });
    const read = guard.get("k");
    await flush();
    t.mock.timers.tick(50);
    assert.equal(await read, undefined);
    // The same request goes on (a lease, a write): it must not wait another timeout.
    const write = guard.set("k", Buffer.from("v"), 1000);
    await flush();
    assert.equal(await isSettled(write), true, "failed without waiting");
    assert.equal(await write, false);
    assert.equal(calls.length, 1, "the stalled store was not called again");
    assert.deepEqual(
      errors.map((e) => [e.operation, e.error.code]),
      [
        ["get", "E_STORE_TIMEOUT"],
        ["set", "E_STORE_TIMEOUT"],
      ],
    );
    assert.match(errors[1]?.error.message ?? "", /not answering/);
    assert.equal(guard.state, "closed", "the breaker still counts, it did not open");

    // The store answers again (the late reply arrives): calls are waited for normally.
    calls[0]!.resolve(undefined);
    await flush();
    const next = guard.get("k");
    await flush();
    assert.equal(calls.length, 2);
    assert.equal(await isSettled(next), false, "waits for the store again");
    calls[1]!.resolve(undefined);
    assert.equal(await next, undefined);
    assert.equal(errors.length, 2);
  });

  it("calls already waiting when the first one times out keep their own timeout", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const { store, calls } = stallingStore();
    const { guard } = guarded(store, { failureThreshold: 100 });
    const first = guard.get("a");
    await flush();
    t.mock.timers.tick(30);
    const second = guard.get("b");
    await flush();
    t.mock.timers.tick(20);
    assert.equal(await first, undefined);
    assert.equal(await isSettled(second), false);
    t.mock.timers.tick(30);
    assert.equal(await second, undefined);
    assert.equal(calls.length, 2);
  });
});

/**
 * A store whose calls wait until the test settles them, each call's deferred kept by key (and
 * in order): `answer(key)` settles the oldest unanswered call on `key`.
 */
function manualStore() {
  const calls: Array<{ key: string; call: ReturnType<typeof deferred<unknown>> }> = [];
  const call = (key: string) => {
    const d = deferred<unknown>();
    calls.push({ key, call: d });
    return d.promise;
  };
  const store: Store = {
    name: "manual",
    get: (key) => call(key) as Promise<Uint8Array | undefined>,
    set: (key) => call(key) as Promise<void>,
    delete: (key) => call(key) as Promise<boolean>,
  };
  const answer = (key: string, value?: unknown) => {
    const i = calls.findIndex((c) => c.key === key);
    assert.ok(i >= 0, `a call on ${key} is waiting`);
    calls.splice(i, 1)[0]!.call.resolve(value);
  };
  return { store, calls, answer };
}

describe("GuardedStore: timeouts sized by the payload", () => {
  it("gives a large write, and calls queued behind it, its transfer time; releases it when its own allowance runs out", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const { store, answer } = manualStore();
    // 1 KiB per ms: a 1 MiB value gets 50 + 1024 ms.
    const { guard, errors } = guarded(store, { throughput: 1024, failureThreshold: 100 });
    const large = guard.set("big", Buffer.alloc(1024 * 1024), 60_000);
    const queued = guard.get("small"); // sent while the megabyte is on the wire
    await flush();
    t.mock.timers.tick(50);
    await flush();
    assert.equal(await isSettled(large), false, "the large write is not cut at 50 ms");
    assert.equal(await isSettled(queued), false, "nor the small read queued behind it");
    t.mock.timers.tick(1023);
    await flush();
    assert.equal(await isSettled(large), false);
    t.mock.timers.tick(1);
    await flush();
    assert.equal(await large, false, "its own allowance ran out: a failure");
    assert.equal(await queued, undefined);
    assert.deepEqual(
      errors.map((e) => e.error.message.replace(/^cachet: manual store /, "")),
      ["set: timed out after 1074 ms", "get: timed out after 1074 ms"],
    );
    // The read's answer comes in late: the store answers again (it is no longer "stalled"),
    // while the megabyte is never answered.
    answer("small");
    await flush();
    // A store that never answered the megabyte does not stretch later calls forever: a small
    // call is bounded by 50 ms again.
    const later = guard.get("y");
    await flush();
    t.mock.timers.tick(49);
    await flush();
    assert.equal(await isSettled(later), false);
    t.mock.timers.tick(1);
    await flush();
    assert.equal(await isSettled(later), true, "timed out at 50 ms, not 50 + 1024");
    assert.equal(errors.at(-1)?.error.message, "cachet: manual store get: timed out after 50 ms");
  });

  it("remembers a large value's size for its reads", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const store = new MapStore(manualClock());
    const { guard } = guarded(store, { throughput: 1024, failureThreshold: 100 });
    assert.equal(await guard.set("big", Buffer.alloc(1024 * 1024), 60_000), true);
    store.hang = true;
    const read = guard.get("big");
    await flush();
    t.mock.timers.tick(1073);
    await flush();
    assert.equal(await isSettled(read), false, "a read of a known 1 MiB value gets its time");
    t.mock.timers.tick(1);
    await flush();
    assert.equal(await isSettled(read), true);
  });
});

/** A monotonic clock the test moves by hand (the guard's `now`), to make timers fire late. */
function monotonic() {
  let at = 1_000;
  return {
    now: () => at,
    advance(ms: number) {
      at += ms;
    },
  };
}

describe("GuardedStore: a busy process is not a failing store", () => {
  it("reads what arrived before judging: a reply read in the turn its timer fires is an answer", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const { store, answer } = manualStore();
    const { guard, errors, states } = guarded(store);
    const read = guard.get("k");
    await flush();
    // The loop was blocked past the deadline: in the next turn the timer runs first, then
    // the poll phase reads the reply that has been waiting in the socket.
    t.mock.timers.tick(50);
    answer("k", Buffer.from("v"));
    assert.deepEqual(await read, Buffer.from("v"));
    assert.deepEqual(errors, []);
    assert.deepEqual(states, []);
  });

  it("starts the clock when the call can be on the wire, not while the turn that made it runs on", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const { store } = manualStore();
    const { guard, errors } = guarded(store);
    const read = guard.get("k");
    // The rest of the turn that made the call (other requests' work) takes 60 ms; the
    // client writes in the check phase, after it.
    t.mock.timers.tick(60);
    await flush();
    assert.equal(await isSettled(read), false);
    t.mock.timers.tick(49);
    assert.equal(await isSettled(read), false);
    t.mock.timers.tick(1);
    await flush();
    assert.equal(await read, undefined);
    assert.equal(errors[0]?.error.message, "cachet: manual store get: timed out after 50 ms");
  });

  it("a burst of 30,000 calls in line: each window's check costs what settled, not the line's length", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const { store, calls } = manualStore();
    const { guard, errors } = guarded(store, { failureThreshold: 1_000_000 });
    const n = 30_000;
    const reads = Array.from({ length: n }, (_, i) => guard.get(`k${i}`));
    await flush();
    const started = performance.now();
    // Three windows in which the store answers the head of the line: every call is still in
    // line, and each of the 30,000 judges its window. Walking the line at each judgement (as
    // the guard once did) is 30,000 × 15,000 steps per window: seconds, which on a real loop
    // is the very busyness that made calls time out.
    for (let window = 0; window < 3; window++) {
      for (const { call } of calls.splice(0, 100)) call.resolve(undefined);
      await flush();
      t.mock.timers.tick(50);
      await flush();
    }
    const ms = performance.now() - started;
    assert.equal(errors.length, 0, "calls in a moving line do not fail");
    assert.ok(ms < 1_500, `three windows of 30,000 judgements took ${ms.toFixed(0)} ms`);
    for (const { call } of calls.splice(0)) call.resolve(undefined);
    await Promise.all(reads);
    assert.equal(errors.length, 0);
  });

  it("a call behind calls the store is answering waits in line; it fails once the line stops", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const { store, answer } = manualStore();
    const { guard, errors } = guarded(store, { failureThreshold: 2 });
    const a = guard.set("a", Buffer.from("1"), 1000);
    const b = guard.set("b", Buffer.from("2"), 1000);
    const c = guard.get("c");
    await flush();
    t.mock.timers.tick(40);
    answer("a");
    await flush();
    t.mock.timers.tick(10); // b and c reach 50 ms: a call ahead of each was answered
    await flush();
    assert.equal(await a, true);
    assert.equal(await isSettled(b), false, "b waits in line");
    assert.equal(await isSettled(c), false, "c waits in line");
    t.mock.timers.tick(30);
    answer("b");
    await flush();
    t.mock.timers.tick(20);
    await flush();
    assert.equal(await b, true);
    assert.equal(await isSettled(c), false, "b was answered in c's second window");
    assert.equal(errors.length, 0);
    t.mock.timers.tick(50); // nothing ahead of c, and no answer for a whole window
    await flush();
    assert.equal(await c, undefined);
    assert.deepEqual(
      errors.map((e) => e.error.message),
      ["cachet: manual store get: timed out after 150 ms (nothing answered in its last window)"],
    );
    assert.equal(guard.state, "closed", "one failure; the two answered calls reset the count");
  });

  it("a store that answers the calls ahead too slowly still fails calls, after MAX_WINDOWS windows", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const { store, answer } = manualStore();
    const { guard, errors } = guarded(store, { failureThreshold: 100 });
    const reads = Array.from({ length: 25 }, (_, i) => guard.get(`k${i}`));
    await flush();
    // One answer every 50 ms, in order: each window of every call sees the line move.
    for (let i = 0; i < 20; i++) {
      t.mock.timers.tick(25);
      answer(`k${i}`, Buffer.from("v"));
      await flush();
      t.mock.timers.tick(25);
      await flush();
    }
    for (let i = 0; i < 20; i++) assert.deepEqual(await reads[i], Buffer.from("v"));
    assert.equal(MAX_WINDOWS * 50, 1000);
    for (let i = 20; i < 25; i++) assert.equal(await reads[i], undefined, `k${i}`);
    assert.deepEqual(
      errors.map((e) => `${e.key} ${e.error.message}`),
      [20, 21, 22, 23, 24].map(
        (i) =>
          `k${i} cachet: manual store get: timed out after 1000 ms (answering the calls ahead of it too slowly)`,
      ),
    );
  });

  it("a frozen store fails every waiting call at the end of its first window", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const { store } = manualStore();
    const { guard, errors, states } = guarded(store);
    const calls = [guard.get("a"), guard.set("b", Buffer.from("v"), 1000), guard.get("c")];
    await flush();
    t.mock.timers.tick(49);
    await flush();
    for (const call of calls) assert.equal(await isSettled(call), false);
    t.mock.timers.tick(1);
    await flush();
    assert.deepEqual(await Promise.all(calls), [undefined, false, undefined]);
    assert.deepEqual(
      errors.map((e) => e.error.message.replace("cachet: manual store ", "")),
      ["get: timed out after 50 ms", "set: timed out after 50 ms", "get: timed out after 50 ms"],
    );
    assert.deepEqual(
      states.map((s) => s.state),
      ["open"],
      "three consecutive failures open the breaker",
    );
  });

  it("a timer that fired late gives the store that time again, one window's worth at most", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const clock = monotonic();
    const { store } = manualStore();
    const { guard, errors } = guarded(store, {}, manualClock(), clock.now);
    const read = guard.get("k");
    await flush();
    // The process could not run for 30 ms past the deadline (the machine is starved): the
    // store may have been starved with it.
    clock.advance(80);
    t.mock.timers.tick(50);
    await flush();
    assert.equal(await isSettled(read), false, "given 30 ms more");
    clock.advance(60);
    t.mock.timers.tick(30); // late again, by 30 ms: only 20 ms of grace are left
    await flush();
    assert.equal(await isSettled(read), false, "given 20 ms more");
    clock.advance(40);
    t.mock.timers.tick(20); // late again: no grace left
    await flush();
    assert.equal(await read, undefined);
    assert.equal(
      errors[0]?.error.message,
      "cachet: manual store get: timed out after 100 ms (nothing answered in its last window)",
    );
  });

  it("a timer on time is trusted: no extra time without a late timer or an answer ahead", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const clock = monotonic();
    const { store } = manualStore();
    const { guard, errors } = guarded(store, {}, manualClock(), clock.now);
    const read = guard.get("k");
    await flush();
    clock.advance(59); // 9 ms late: under a fifth of the window
    t.mock.timers.tick(50);
    await flush();
    assert.equal(await read, undefined);
    assert.equal(errors[0]?.error.message, "cachet: manual store get: timed out after 50 ms");
  });
});

describe("GuardedStore: the calls of one turn share one window", () => {
  it("answered calls pass, silent ones time out together, once each", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const waiting = new Map<string, ReturnType<typeof deferred<Uint8Array | undefined>>>();
    const store: Store = {
      name: "half-silent",
      get(key) {
        const d = deferred<Uint8Array | undefined>();
        waiting.set(key, d);
        return d.promise;
      },
      async set() {},
      async delete() {
        return true;
      },
    };
    const { guard, errors } = guarded(store, { failureThreshold: 10_000 });
    const calls = Array.from({ length: 1000 }, (_, i) => guard.get(`k${i}`));
    await flush();
    // The even ones answer; the odd ones never do. Answers arrive out of order (a cluster).
    for (let i = 998; i >= 0; i -= 2) waiting.get(`k${i}`)!.resolve(Buffer.from(`v${i}`));
    await flush();
    t.mock.timers.tick(50);
    await flush();
    // Calls made before them were answered in that window (the store is working through its
    // queue): the silent calls get another window rather than failing now.
    assert.equal(errors.length, 0);
    t.mock.timers.tick(50);
    await flush();
    const out = await Promise.all(calls);
    out.forEach((value, i) => {
      if (i % 2 === 0) assert.deepEqual(value, Buffer.from(`v${i}`));
      else assert.equal(value, undefined);
    });
    assert.equal(errors.length, 500, "each silent call fails once, after a window of silence");
    assert.match(
      errors[0]!.error.message,
      /timed out after 100 ms \(nothing answered in its last window\)/,
    );
    assert.ok(errors.every((e) => e.error.code === "E_STORE_TIMEOUT"));
  });
});
