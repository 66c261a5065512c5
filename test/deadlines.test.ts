import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { DeadlineQueue } from "../src/deadlines.js";
import { flush } from "./helpers/core.js";

/**
 * A queue on a manual clock, driven by a mocked setTimeout. (setImmediate stays real: Node
 * 20's mocked setImmediate, scheduled from a mocked timer's callback, makes that timer fire
 * again; `flush` lets the real immediate that judges after the timer run.)
 */
function setUp(t: import("node:test").TestContext, ms = 100) {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  let now = 0;
  const queue = new DeadlineQueue(ms, () => now);
  const expired: string[] = [];
  const advance = async (by: number) => {
    now += by;
    t.mock.timers.tick(by);
    await flush();
  };
  const add = (name: string) => queue.add(() => expired.push(name));
  return { queue, expired, advance, add, setNow: (n: number) => (now = n) };
}

describe("DeadlineQueue: one timer for a store's command deadlines", () => {
  it("expires a call that did not settle in time, and only that one", async (t) => {
    const { queue, expired, advance, add } = setUp(t);
    const a = add("a");
    add("b");
    queue.settle(a);
    await advance(99);
    assert.deepEqual(expired, []);
    await advance(1);
    assert.deepEqual(expired, ["b"]);
  });

  it("expires later calls at their own deadlines, in order", async (t) => {
    const { expired, advance, add } = setUp(t);
    add("a");
    await advance(40);
    add("b");
    await advance(40);
    add("c");
    await advance(20);
    assert.deepEqual(expired, ["a"]);
    await advance(40);
    assert.deepEqual(expired, ["a", "b"]);
    await advance(40);
    assert.deepEqual(expired, ["a", "b", "c"]);
  });

  it("a settled head lets the next call's deadline stand; all settled clears the timer", async (t) => {
    const { queue, expired, advance, add } = setUp(t);
    const a = add("a");
    await advance(50);
    const b = add("b");
    queue.settle(a);
    await advance(60); // past a's deadline, not b's
    assert.deepEqual(expired, []);
    queue.settle(b);
    await advance(1000);
    assert.deepEqual(expired, [], "nothing left to expire");
    add("c");
    await advance(100);
    assert.deepEqual(expired, ["c"], "a new call arms a new timer");
  });

  it("a call settled out of order is not expired when the head is", async (t) => {
    const { queue, expired, advance, add } = setUp(t);
    add("head");
    const middle = add("middle");
    add("tail");
    queue.settle(middle);
    await advance(100);
    assert.deepEqual(expired, ["head", "tail"]);
  });

  it("thousands of calls in flight cost one timer, and expire together", async (t) => {
    const { queue, expired, advance, add } = setUp(t);
    const waiters = Array.from({ length: 5000 }, (_, i) => add(String(i)));
    for (const w of waiters.slice(0, 4000)) queue.settle(w);
    await advance(100);
    assert.equal(expired.length, 1000);
    assert.equal(expired[0], "4000");
  });

  it("lets go of a settled call at once, even behind a call still waiting", async () => {
    // What `expire` holds (in a store: the caller's promise, and through it the reply) must be
    // collectable when the call settles, not when the calls ahead of it do: under steady load
    // the head may wait while thousands settle behind it, and their replies would live on.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const queue = new DeadlineQueue(60_000);
    const waiting = queue.add(() => {});
    const refs: WeakRef<object>[] = [];
    for (let i = 0; i < 3; i++) {
      const reply = { bytes: Buffer.alloc(1024) };
      refs.push(new WeakRef(reply));
      queue.settle(queue.add(() => reply));
    }
    await new Promise((resolve) => setImmediate(resolve)); // WeakRefs hold until the job ends
    gc();
    assert.deepEqual(
      refs.map((ref) => ref.deref() === undefined),
      [true, true, true],
    );
    queue.settle(waiting);
  });
});
