-- wrk script for benches/load.sh.
--
-- Without WRK_PATHS: wrk's static request for the URL it was given (the fastest path in wrk,
-- so the load generator costs as little CPU as possible).
-- With WRK_PATHS=<file> (one URL path per line): a round-robin rotation over those paths,
-- with the requests pre-formatted once per thread so the rotation adds almost no work.
--
-- done() prints one machine-readable line that load.sh parses (latencies in microseconds).

local paths_file = os.getenv("WRK_PATHS")

-- With WRK_BEACON=1: the tracker's page-view beacon, as `navigator.sendBeacon` posts it, from a
-- first visit (no cookies, so the answer sets one).
if os.getenv("WRK_BEACON") == "1" then
  wrk.method = "POST"
  wrk.body = '{"type":"pageview","url":"http://127.0.0.1/p/page.html","referrer":"",' ..
    '"title":"A page","screen":"1920x1080","lang":"en-GB"}'
  wrk.headers["Content-Type"] = "text/plain;charset=UTF-8"
  wrk.headers["Origin"] = "http://127.0.0.1"
  wrk.headers["User-Agent"] =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
end

-- With WRK_HEADER="Name: value": one more request header (the floor workload's If-None-Match).
local extra = os.getenv("WRK_HEADER")
if extra and extra ~= "" then
  local name, value = extra:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

if paths_file and paths_file ~= "" then
  local reqs, n, i = {}, 0, 0

  function init(args)
    for line in io.lines(paths_file) do
      if line ~= "" then
        reqs[#reqs + 1] = wrk.format("GET", line)
      end
    end
    n = #reqs
  end

  function request()
    i = i % n + 1
    return reqs[i]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
