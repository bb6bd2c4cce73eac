-- batch: POST /api/v1/reports/batch with `bench.batch` reports, each with its own fresh
-- client_id, as a phone syncs its offline outbox. Answer expected: 200 with a 201 for
-- every item.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local members = {}

function scenario_init()
  for i = 1, 512 do
    members[i] = bench_report_members()
  end
end

function request()
  bench_sending()
  local items = {}
  for i = 1, bench.batch do
    items[i] = '{"client_id":"' .. bench_uuid() .. '",' .. members[math.random(#members)] .. "}"
  end
  local headers = {
    ["Authorization"] = "Bearer " .. bench.token,
    ["Content-Type"] = "application/json",
  }
  return wrk.format("POST", "/api/v1/reports/batch", headers,
    '{"reports":[' .. table.concat(items, ",") .. "]}")
end

function scenario_check(status, body)
  if status ~= 200 then
    return 0, false
  end
  -- Both servers answer compact JSON: one `"status":201` per stored item.
  local _, created = body:gsub('"status":201', "")
  return created, created == bench.batch
end
