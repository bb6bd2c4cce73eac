-- What every scenario script of `python -m bench.http` shares (each loads it with
-- dofile): the run's settings, a clock, fresh ids, report bodies, and the accounting
-- that done() prints as `BENCH ...` lines for bench/http.py.
--
-- Each wrk thread drives one connection (-t equals -c), so a thread's requests are
-- sequential and an answer belongs to the request the thread sent last. A thread stops
-- sending `seconds` after its first request and, once its last answer is in, prints
-- IDLE and stops; bench/http.py then stops wrk. So no request is ever cut off in
-- flight, and every report a server stored was answered and counted here.
--
-- Each thread has its own Lua state (wrk's SCRIPTING): counters are per thread, and
-- done() (in yet another state) sums them with thread:get().

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

-- wrk gives scripts no clock; os.clock() is CPU time and os.time() whole seconds.
function bench_now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

-- Written by bench/http.py for this run: seconds, nonce, token, groups, observed, ...
bench = dofile(os.getenv("BENCH_WRK_CONFIG"))

local SECTORS = { "water", "food", "shelter", "health", "wash", "protection", "transport",
  "fuel", "nfi" }
-- Shares of the total (percent) for seven of the eight sadd keys; the last takes the rest.
local SADD = { { "female_0_4", 8 }, { "female_5_17", 12 }, { "female_18_59", 25 },
  { "female_60_plus", 6 }, { "male_0_4", 8 }, { "male_5_17", 11 }, { "male_18_59", 22 } }

local function pick(list)
  return list[math.random(#list)]
end

-- A version-4 shaped UUID, lowercase, unique by construction: the run's nonce, the
-- thread and a counter are part of it, so a key never repeats within or across runs (a
-- repeat would be answered as a replay, and would hide in the numbers).
local issued = 0
function bench_uuid()
  issued = issued + 1
  return string.format("%08x-%04x-4%03x-%x%03x-%06x%06x", bench.nonce, thread_id,
    math.random(0, 0xfff), math.random(8, 11), math.random(0, 0xfff),
    math.floor(issued / 0x1000000), issued % 0x1000000)
end

-- The members of one report's JSON object (no braces, no client_id): a group of the
-- token's site, a moment in the last hour, a breakdown on about half, needs on a third.
function bench_report_members()
  local total = math.random(20, 400)
  local members = {
    '"group_id":"' .. pick(bench.groups) .. '"',
    '"observed_at":"' .. pick(bench.observed) .. '"',
    '"total":' .. total,
  }
  if math.random() < 0.5 then
    local parts, rest = {}, total
    for i, share in ipairs(SADD) do
      local n = math.floor(total * share[2] / 100)
      parts[i] = '"' .. share[1] .. '":' .. n
      rest = rest - n
    end
    parts[#parts + 1] = '"male_60_plus":' .. rest
    members[#members + 1] = '"sadd":{' .. table.concat(parts, ",") .. "}"
  end
  if math.random() < 1 / 3 then
    members[#members + 1] = '"needs":[{"sector":"' .. pick(SECTORS) .. '","severity":'
      .. math.random(1, 5) .. "}]"
  end
  return table.concat(members, ",")
end

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_id", #threads)
end

function init(args)
  math.randomseed(bench.nonce + thread_id)
  first_at, sent_at, idle = nil, nil, false
  -- Requests done in the window, each counted by the share of its time inside it.
  work = 0
  answers, stored, unexpected, statuses, sample = 0, 0, 0, {}, nil
  scenario_init()
end

-- Scenario scripts call this at the top of request().
function bench_sending()
  sent_at = bench_now()
  first_at = first_at or sent_at
end

-- Called before each request but a connection's first.
function delay()
  if first_at and bench_now() >= first_at + bench.seconds then
    if not idle then
      idle = true
      -- One write per line: the threads share stdout.
      io.stdout:write(string.format("IDLE %d\n", thread_id))
      io.stdout:flush()
      -- The thread's last answer is in. Stopping its loop leaves the connection unread:
      -- the server closes idle connections after its keep-alive timeout, and wrk would
      -- reconnect (and count errors) while other threads still wait for answers.
      wrk.thread:stop()
    end
    return 3600 * 1000
  end
  return 0
end

function response(status, headers, body)
  local done_at = bench_now()
  local inside = math.min(done_at, first_at + bench.seconds) - sent_at
  if inside > 0 then
    work = work + inside / math.max(done_at - sent_at, 1e-9)
  end
  answers = answers + 1
  statuses[status] = (statuses[status] or 0) + 1
  -- scenario_check says how many reports the answer stored, and whether it is the
  -- answer expected.
  local items, ok = scenario_check(status, body)
  stored = stored + items
  if not ok then
    unexpected = unexpected + 1
    sample = sample or (status .. " " .. (body:sub(1, 600):gsub("%s+", " ")))
  end
end

function done(summary, latency, requests)
  local rate, answers, stored, unexpected, statuses, sample = 0, 0, 0, 0, {}, nil
  for _, thread in ipairs(threads) do
    rate = rate + thread:get("work") / bench.seconds
    answers = answers + thread:get("answers")
    stored = stored + thread:get("stored")
    unexpected = unexpected + thread:get("unexpected")
    for status, count in pairs(thread:get("statuses")) do
      statuses[status] = (statuses[status] or 0) + count
    end
    sample = sample or thread:get("sample")
  end
  local errors = summary.errors
  print(string.format("BENCH rate %.4f", rate))
  print(string.format("BENCH p50_ms %.3f", latency:percentile(50.0) / 1000))
  print(string.format("BENCH p99_ms %.3f", latency:percentile(99.0) / 1000))
  print(string.format("BENCH answers %d", answers))
  print(string.format("BENCH stored %d", stored))
  print(string.format("BENCH unexpected %d", unexpected))
  print(string.format("BENCH errors %d %d %d %d", errors.connect, errors.read, errors.write,
    errors.timeout))
  for status, count in pairs(statuses) do
    print(string.format("BENCH status %d %d", status, count))
  end
  if sample then
    print("BENCH sample " .. sample)
  end
end
