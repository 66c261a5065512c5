import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type {
  Attributes,
  AttributeValue,
  Context,
  ContextManager,
  Exception,
  Span,
  SpanContext,
  SpanKind,
  SpanOptions,
  SpanStatus,
  TimeInput,
  Tracer,
  TracerProvider,
} from "@opentelemetry/api";
import { context, ROOT_CONTEXT, SpanStatusCode, TraceFlags, trace } from "@opentelemetry/api";
import { engineOf } from "../src/engine/registry.js";
import { createCache, FactoryHardTimeoutError } from "../src/index.js";
import { cachetTracing } from "../src/otel.js";
import { redisStore } from "../src/stores/redis.js";
import { flush, MapStore, manualClock } from "./helpers/core.js";
import { waitFor } from "./helpers/ports.js";
import { type RedisServer, startRedis } from "./helpers/redis.js";

/**
 * A minimal tracer provider implementing the @opentelemetry/api interfaces, keeping every
 * span in memory (the SDK's in-memory exporter is not a dependency of this project).
 */
class RecordedSpan implements Span {
  readonly name: string;
  readonly kind: SpanKind | undefined;
  readonly attributes: Attributes;
  readonly startTime: TimeInput | undefined;
  readonly parent: Span | undefined;
  endTime: TimeInput | undefined;
  ended = false;
  status: SpanStatus = { code: SpanStatusCode.UNSET };
  readonly exceptions: Exception[] = [];
  readonly #context: SpanContext = {
    traceId: randomBytes(16).toString("hex"),
    spanId: randomBytes(8).toString("hex"),
    traceFlags: TraceFlags.SAMPLED,
  };

  constructor(name: string, options: SpanOptions, parent: Span | undefined) {
    this.name = name;
    this.kind = options.kind;
    this.attributes = { ...options.attributes };
    this.startTime = options.startTime;
    this.parent = parent;
  }
  spanContext(): SpanContext {
    return this.#context;
  }
  setAttribute(key: string, value: AttributeValue): this {
    this.attributes[key] = value;
    return this;
  }
  setAttributes(attributes: Attributes): this {
    Object.assign(this.attributes, attributes);
    return this;
  }
  addEvent(): this {
    return this;
  }
  addLink(): this {
    return this;
  }
  addLinks(): this {
    return this;
  }
  setStatus(status: SpanStatus): this {
    this.status = status;
    return this;
  }
  updateName(): this {
    return this;
  }
  end(endTime?: TimeInput): void {
    this.ended = true;
    this.endTime = endTime;
  }
  isRecording(): boolean {
    return !this.ended;
  }
  recordException(exception: Exception): void {
    this.exceptions.push(exception);
  }
}

class RecordingTracer implements Tracer {
  readonly spans: RecordedSpan[] = [];
  startSpan(name: string, options: SpanOptions = {}, ctx?: Context): Span {
    const span = new RecordedSpan(name, options, ctx ? trace.getSpan(ctx) : undefined);
    this.spans.push(span);
    return span;
  }
  startActiveSpan<F extends (span: Span) => unknown>(name: string, ...rest: unknown[]) {
    const fn = rest.at(-1) as F;
    const span = this.startSpan(name, (rest.length > 1 ? rest[0] : {}) as SpanOptions);
    return context.with(trace.setSpan(context.active(), span), () => fn(span)) as ReturnType<F>;
  }
}

class RecordingProvider implements TracerProvider {
  readonly tracer = new RecordingTracer();
  readonly names: string[] = [];
  getTracer(name: string): Tracer {
    this.names.push(name);
    return this.tracer;
  }
}

/** A context manager on AsyncLocalStorage, as the SDK's async-hooks one. */
class AlsContextManager implements ContextManager {
  readonly #als = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.#als.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#als.run(ctx, () => fn.apply(thisArg, args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.#als.disable();
    return this;
  }
}

function toMs(time: TimeInput | undefined): number {
  assert.equal(typeof time, "number");
  return time as number;
}

