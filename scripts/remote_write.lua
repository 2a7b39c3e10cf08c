-- wrk script for scripts/compare_ingest.sh: replays pre-built remote_write bodies (files named
-- in the list file given after `--`) in order, each thread taking every n-th one, and prints
-- one JSON line with the run's counts and latency percentiles.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local list, nthreads = args[1], tonumber(args[2])
  bodies = {}
  local i = 0
  for path in io.lines(list) do
    if i % nthreads == id then
      local f = assert(io.open(path, "rb"))
      table.insert(bodies, f:read("*a"))
      f:close()
    end
    i = i + 1
  end
  next_body = 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-protobuf"
  wrk.headers["Content-Encoding"] = "snappy"
  wrk.headers["X-Prometheus-Remote-Write-Version"] = "0.1.0"
  sent = 0
end

function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  sent = sent + 1
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local sent = 0
  for _, t in ipairs(threads) do
    sent = sent + t:get("sent")
  end
  io.write(string.format(
    '{"requests": %d, "non_2xx_or_3xx": %d, "socket_errors": %d, "duration_us": %d, "sent": %d, "latency_ms": {"p50": %.2f, "p99": %.2f, "max": %.2f}}\n',
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, sent,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
