-- wrk script of bench/hitpath-workset.ts: cycles over HITPATH_KEYS distinct URLs
-- (/posts?k=1..N, or /posts?round=1 when HITPATH_KEYS is 1, the pinned bench's key), so that
-- every hit needs its own lookup, and prints the bench's BENCH_JSON line.
local n = tonumber(os.getenv("HITPATH_KEYS") or "1000")
local i = 0
request = function()
  if n == 1 then return wrk.format("GET", "/posts?round=1") end
  i = i % n + 1
  return wrk.format("GET", "/posts?k=" .. i)
end

done = function(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
