-- single: POST /api/v1/reports, one head count per request, each with a fresh
-- Idempotency-Key as the field app sends it. Answer expected: 201.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local bodies = {}

function scenario_init()
  -- Bodies are drawn from a pool built once; the key is new for every request, so
  -- each is a new report (a repeated body under a new key is stored again).
  for i = 1, 256 do
    bodies[i] = "{" .. bench_report_members() .. "}"
  end
end

function request()
  bench_sending()
  local headers = {
    ["Authorization"] = "Bearer " .. bench.token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = bench_uuid(),
  }
  return wrk.format("POST", "/api/v1/reports", headers, bodies[math.random(#bodies)])
end

function scenario_check(status, body)
  if status == 201 then
    return 1, true
  end
  return 0, false
end
