-- The same POST as fixed.lua (cache hits), sent with HTTP/1.1 pipelining: init() builds
-- BENCH_PIPELINE_DEPTH copies with wrk.format, concatenated, and request() returns that
-- batch, so wrk writes DEPTH requests at once and reads DEPTH responses before writing
-- the next batch. wrk counts every response as a request; its latency figures are per
-- batch (first request written to last response read), so do not compare them.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
local body = file:read("*a")
file:close()
local depth = assert(tonumber(os.getenv("BENCH_PIPELINE_DEPTH")), "BENCH_PIPELINE_DEPTH is not set")
local batch

function init(args)
  local one = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
  local copies = {}
  for i = 1, depth do
    copies[i] = one
  end
  batch = table.concat(copies)
end

function request()
  return batch
end
