-- wrk script for scripts/bench-gateway.sh: POSTs one small chat completion per request,
-- `{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":256}`.
--
-- Environment:
--   BENCH_STREAM=1   send "stream": true (wrk then times the whole SSE response, to [DONE])
--   BENCH_MODEL      model name (default "bench")
--   BENCH_API_KEY    bearer key sent as `Authorization: Bearer ...` (default: no Authorization
--                    header, i.e. an anonymous request)
--
-- At the end one line "@@RESULT {json}" is written to stdout for scripts/bench/bench.py. Latencies
-- there are in microseconds, as wrk records them.

local stream = os.getenv("BENCH_STREAM") == "1"
local model = os.getenv("BENCH_MODEL") or "bench"
local key = os.getenv("BENCH_API_KEY") or ""

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
-- max_tokens bounds the completion: load shedding (on by default) refuses requests without a
-- bound when the machine's CPU is above its threshold, as it is under this load.
local body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"hello"}],"max_tokens":256'
if stream then
  body = body .. ',"stream":true'
end
wrk.body = body .. '}'

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '@@RESULT {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.2f,"stdev_us":%.2f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, latency.stdev))
end
