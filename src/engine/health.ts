import type { CacheHealth } from "../cache.js";
import type { GuardedStore } from "../guard.js";
import type { Core } from "./core.js";

/** The remote store's connection state, when the store reports one (Redis does). */
function connectionOf(l2: GuardedStore): unknown {
  return (l2.store as { status?: unknown }).status;
}

function isConnected(connection: unknown): boolean {
  return (
    typeof connection !== "string" ||
    connection === "ready" ||
    connection === "idle" ||
    connection === "connecting"
  );
}

/**
 * Whether a value written now would be kept by some tier: there is an in-process tier, or the
 * remote store is reachable (no failure outstanding, breaker closed, connection up). What
 * `Cache-Status: stored` may claim before the write has been answered.
 */
export function storesNow(core: Core): boolean {
  const { l1, l2 } = core;
  if (l1 !== undefined) return true;
  if (l2 === undefined) return false;
  return l2.degradedSince === undefined && l2.state === "closed" && isConnected(connectionOf(l2));
}

/** The state of the tiers and the bus (see `Cache.health()`), each degradation spelled out. */
export function healthOf(core: Core): CacheHealth {
  const { l1, l2, bus } = core;
  const problems: string[] = [];
  let l2Health: CacheHealth["l2"];
  if (l2) {
    const connection = connectionOf(l2);
    const since = l2.degradedSince;
    const connected = isConnected(connection);
    const reachable = since === undefined && l2.state === "closed" && connected;
    if (!reachable) {
      const why =
        l2.state === "open"
          ? "circuit breaker open"
          : l2.state === "half-open"
            ? "circuit breaker probing"
            : !connected
              ? `connection ${String(connection)}`
              : "calls failing";
      problems.push(
        `${l2.name} store unreachable (${why}${
          since === undefined ? "" : ` since ${new Date(since).toISOString()}`
        }${l2.lastError ? `: ${l2.lastError.message.replace(/^cachet: /, "")}` : ""}); ` +
          "reads miss and writes are skipped, requests go to the origin",
      );
    }
    l2Health = {
      store: l2.name,
      reachable,
      ...(typeof connection === "string" ? { connection } : {}),
      breaker: l2.state,
      ...(since === undefined ? {} : { downSince: new Date(since).toISOString() }),
      ...(l2.lastError ? { lastError: l2.lastError.message } : {}),
    };
  }
  if (bus?.state === "down") {
    problems.push(
      "bus down: changes made by other instances are not received; in-process copies live at most l1MaxTtl",
    );
  }
  return {
    status: problems.length === 0 ? "ok" : "degraded",
    problems,
    ...(l1
      ? {
          l1: {
            store: l1.name,
            entries: l1.entries,
            bytes: l1.size,
            maxBytes: l1.maxSize,
            evictions: l1.evictions,
          },
        }
      : {}),
    ...(l2Health ? { l2: l2Health } : {}),
    ...(bus ? { bus: { state: bus.state } } : {}),
  };
}
