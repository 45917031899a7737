-- wrk script for tests/bench: sends the requests listed in a file.
--   wrk ... -s requests.lua <url> -- <file> <threads> <once|cycle> [<marker prefix>]
-- Each line of <file>: METHOD \t PATH \t Name: value|Name: value \t BODY
-- Thread k of <threads> sends lines k, k+threads, ... so no two threads send the same
-- line. "once": each line is sent exactly once, then the thread stops once every one
-- has been answered (a connection that finds its thread's list used up meanwhile asks
-- for a path that does not exist; those 404s are not counted). wrk itself always waits
-- out -d, so a thread that is done writes "<marker prefix><thread>" and the caller
-- interrupts wrk (SIGINT) once every thread has: wrk then reports the time so far. "cycle": the thread goes round its lines until wrk's -d elapses.
-- done() prints: WRK <counted requests> <microseconds> <non-2xx> <socket errors> <p50 us> <p99 us>

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  mode = args[3]
  marker = args[4]
  reqs = {}
  local n = 0
  for line in io.lines(path) do
    if n % nthreads == id then
      local method, target, headers, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local h = {}
      for pair in headers:gmatch("[^|]+") do
        local name, value = pair:match("^([^:]+):%s*(.*)$")
        h[name] = value
      end
      if body == "" then body = nil end
      reqs[#reqs + 1] = wrk.format(method, target, h, body)
    end
    n = n + 1
  end
  filler = wrk.format("GET", "/bench/no-such-path")
  sent, got, bad, extra = 0, 0, 0, 0
end

function request()
  -- wrk calls request() once per thread before connecting and throws that one away.
  if not primed then
    primed = true
    return filler
  end
  if mode == "cycle" then
    sent = sent + 1
    return reqs[((sent - 1) % #reqs) + 1]
  end
  if sent < #reqs then
    sent = sent + 1
    return reqs[sent]
  end
  extra = extra + 1
  return filler
end

function response(status, headers, body)
  if mode ~= "cycle" and status == 404 then return end
  got = got + 1
  if status < 200 or status > 299 then bad = bad + 1 end
  if mode ~= "cycle" and got == #reqs then
    if marker then
      local f = io.open(marker .. id, "w")
      f:write("done")
      f:close()
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local counted, non2xx = 0, 0
  for _, t in ipairs(threads) do
    if t:get("mode") == "cycle" then
      counted = counted + t:get("got")
    else
      counted = counted + t:get("sent")
    end
    non2xx = non2xx + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %d\n", counted, summary.duration, non2xx,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
