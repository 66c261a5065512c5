/** What every target shares: its configuration, the upstream call, and how it listens. */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface TargetConfig {
  /** The target's name (see registry.ts). */
  readonly name: string;
  /** Base URL of the fake upstream. */
  readonly upstreamUrl: string;
  /** `redis://127.0.0.1:<port>` of the bench's Redis. */
  readonly redisUrl: string;
  readonly redisPort: number;
  /**
   * `redis://127.0.0.1:<port>` of each master of the bench's 3-master Redis Cluster; empty
   * when no selected target needs the cluster (it is then not started).
   */
  readonly clusterNodes: readonly string[];
  /** `127.0.0.1:<port>` of the bench's memcached; empty when it is not started. */
  readonly memcachedServers: string;
  /** TTL of every cached response, in ms (60 s). */
  readonly ttlMs: number;
}

/** A target listening on a free loopback port. */
export interface RunningTarget {
  readonly port: number;
  close(): Promise<void>;
  /** Counters the target keeps (e.g. store errors), reported with its figures. */
  stats?(): Record<string, number>;
}

/**
 * The handler's work on a miss, the same in every target: fetch the upstream's `/posts` (the
 * query string forwarded) and parse the JSON, as the article's endpoint does. The framework
 * then serializes the object.
 */
export async function fetchPosts(upstreamUrl: string, search: string): Promise<unknown> {
  const response = await fetch(`${upstreamUrl}/posts${search}`);
  if (!response.ok) throw new Error(`upstream answered ${response.status}`);
  return response.json();
}

/** `?a=1` of a request target, or `""`. */
export function searchOf(url: string): string {
  const i = url.indexOf("?");
  return i === -1 ? "" : url.slice(i);
}

/** Listen on a free port of 127.0.0.1 and resolve to it. */
export function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Anything with Fastify's `listen`/`server`/`close` (kept structural: no import of fastify). */
interface FastifyLike {
  listen(options: { port: number; host: string }): Promise<string>;
  readonly server: Server;
  close(): PromiseLike<undefined> | Promise<void>;
}

/** Start a Fastify app on a free loopback port. */
export async function listenFastify(app: FastifyLike): Promise<RunningTarget> {
  await app.listen({ port: 0, host: "127.0.0.1" });
  return {
    port: (app.server.address() as AddressInfo).port,
    close: async () => {
      await app.close();
    },
  };
}

/** Start an Express app (anything that `listen`s like node:http) on a free loopback port. */
export async function listenExpress(
  app: { listen(port: number, host: string): Server },
  onClose?: () => Promise<void>,
): Promise<RunningTarget> {
  const server = app.listen(0, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    server.once("listening", () => resolve());
    server.once("error", reject);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      await closeServer(server);
      await onClose?.();
    },
  };
}
