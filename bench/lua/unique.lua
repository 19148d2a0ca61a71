-- A distinct body per request (cache misses): the template's @@N@@ becomes
-- <run nonce>-<thread>-<counter>, so no two requests of any run share a cache key.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
local template = file:read("*a")
file:close()
local nonce = os.getenv("BENCH_NONCE")
local cut = assert(string.find(template, "@@N@@", 1, true), "template lacks @@N@@")
local head, tail = string.sub(template, 1, cut - 1), string.sub(template, cut + 5)
local headers = {["Content-Type"] = "application/json"}

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local counter = 0
function request()
  counter = counter + 1
  local body = head .. nonce .. "-" .. tostring(thread_id or 0) .. "-" .. counter .. tail
  return wrk.format("POST", nil, headers, body)
end
