-- wrk script for scripts/bench-agents.sh: POSTs the JSON body in $BENCH_BODY to the URL wrk
-- was given, and writes one line "@@RESULT {json}" (latencies in microseconds) at the end.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY") or "{}"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '@@RESULT {"requests":%d,"duration_us":%d,'
      .. '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,'
      .. '"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
