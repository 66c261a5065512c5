/**
 * The demo's fake upstream (`startFakeUpstream`) in its own process, so that it competes with
 * neither the harness nor the target for the harness's event loop. Says `{ type: "ready", url }`
 * over IPC; `GET /__stats` gives its call counter.
 */
import { startFakeUpstream } from "../../demo/fake-upstream.js";

const latencyMs = Number(process.env.BENCH_UPSTREAM_LATENCY ?? "100");
const upstream = await startFakeUpstream({ port: 0, latencyMs });
process.send?.({ type: "ready", url: upstream.url });
process.once("disconnect", () => process.exit(0));
process.once("SIGTERM", () => {
  void upstream.close().then(() => process.exit(0));
});
