-- wrk script for bench/throughput.py: `wrk -s jobs.lua URL -- MODE TOKEN [IDS_FILE]`.
-- MODE post: POST /api/jobs (one text render); get: GET /api/jobs/{id} over the ids in IDS_FILE;
-- healthz: GET /healthz (the server's own ceiling). `done` prints one JSON line for the harness.

local mode, token, ids = "healthz", "", {}
local body = '{"prompt": "sunlit living room, rattan chairs, teak floor", "style": "none", ' ..
             '"steps": 10, "width": 512, "height": 512}'

function init(args)
  mode, token = args[1] or "healthz", args[2] or ""
  if args[3] then
    for line in io.lines(args[3]) do
      if #line > 0 then ids[#ids + 1] = line end
    end
  end
  math.randomseed(os.time())
end

function request()
  local headers = {["Authorization"] = "Bearer " .. token}
  if mode == "post" then
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", "/api/jobs", headers, body)
  elseif mode == "get" then
    return wrk.format("GET", "/api/jobs/" .. ids[math.random(#ids)], headers)
  end
  return wrk.format("GET", "/healthz")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"latency_p50_us": %d, "latency_p99_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
