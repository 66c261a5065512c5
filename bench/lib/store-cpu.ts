/**
 * The store servers' own CPU time, read over short-lived raw connections: Redis's `INFO cpu`
 * and memcached's `stats` (`rusage_user` + `rusage_system`). Both cover every thread of the
 * server process.
 */
import { connect } from "node:net";

/** Send `request` to 127.0.0.1:`port` and resolve with the reply once `complete` says so. */
function ask(
  port: number,
  request: string,
  complete: (data: string) => boolean,
  what: string,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let data = "";
    socket.setTimeout(2000, () => {
      socket.destroy();
      reject(new Error(`${what}: no answer within 2 s`));
    });
    socket.once("error", reject);
    socket.once("connect", () => socket.write(request));
    socket.on("data", (chunk) => {
      data += chunk;
      if (!complete(data)) return;
      socket.destroy();
      resolve(data);
    });
  });
}

/** Seconds of CPU Redis has used (main thread and background threads, user + system). */
export async function redisCpuSeconds(port: number): Promise<number> {
  const data = await ask(
    port,
    "INFO cpu\r\n",
    (d) => {
      const header = /^\$(\d+)\r\n/.exec(d);
      return header !== null && d.length >= header[0].length + Number(header[1]);
    },
    "INFO cpu",
  );
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(data)?.[1]);
  const total = field("used_cpu_sys") + field("used_cpu_user");
  if (!Number.isFinite(total)) throw new Error(`INFO cpu: unexpected answer ${data.slice(0, 200)}`);
  return total;
}

/** Seconds of CPU memcached has used (every thread, user + system), from `stats`. */
export async function memcachedCpuSeconds(port: number): Promise<number> {
  const data = await ask(port, "stats\r\n", (d) => d.endsWith("END\r\n"), "memcached stats");
  const field = (name: string) =>
    Number(new RegExp(`^STAT ${name} ([\\d.]+)`, "m").exec(data)?.[1]);
  const total = field("rusage_user") + field("rusage_system");
  if (!Number.isFinite(total)) throw new Error(`stats: unexpected answer ${data.slice(0, 200)}`);
  return total;
}

/**
 * Commands Redis has executed so far (the sum of `calls` in `INFO commandstats`), leaving out
 * `INFO` itself, which is how the bench reads Redis. Sampled before and after a run, the
 * difference over the requests is the commands each hit cost.
 */
export async function redisCommandCalls(port: number): Promise<number> {
  const data = await ask(
    port,
    "INFO commandstats\r\n",
    (d) => {
      const header = /^\$(\d+)\r\n/.exec(d);
      return header !== null && d.length >= header[0].length + Number(header[1]);
    },
    "INFO commandstats",
  );
  let total = 0;
  for (const m of data.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (m[1] !== "info") total += Number(m[2]);
  }
  return total;
}
