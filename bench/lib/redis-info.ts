/** Redis's own CPU time (`INFO cpu`), read over a short-lived raw connection. */
import { connect } from "node:net";

/** Seconds of CPU Redis has used (main thread and background threads, user + system). */
export function redisCpuSeconds(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let data = "";
    socket.setTimeout(2000, () => {
      socket.destroy();
      reject(new Error("INFO cpu: no answer within 2 s"));
    });
    socket.once("error", reject);
    socket.once("connect", () => socket.write("INFO cpu\r\n"));
    socket.on("data", (chunk) => {
      data += chunk;
      const header = /^\$(\d+)\r\n/.exec(data);
      if (!header) return;
      if (data.length < header[0].length + Number(header[1])) return;
      socket.destroy();
      const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(data)?.[1]);
      const total = field("used_cpu_sys") + field("used_cpu_user");
      if (Number.isFinite(total)) resolve(total);
      else reject(new Error(`INFO cpu: unexpected answer ${data.slice(0, 200)}`));
    });
  });
}
