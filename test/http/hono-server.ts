import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { Hono } from "hono";

/** A Hono app on `@hono/node-server`, listening on a free loopback port: real sockets. */
export async function listenHono(app: Hono): Promise<{ port: number; close(): void }> {
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () =>
      resolve(s as Server),
    );
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close() {
      server.closeAllConnections?.();
      server.close();
    },
  };
}
