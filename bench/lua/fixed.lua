-- The same POST every time (cache hits). No request() function on purpose: wrk then
-- builds the request once and the load generator stays cheap at -c32.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
