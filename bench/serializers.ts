/**
 * Serializer comparison (issue 13, item 1), in one process, side by side: JSON and the default
 * (msgpackr with structured clone) on the demo upstream's /posts body (the bench's 27 KB
 * payload, as a handler holds it: parsed) and on small values. Encode and decode ops/s (the
 * fidelity walk included in encode, as the cache runs it), bytes, and ratios.
 *
 * Usage: node --import tsx bench/serializers.ts [timeMs]
 */
import { Bench } from "tinybench";
import { POSTS } from "../demo/fake-upstream.js";
import { jsonSerializer, msgpackSerializer, type Serializer } from "../src/index.js";

const time = Number(process.argv[2] ?? 1000);
const posts = JSON.parse(JSON.stringify(POSTS)) as unknown;
const values: Array<[string, unknown]> = [
  ["posts (demo /posts body)", posts],
  ["a short string", "hello, world"],
  ["a small object", { id: 42, name: "Ada", active: true, roles: ["admin", "dev"] }],
];
const serializers: Serializer[] = [jsonSerializer, msgpackSerializer];

const rows: string[] = [
  "| value | JSON bytes | msgpack bytes | bytes ratio | JSON encode ops/s | msgpack encode ops/s | encode ratio | JSON decode ops/s | msgpack decode ops/s | decode ratio | walk only ops/s |",
  "|---|---|---|---|---|---|---|---|---|---|---|",
];
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
for (const [name, value] of values) {
  const bench = new Bench({ time });
  const bytes: Record<string, number> = {};
  for (const s of serializers) {
    const encoded = Buffer.from(s.serialize(value));
    bytes[s.name] = encoded.length;
    bench.add(`${s.name} encode`, () => {
      s.serialize(value);
    });
    bench.add(`${s.name} decode`, () => {
      s.deserialize(encoded);
    });
  }
  bench.add("walk", () => {
    msgpackSerializer.unsupported?.(value);
  });
  await bench.run();
  const hz = (task: string) => {
    const r = bench.tasks.find((t) => t.name === task)?.result;
    return r?.state === "completed" ? 1000 / r.latency.mean : Number.NaN;
  };
  const [je, me, jd, md] = [
    hz("json encode"),
    hz("msgpack encode"),
    hz("json decode"),
    hz("msgpack decode"),
  ];
  rows.push(
    `| ${name} | ${bytes.json} | ${bytes.msgpack} | ${(bytes.msgpack! / bytes.json!).toFixed(2)} | ${fmt(je)} | ${fmt(me)} | ${(me / je).toFixed(2)} | ${fmt(jd)} | ${fmt(md)} | ${(md / jd).toFixed(2)} | ${fmt(hz("walk"))} |`,
  );
}
console.log(`Node ${process.version}, ${time} ms per task; ratios are msgpack / JSON.\n`);
console.log(rows.join("\n"));