describe("cachet/otel", () => {
  before(() => {
    context.setGlobalContextManager(new AlsContextManager());
  });
  after(() => {
    context.disable();
  });

  it("a factory run is one span under the caller's span, with its measured duration", async () => {
    const provider = new RecordingProvider();
    const tracing = cachetTracing({ tracerProvider: provider });
    const cache = createCache({ clock: manualClock() });
    const tracer = provider.tracer;
    const request = tracer.startSpan("GET /posts");
    try {
      await context.with(trace.setSpan(context.active(), request), async () => {
        await cache.getOrSet("posts", async () => {
          await new Promise((r) => setTimeout(r, 20));
          return [1, 2];
        });
        await cache.getOrSet("posts", () => [0]);
      });
    } finally {
      tracing.stop();
    }
    assert.deepEqual(provider.names, ["cachet"]);
    const factory = tracer.spans.filter((s) => s.name === "cachet.factory");
    assert.equal(factory.length, 1, "the hit runs no factory");
    const span = factory[0]!;
    assert.equal(span.parent, request);
    assert.equal(span.ended, true);
    assert.deepEqual(span.attributes, {
      "cachet.namespace": "",
      "cachet.outcome": "ok",
      "cachet.background": false,
      "cachet.key": "posts",
    });
    const duration = toMs(span.endTime) - toMs(span.startTime);
    assert.ok(duration >= 15 && duration < 1000, `${duration} ms`);
    assert.ok(Math.abs(toMs(span.endTime) - Date.now()) < 1000, "wall-clock times");
  });

  it("a failed factory run is an error span; a hard timeout says E_FACTORY_HARD_TIMEOUT", async (t) => {
    const provider = new RecordingProvider();
    const tracing = cachetTracing({ tracerProvider: provider, keys: false });
    t.mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const cache = createCache();
      await assert.rejects(cache.getOrSet("a", () => Promise.reject(new TypeError("bad"))));
      const pending = cache.getOrSet("b", () => new Promise<never>(() => {}), {
        hardTimeout: 100,
      });
      await flush();
      t.mock.timers.tick(100);
      await assert.rejects(pending, FactoryHardTimeoutError);
    } finally {
      tracing.stop();
    }
    const [failed, timedOut] = provider.tracer.spans;
    assert.equal(provider.tracer.spans.length, 2);
    assert.equal(failed?.status.code, SpanStatusCode.ERROR);
    assert.equal(failed?.status.message, "bad");
    assert.equal(failed?.attributes["error.type"], "TypeError");
    assert.equal(failed?.attributes["cachet.outcome"], "error");
    assert.equal(failed?.exceptions.length, 1);
    assert.equal(timedOut?.attributes["error.type"], "E_FACTORY_HARD_TIMEOUT");
    assert.equal(timedOut?.attributes["cachet.outcome"], "hard-timeout");
    assert.equal(failed?.attributes["cachet.key"], undefined, "keys: false keeps keys out");
  });

  it("stop() ends tracing and unsubscribes (no more timing)", async () => {
    const provider = new RecordingProvider();
    const cache = createCache({ store: new MapStore(manualClock()), clock: manualClock() });
    cachetTracing({ tracerProvider: provider }).stop();
    await cache.getOrSet("k", () => 1);
    assert.equal(provider.tracer.spans.length, 0);
    assert.equal(engineOf(cache).tiers.events.wants("store"), false);
    assert.equal(engineOf(cache).tiers.events.wants("factory"), false);
  });

  it("rejects what is not a tracer provider", () => {
    assert.throws(() => cachetTracing({ tracerProvider: {} as TracerProvider }), /tracerProvider/);
  });

  describe("on a real Redis", () => {
    let redis: RedisServer;
    before(async () => {
      redis = await startRedis();
    });
    after(async () => {
      await redis?.stop();
    });

    it("store calls are client spans with db.system redis and the command", async () => {
      const provider = new RecordingProvider();
      const tracing = cachetTracing({ tracerProvider: provider, spans: { factory: false } });
      const cache = createCache({
        store: redisStore({ url: redis.url, prefix: "otel:" }),
        storeTimeout: 1000,
        bus: false,
      });
      const request = provider.tracer.startSpan("request");
      try {
        await context.with(trace.setSpan(context.active(), request), async () => {
          await cache.getOrSet("user:1", () => ({ name: "alice" }));
          await cache.get("user:1");
        });
      } finally {
        tracing.stop();
        await cache.close();
      }
      const spans = provider.tracer.spans.filter((s) => s !== request);
      assert.deepEqual(
        spans.map((s) => [
          s.name,
          s.attributes["db.operation.name"],
          s.attributes["cachet.outcome"],
        ]),
        [
          ["GET", "GET", "miss"],
          ["SET", "SET", "ok"],
          ["GET", "GET", "hit"],
          ["MGET", "MGET", "ok"],
        ],
      );
      for (const span of spans) {
        assert.equal(span.kind, 2 /* SpanKind.CLIENT */);
        assert.equal(span.attributes["db.system"], "redis");
        assert.equal(span.attributes["db.system.name"], "redis");
        assert.equal(span.attributes["cachet.store"], "redis");
        assert.equal(span.parent, request);
        assert.ok(toMs(span.endTime) >= toMs(span.startTime));
      }
      assert.equal(spans[0]?.attributes["cachet.key"], "user:1");
    });

    it("a lease wait is a span ending when the other instance's value lands", async () => {
      const provider = new RecordingProvider();
      const tracing = cachetTracing({ tracerProvider: provider, spans: { store: false } });
      const make = () =>
        createCache({
          store: redisStore({ url: redis.url, prefix: "otel-lease:" }),
          lease: { ttl: 5000, wait: 5000 },
          storeTimeout: 1000,
          bus: false,
        });
      const a = make();
      const b = make();
      try {
        let release!: () => void;
        const gate = new Promise<void>((resolve) => {
          release = resolve;
        });
        const leases = { a: 0, b: 0 };
        a.on("lease", () => {
          leases.a++;
        });
        b.on("lease", () => {
          leases.b++;
        });
        const first = a.getOrSet("k", async () => {
          await gate;
          return "a";
        });
        // Polled with a deadline: a loaded machine can take many turns of the loop before a's
        // lease is taken, or before b starts waiting.
        await waitFor(() => leases.a > 0, "a to take the lease");
        const second = b.getOrSet("k", () => "b");
        await waitFor(() => leases.b > 0, "b to wait for the lease");
        await new Promise((r) => setTimeout(r, 30));
        release();
        assert.equal(await first, "a");
        assert.equal(await second, "a");
      } finally {
        tracing.stop();
        await a.close();
        await b.close();
      }
      const waits = provider.tracer.spans.filter((s) => s.name === "cachet.lease.wait");
      assert.equal(waits.length, 1);
      assert.equal(waits[0]?.attributes["cachet.lease.outcome"], "landed");
      const waited = toMs(waits[0]?.endTime) - toMs(waits[0]?.startTime);
      assert.ok(waited >= 20, `${waited} ms`);
      assert.deepEqual(
        provider.tracer.spans.filter((s) => s.name === "cachet.factory").map((s) => s.name),
        ["cachet.factory"],
      );
    });
  });
});
