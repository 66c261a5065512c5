/**
 * OpenTelemetry spans for cachet (`cachet/otel`): factory runs, remote-store calls and lease
 * waits, made from the events cachet publishes on `node:diagnostics_channel`. The core never
 * imports OpenTelemetry; this module subscribes to the channels `cachet:factory`,
 * `cachet:store` and `cachet:lease`, which makes every cache in the process time those
 * operations (and only those) while tracing is on.
 *
 * Spans are recorded when the operation ends, with its measured start and end times, under
 * the context active where the operation ran (the request's span, with a context manager
 * such as `@opentelemetry/context-async-hooks` installed by the SDK).
 */
import diagnostics from "node:diagnostics_channel";
import type { Attributes, Span, Tracer, TracerProvider } from "@opentelemetry/api";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InvalidOptionError } from "./errors.js";
import type { CacheEventMap } from "./events.js";
import { namespaceOf } from "./events.js";

/** Options of {@link cachetTracing}. */
export interface CachetTracingOptions {
  /** Where spans go. @default the global tracer provider (`trace.getTracerProvider()`) */
  tracerProvider?: TracerProvider | undefined;
  /**
   * Record cache keys as the `cachet.key` attribute. Keys can carry user data (ids, emails in
   * an argument): turn this off if your traces must not.
   * @default true
   */
  keys?: boolean | undefined;
  /** Which operations get spans. @default all three */
  spans?:
    | { factory?: boolean | undefined; store?: boolean | undefined; lease?: boolean | undefined }
    | undefined;
}

/** What {@link cachetTracing} returns. */
export interface CachetTracing {
  /** Stop creating spans (and unsubscribe from the channels, so that timing stops too). */
  stop(): void;
}

/** The instrumentation scope of cachet's spans. */
export const TRACER_NAME = "cachet";

/** `db.system` (and `db.system.name`) values of the stores cachet ships, by store name. */
const DB_SYSTEMS: Record<string, string> = {
  redis: "redis",
  memcached: "memcached",
  dynamodb: "aws.dynamodb",
};

/** The command a cachet store operation is on Redis, for `db.operation.name`. */
const REDIS_COMMANDS: Record<string, string> = {
  get: "GET",
  getMany: "MGET",
  set: "SET",
  delete: "DEL",
  setIfAbsent: "SET",
  deleteIfEquals: "EVALSHA",
  extendIfEquals: "EVALSHA",
  extendManyIfEquals: "EVALSHA",
  takeLease: "EVALSHA",
};

/**
 * Trace cachet's factory runs (`cachet.factory`), remote-store calls (`GET`, `SET`, … with
 * `db.system: "redis"` on Redis) and fleet-wide lease waits (`cachet.lease.wait`).
 *
 * @example
 * import { cachetTracing } from "cachet/otel";
 * cachetTracing(); // after the OpenTelemetry SDK is started
 */
export function cachetTracing(options: CachetTracingOptions = {}): CachetTracing {
  if (options === null || typeof options !== "object") {
    throw new InvalidOptionError("cachetTracing(options)", "expected an object");
  }
  const provider = options.tracerProvider ?? trace.getTracerProvider();
  if (typeof provider?.getTracer !== "function") {
    throw new InvalidOptionError("tracerProvider", "expected an OpenTelemetry TracerProvider");
  }
  const tracer = provider.getTracer(TRACER_NAME);
  const withKeys = options.keys !== false;
  const spans = options.spans ?? {};
  const subscriptions: Array<[string, (message: unknown) => void]> = [];

  if (spans.factory !== false) {
    subscriptions.push([
      "cachet:factory",
      (message) => {
        const e = message as CacheEventMap["factory"];
        const attributes: Attributes = {
          "cachet.namespace": namespaceOf(e.key),
          "cachet.outcome": e.outcome,
          "cachet.background": e.background,
        };
        if (withKeys) attributes["cachet.key"] = e.key;
        record(tracer, "cachet.factory", SpanKind.INTERNAL, e.duration, attributes, e.error);
      },
    ]);
  }
  if (spans.store !== false) {
    subscriptions.push([
      "cachet:store",
      (message) => {
        const e = message as CacheEventMap["store"];
        const system = DB_SYSTEMS[e.store];
        const command = system === "redis" ? REDIS_COMMANDS[e.operation] : undefined;
        const attributes: Attributes = {
          "cachet.store": e.store,
          "cachet.operation": e.operation,
          "cachet.outcome": e.outcome,
          "db.operation.name": command ?? e.operation,
        };
        if (system) {
          // `db.system` (semantic conventions before 1.26) and `db.system.name` (after).
          attributes["db.system"] = system;
          attributes["db.system.name"] = system;
        }
        if (withKeys && e.key !== undefined) attributes["cachet.key"] = e.key;
        const name = command ?? `${e.store} ${e.operation}`;
        record(tracer, name, SpanKind.CLIENT, e.duration, attributes, e.error);
      },
    ]);
  }
  if (spans.lease !== false) {
    subscriptions.push([
      "cachet:lease",
      (message) => {
        const e = message as CacheEventMap["lease"];
        // Only the outcomes that end a wait carry its duration.
        if (e.waited === undefined) return;
        const attributes: Attributes = {
          "cachet.namespace": namespaceOf(e.key),
          "cachet.lease.outcome": e.outcome,
        };
        if (withKeys) attributes["cachet.key"] = e.key;
        record(tracer, "cachet.lease.wait", SpanKind.INTERNAL, e.waited, attributes, undefined);
      },
    ]);
  }

  for (const [channel, listener] of subscriptions) diagnostics.subscribe(channel, listener);
  let stopped = false;
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      for (const [channel, listener] of subscriptions) diagnostics.unsubscribe(channel, listener);
    },
  };
}

/** A span for an operation that just ended after `durationMs`, under the active context. */
function record(
  tracer: Tracer,
  name: string,
  kind: SpanKind,
  durationMs: number,
  attributes: Attributes,
  error: unknown,
): void {
  const end = performance.timeOrigin + performance.now();
  const span: Span = tracer.startSpan(
    name,
    { kind, attributes, startTime: end - durationMs },
    context.active(),
  );
  if (error !== undefined) {
    const code = error instanceof Error ? (error as { code?: unknown }).code : undefined;
    span.setAttribute(
      "error.type",
      typeof code === "string" ? code : error instanceof Error ? error.name : "Error",
    );
    if (error instanceof Error) span.recordException(error, end);
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: error instanceof Error ? error.message : String(error),
    });
  }
  span.end(end);
}
