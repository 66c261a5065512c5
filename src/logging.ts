import type { Clock } from "./clock.js";
import type { CacheEvents } from "./events.js";

/**
 * A pino-compatible logger (pino, Fastify's `fastify.log`, or anything with these four
 * methods): each takes an object of fields and a message.
 */
export interface Logger {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** Whether `value` has the four methods of a {@link Logger}. */
export function isLogger(value: unknown): value is Logger {
  if (value === null || typeof value !== "object") return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.error === "function" &&
    typeof v.warn === "function" &&
    typeof v.info === "function" &&
    typeof v.debug === "function"
  );
}

/** Errors other than store outages (corrupt entries, serializer, bus) are logged at most this often per operation. */
const ERROR_LOG_INTERVAL_MS = 60_000;

/** Operations of the guarded remote store: their failures are reported as `store-health` changes. */
const STORE_OPERATIONS = new Set([
  "get",
  "getMany",
  "set",
  "delete",
  "setIfAbsent",
  "deleteIfEquals",
  "extendIfEquals",
  "extendManyIfEquals",
  "takeLease",
]);

/**
 * Log what an operator needs from a cache's events, once per change of state and never once
 * per request:
 *
 * - the remote store going down (warn, with the first error) and coming back (info, with how
 *   long it was down and how many calls failed); the individual failures in between are not
 *   logged;
 * - the circuit breaker opening (warn, the first time in an outage; the re-openings after
 *   failed probes are debug), probing and closing (debug);
 * - other errors (a corrupt entry, a value the serializer refused, the bus failing to publish
 *   or subscribe): warn, at most one line per operation a minute, with the number of lines
 *   suppressed since the previous one;
 * - the bus dropping the in-process tier after a reconnection (info) or a lost message (warn,
 *   rate-limited like errors).
 *
 * Returns a function that stops logging.
 */
export function attachLogger(events: CacheEvents, logger: Logger, clock: Clock): () => void {
  let openLogged = false;
  let storeDown = false;
  const limits = new Map<string, { at: number; suppressed: number }>();
  /** Whether a rate-limited line for `what` may go out now, and how many were held back. */
  const admit = (what: string): number | undefined => {
    const now = clock.now();
    const limit = limits.get(what);
    if (limit && now - limit.at < ERROR_LOG_INTERVAL_MS) {
      limit.suppressed++;
      return undefined;
    }
    const suppressed = limit?.suppressed ?? 0;
    limits.set(what, { at: now, suppressed: 0 });
    return suppressed;
  };
  const offs = [
    events.on("store-health", ({ store, state, error, downFor, failures }) => {
      storeDown = state === "down";
      if (state === "down") {
        openLogged = false;
        // "redis store get: ECONNREFUSED" reads "get: ECONNREFUSED" after "redis store".
        const why = errorText(error).replace(`${store} store `, "");
        logger.warn(
          { store, ...errorFields(error) },
          `cachet: ${store} store unavailable (${why}); requests go to the origin until it recovers`,
        );
      } else {
        logger.info(
          { store, downMs: downFor, failures },
          `cachet: ${store} store recovered after ${seconds(downFor ?? 0)} ` +
            `(${failures ?? 0} failed calls)`,
        );
      }
    }),
    events.on("breaker", ({ store, state, error }) => {
      if (state === "open" && !openLogged) {
        openLogged = true;
        logger.warn(
          { store, breaker: state, ...errorFields(error) },
          `cachet: ${store} store circuit open: calls skipped until a probe succeeds`,
        );
        return;
      }
      logger.debug({ store, breaker: state }, `cachet: ${store} store circuit ${state}`);
    }),
    events.on("error", ({ key, operation, error }) => {
      // Store failures are reported as one outage (store-health); the bus fails with the store
      // (its connection state is in health()): neither is worth a warning per failure.
      if (STORE_OPERATIONS.has(operation) && isStoreError(error)) return;
      if (storeDown && operation.startsWith("bus.")) return;
      const suppressed = admit(`error:${operation}`);
      if (suppressed === undefined) return;
      const level = operation.startsWith("bus.") && isStoreError(error) ? "debug" : "warn";
      logger[level](
        { operation, key, ...errorFields(error), ...(suppressed > 0 ? { suppressed } : {}) },
        `cachet: ${operation} failed${key === undefined ? "" : ` for key "${key}"`}: ${errorText(error)}`,
      );
    }),
    events.on("bus", ({ state }) => {
      if (state === "reconnected") {
        logger.info(
          { bus: state },
          "cachet: bus subscription re-established; in-process tier dropped (messages may have been lost)",
        );
        return;
      }
      const suppressed = admit("bus:gap");
      if (suppressed === undefined) return;
      logger.warn(
        { bus: state, ...(suppressed > 0 ? { suppressed } : {}) },
        "cachet: a bus message was lost; in-process tier dropped",
      );
    }),
  ];
  return () => {
    for (const off of offs) off();
  };
}

function isStoreError(error: unknown): boolean {
  const code = error instanceof Error ? (error as { code?: unknown }).code : undefined;
  return typeof code === "string" && code.startsWith("E_STORE");
}

function errorText(error: unknown): string {
  if (error instanceof Error) return error.message.replace(/^cachet: /, "");
  return String(error);
}

function errorFields(error: unknown): Record<string, unknown> {
  if (error === undefined) return {};
  const code = error instanceof Error ? (error as { code?: unknown }).code : undefined;
  return { error: errorText(error), ...(typeof code === "string" ? { code } : {}) };
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}
