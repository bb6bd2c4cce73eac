-- latest / latest-304: GET /api/v1/summaries/latest with a reader token. Without
-- `bench.etag`, expected 200 with the whole document (`bench.length` bytes); with it,
-- sent as If-None-Match, expected 304.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local prepared

function scenario_init()
  local headers = { ["Authorization"] = "Bearer " .. bench.token }
  if bench.etag then
    headers["If-None-Match"] = bench.etag
  end
  prepared = wrk.format("GET", "/api/v1/summaries/latest", headers)
end

function request()
  bench_sending()
  return prepared
end

function scenario_check(status, body)
  if bench.etag then
    return 0, status == 304
  end
  return 0, status == 200 and #body == bench.length
end
