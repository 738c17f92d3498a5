-- The OpenResty checks, driven from outside: HTTP requests with curl to the
-- nginx that spec/openresty/run.sh started, database checks through scoped
-- itself (plain LuaJIT, SCOPED_TEST_URL). Prints TAP lines.
--
--   luajit checks.lua count PHASE                    -> how many checks PHASE has
--   luajit checks.lua run PHASE PORT PREFIX FIRST    -> runs them, numbered from FIRST
--
-- PHASE "single": a 1-worker nginx (so that concurrent requests meet in one
-- worker): sessions across requests, scopes, pool waits, phases, offload,
-- inline vs offload figures, the example app. PHASE "load": a 2-worker
-- nginx, 500 requests at concurrency 50.
local ffi = require "ffi"
local cjson = require "cjson.safe"
local scoped = require "scoped"
local core = require "scoped.core"

ffi.cdef "int poll(void *fds, unsigned long nfds, int timeout);"
local function sleep(s) ffi.C.poll(nil, 0, math.floor(s * 1000 + 0.5)) end
local now = core.monotonic

local mode, phase = arg[1], arg[2]
local port, prefix, first = arg[3], arg[4], tonumber(arg[5])
local base = port and ("http://127.0.0.1:" .. port) or nil
local url = os.getenv("SCOPED_TEST_URL")
-- tags unique to this run (the example's items table is not dropped)
local run_id = os.time() .. "-" .. (tostring({}):match("0x(%x+)") or math.random(1e9))

-- ---- helpers ------------------------------------------------------------------

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- GET (or POST with a body) -> status, body, seconds, headers
local function http(path, opts)
  opts = opts or {}
  local hdr = os.tmpname()
  local cmd = "curl -sS --max-time 30 -D " .. sh_quote(hdr) ..
    " -w '\\n%{http_code} %{time_total}'"
  if opts.body then cmd = cmd .. " -H 'Content-Type: application/json' --data-binary " .. sh_quote(opts.body) end
  cmd = cmd .. " " .. sh_quote(base .. path)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  local headers = read_file(hdr) or ""
  os.remove(hdr)
  local body, status, secs = out:match("^(.*)\n(%d+) ([%d.]+)$")
  if body then body = body:gsub("\n$", "") end -- ngx.say's newline
  return tonumber(status), body, tonumber(secs), headers
end

local function get_json(path, opts)
  local status, body, secs, headers = http(path, opts)
  return status, cjson.decode(body or ""), secs, headers
end

-- Several paths over one keepalive connection (curl reuses it): in a
-- 1-worker nginx that is one worker anyway; the point is the order.
local function get_json_seq(paths)
  local cmd = "curl -sS --max-time 30"
  for i, p in ipairs(paths) do
    if i > 1 then cmd = cmd .. " --next" end
    cmd = cmd .. " -w '\\n' " .. sh_quote(base .. p)
  end
  local pipe = io.popen(cmd)
  local out = {}
  for line in pipe:lines() do
    if line ~= "" then out[#out + 1] = cjson.decode(line) end
  end
  pipe:close()
  return out
end

-- A request in the background: returns a handle for finish().
local function spawn(path)
  local out = os.tmpname()
  os.execute("( curl -sS --max-time 30 -w '\\n%{http_code} %{time_total}' " .. sh_quote(base .. path) ..
    " > " .. sh_quote(out) .. " 2>&1; echo done > " .. sh_quote(out .. ".done") .. " ) &")
  return out
end

local function finish(h, timeout)
  local deadline = now() + (timeout or 30)
  while not read_file(h .. ".done") and now() < deadline do sleep(0.01) end
  local out = read_file(h) or ""
  os.remove(h)
  os.remove(h .. ".done")
  local body, status, secs = out:match("^(.*)\n(%d+) ([%d.]+)$")
  return tonumber(status), cjson.decode(body or ""), tonumber(secs)
end

local function wait_until(fn, timeout)
  local deadline = now() + (timeout or 5)
  repeat
    local v = fn()
    if v then return v end
    sleep(0.02)
  until now() > deadline
  return nil
end

-- What a log phase or a timer stored under key (the app's /t/result),
-- once it is there: those run after the response, so poll for it.
local function stored_result(key)
  return wait_until(function()
    local _, t = get_json("/t/result?key=" .. key)
    return type(t) == "table" and not t.missing and t
  end)
end

local function count_in_log(needle)
  local s = read_file(prefix .. "/error.log") or ""
  local n, i = 0, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

local function median(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  return c[math.floor((#c + 1) / 2)]
end

local db_engine
local function db()
  db_engine = db_engine or scoped.create_engine(url, {pool_size = 1, max_overflow = 0})
  return db_engine
end
local function db_scalar(sql, params)
  local conn = db():connect()
  local v = conn:scalar(sql, params)
  conn:commit()
  conn:close()
  return v
end
local function db_rows(sql, params)
  local conn = db():connect()
  local rows = conn:execute(sql, params):all()
  conn:commit()
  conn:close()
  return rows
end

local STALE = "session not removed at the end of the request"

-- ---- the checks ----------------------------------------------------------------
-- Each returns ok [, diagnostic]; a raised error is a failure with its text.

local checks = {single = {}, load = {}, quit = {}}
local function check(ph, name, fn) table.insert(checks[ph], {name = name, fn = fn}) end

local function setup_tables()
  local conn = db():connect()
  for _, sql in ipairs({
    "DROP TABLE IF EXISTS ngx_marks", "DROP TABLE IF EXISTS ngx_off", "DROP TABLE IF EXISTS ngx_load",
    "CREATE TABLE ngx_marks (id INT AUTO_INCREMENT PRIMARY KEY, tag VARCHAR(64))",
    "CREATE TABLE ngx_off (id INT AUTO_INCREMENT PRIMARY KEY, tag VARCHAR(64) UNIQUE, note TEXT NULL)",
    "CREATE TABLE ngx_load (id INT AUTO_INCREMENT PRIMARY KEY, req VARCHAR(64) NOT NULL, " ..
      "conn_id BIGINT NOT NULL, pid INT NOT NULL)",
  }) do conn:exec_driver_sql(sql) end
  conn:close()
end

-- single ---------------------------------------------------------------------------

check("single", "nginx answers; scoped.null == ngx.null; a DB-free location", function()
  setup_tables()
  local status, body = http("/ping")
  if status ~= 200 or body ~= "pong" then return false, "got " .. tostring(status) .. " " .. tostring(body) end
  local _, r = get_json("/t/null")
  return r and r.scoped_is_ngx == true and r.scoped_is_cjson == true, cjson.encode(r)
end)

check("single", "a reused coroutine never hands a forgotten session to the next request", function()
  local warned = count_in_log(STALE)
  local tag = "forgot-" .. run_id
  local r = get_json_seq({"/t/forget?tag=" .. tag, "/t/peek"})
  local a, b = r[1], r[2]
  if not (a and b) then return false, "responses: " .. cjson.encode(r) end
  -- the premise: ngx_lua did run request 2 in request 1's coroutine
  if a.co ~= b.co then return false, "coroutine not reused (" .. a.co .. " vs " .. b.co .. "): check cannot run" end
  if not a.in_tx then return false, "request 1 was not in a transaction" end
  if b.had_session then return false, "request 2 saw request 1's session" end
  if b.sid == a.sid then return false, "same session in both requests" end
  if b.in_tx then return false, "request 2's session is in a transaction" end
  local rows = db_scalar("SELECT COUNT(*) FROM ngx_marks WHERE tag = :t", {t = tag})
  if rows ~= 0 then return false, "request 1's uncommitted insert survived: " .. rows end
  if count_in_log(STALE) ~= warned + 1 then return false, "expected one warning in error.log" end
  local _, st = get_json("/t/stats?engine=main")
  return st.stats.checkedout == 0, "connections still out: " .. cjson.encode(st.stats)
end)

check("single", "log_by_lua Session:remove() closes what the handler forgot (no warning later)", function()
  local warned = count_in_log(STALE)
  local tag = "safe-" .. run_id
  local r = get_json_seq({"/s/forget?tag=" .. tag, "/t/peek", "/t/peek"})
  if #r ~= 3 then return false, "responses: " .. cjson.encode(r) end
  if r[1].co ~= r[2].co then return false, "coroutine not reused: check cannot run" end
  if r[2].checked_out_before ~= 0 then return false, "the connection was not back before request 2" end
  if r[2].had_session then return false, "request 2 saw request 1's session" end
  if count_in_log(STALE) ~= warned then return false, "a warning was logged" end
  return db_scalar("SELECT COUNT(*) FROM ngx_marks WHERE tag = :t", {t = tag}) == 0, "insert survived"
end)

check("single", "scopes.ngx_request: one session per request, shared by its light threads", function()
  local r = get_json_seq({"/t/reqscope", "/t/reqscope"})
  local a, b = r[1], r[2]
  if not (a and b and a.threads) then return false, cjson.encode(r) end
  for _, t in ipairs(a.threads) do
    if t.req_sid ~= a.req_sid or t.req_cid ~= a.req_cid then
      return false, "a light thread got another request-scoped session: " .. cjson.encode(a)
    end
  end
  if a.req_sid == b.req_sid then return false, "two requests shared a session" end
  return true
end)

check("single", "coroutine scope: each ngx.thread has its own session", function()
  local _, a = get_json("/t/reqscope")
  local t1, t2 = a.threads[1], a.threads[2]
  return t1.co_sid ~= t2.co_sid and t1.co_sid ~= a.co_sid and t2.co_sid ~= a.co_sid, cjson.encode(a)
end)

check("single", "ngx_request scope: log_by_lua remove() returns what a request kept", function()
  local _, before = get_json("/t/stats?engine=main")
  local r = get_json_seq({"/s/reqscope?keep=1", "/t/stats?engine=main"})
  if not r[2] then return false, cjson.encode(r) end
  return r[2].stats.checkedout == 0 and before.stats.checkedout == 0, cjson.encode(r[2].stats)
end)

check("single", "an exhausted pool does not block the worker: waiters queue, a DB-free location answers", function()
  local hold = spawn("/t/hold?secs=1.5")
  local got = wait_until(function()
    local _, st = get_json("/t/stats?engine=tiny")
    return st and st.stats.checkedout == 1
  end)
  if not got then return false, "the holder never got its connection" end
  local waiters = {}
  for i = 1, 3 do
    waiters[i] = spawn("/t/wait?n=" .. i)
    sleep(0.05)
  end
  local queued = wait_until(function()
    local _, st = get_json("/t/stats?engine=tiny")
    return st and st.stats.waiting == 3
  end)
  if not queued then return false, "the waiters did not queue" end
  local times = {}
  for i = 1, 5 do
    local status, body, secs = http("/ping")
    if status ~= 200 or body ~= "pong" then return false, "ping failed" end
    times[i] = secs
  end
  local _, st = get_json("/t/stats?engine=tiny")
  local hs, h = finish(hold)
  local results = {}
  for i = 1, 3 do
    local s, w = finish(waiters[i])
    if s ~= 200 or not w or w.conn_id == nil then return false, "waiter " .. i .. ": " .. tostring(s) .. " " .. cjson.encode(w) end
    results[i] = w
  end
  if hs ~= 200 then return false, "holder failed" end
  local worst = math.max(unpack(times))
  print(string.format("# ping while 3 requests wait for the pool: worst %.1f ms, median %.1f ms",
    worst * 1000, median(times) * 1000))
  if st.stats.waiting ~= 3 then return false, "waiters left the queue during the pings" end
  if worst > 0.1 then return false, string.format("a ping took %.3f s", worst) end
  for i = 1, 3 do
    if results[i].conn_id ~= h.conn_id then return false, "waiter got another connection" end
    if results[i].waited < 0.8 then return false, "waiter " .. i .. " did not wait" end
    if i > 1 and results[i].got_at < results[i - 1].got_at then return false, "not served in arrival order" end
  end
  return true
end)

check("single", "a checkin wakes the one waiter it serves, not every waiter of the worker", function()
  local _, r = get_json("/t/herd")
  if not r then return false, "no answer" end
  print(string.format("# %d light threads on a pool of one: %d checkouts, %d waiters woken",
    r.n or 0, r.got or 0, r.posts or -1))
  -- N - 1 queued; each checkin serves the next (every waiter woken: 28)
  return r.got == r.n and r.posts == r.n - 1 and r.waiting == 0, cjson.encode(r)
end)

check("single", "a queued checkout gives up after pool_timeout with TimeoutError", function()
  local hold = spawn("/t/hold?secs=1.5&e=quick")
  wait_until(function()
    local _, st = get_json("/t/stats?engine=quick")
    return st and st.stats.checkedout == 1
  end)
  local _, w = get_json("/t/wait?e=quick")
  finish(hold)
  if not (w and w.error) then return false, "no error: " .. cjson.encode(w) end
  return w.error.kind == "TimeoutError" and w.waited >= 0.45 and w.waited < 1.2,
    cjson.encode(w)
end)

check("single", "a phase that cannot yield (header_filter, log) raises TimeoutError at once", function()
  local hold = spawn("/t/hold?secs=1")
  wait_until(function()
    local _, st = get_json("/t/stats?engine=tiny")
    return st and st.stats.checkedout == 1
  end)
  local _, _, _, headers = http("/hf/x")
  http("/lg/x?key=busy-" .. run_id)
  local lg = stored_result("busy-" .. run_id)
  finish(hold)
  local hf = cjson.decode(headers:match("X%-Result: ([^\r\n]+)") or "")
  if not (hf and lg) then return false, "no result: " .. tostring(headers) end
  for _, r in ipairs({hf, lg}) do
    if r.ok or r.kind ~= "TimeoutError" or r.elapsed > 0.05 then return false, cjson.encode(r) end
  end
  -- and with a connection free, the single try succeeds
  _, _, _, headers = http("/hf/x")
  hf = cjson.decode(headers:match("X%-Result: ([^\r\n]+)") or "")
  http("/lg/x?key=free-" .. run_id)
  lg = stored_result("free-" .. run_id)
  return hf and hf.ok and lg and lg.ok, cjson.encode({hf, lg})
end)

check("single", "offload: a transaction over several statements in worker threads; results and errors", function()
  local status, r = get_json("/t/offload?tag=off-" .. run_id)
  if status ~= 200 or not r then return false, tostring(status) .. " " .. cjson.encode(r) end
  local bad = {}
  local function want(c, what) if not c then bad[#bad + 1] = what end end
  want(r.conn1 == r.conn2, "one connection for the transaction")
  want(r.seen_in_tx == 1 and r.after_rollback == 0, "rollback undid the insert")
  want(r.rowcount == 1 and type(r.lastrowid) == "number" and r.lastrowid > 0, "rowcount / lastrowid")
  want(r.row and r.row.tag == "off-" .. run_id and r.row.note_is_null and r.row.f == "1.5", "row access")
  want(r.row and r.row.fields and r.row.fields[3] == "note" and r.row.dict.tag == r.row.tag, "_fields / _asdict")
  want(r.mappings and r.mappings[2] and r.mappings[2].b == 4, "mappings()")
  want(r.scalars and r.scalars[2] == 2 and r.none, "scalars(), first() on no row")
  want(r.dup_ok == false and r.dup.kind == "IntegrityError" and r.dup.code == 1062 and r.dup.is_dbapi
    and r.dup.text:find("[SQL: INSERT", 1, true), "IntegrityError as an error table")
  want(r.syntax.kind == "ProgrammingError" and r.syntax.code == 1064, "ProgrammingError")
  want(r.after_error == 42, "usable after errors")
  want(r.leases_after == 0, "no lease left")
  want(db_scalar("SELECT COUNT(*) FROM ngx_off WHERE tag = :t", {t = "off-" .. run_id}) == 1, "committed once")
  get_json("/t/offload_timer?key=timer-" .. run_id)
  local timer = stored_result("timer-" .. run_id)
  want(timer and timer.ok and timer.value == 42 and timer.phase == "timer", "offload from a timer")
  return #bad == 0, table.concat(bad, "; ") .. " " .. cjson.encode(r)
end)

-- ---- the non-blocking io_wait alone (spec/openresty/ngx_wait_app.lua) -------
-- csrc/ngx/ngx_wait.c is built when nginx-dev is installed (make ngx-wait);
-- without it these checks say so and pass: scoped then blocks as before
local NB_BUILT = read_file("build/luajit/scoped/ngx_wait.so") ~= nil

local function nb_check(name, fn)
  check("single", name, function()
    if not NB_BUILT then
      print("# skipped: build/luajit/scoped/ngx_wait.so not built (nginx-dev not installed)")
      return true
    end
    return fn()
  end)
end

nb_check("io_wait: the shim loads in the worker", function()
  local _, r = get_json("/t/nbwait_status")
  return r and r.ok == true, cjson.encode(r)
end)

nb_check("io_wait: light threads wait on their fds at once, each wakes for its own", function()
  local _, r = get_json("/t/nbwait_overlap")
  if not r then return false, "no answer" end
  local woke = r.woke or {}
  local all = #woke == r.n
  for i = 1, r.n do all = all and woke[i] == true end
  -- every wait began before the first poke; each woke right after its own
  local order = r.log and r.log:find("^wait1 wait2 wait3 wait4 poke4 woke4 poke3 woke3 poke2 woke2 poke1 woke1$")
  -- registered while open (kept), freed once closed (a sweep): the 4 and
  -- the one that was readable at once
  return all and order and r.waiting_all == r.n and r.in_epoll == r.n and r.waiting_after == 0
    and r.kept == r.n and r.ready_r and r.ready_w and r.ready_rw and r.drained == false and r.again
    and r.stale == r.n + 1 and r.stale_swept == 0 and r.left == 0, cjson.encode(r)
end)

nb_check("io_wait: a timeout returns false; the registration serves the next wait", function()
  local _, r = get_json("/t/nbwait_timeout")
  return r and r.timed_out == false and r.polled == false and r.waiting == 0
    and r.after == true and r.stale == 0 and r.left == false, cjson.encode(r)
end)

nb_check("io_wait: a killed waiter's registration is freed once its socket closes, even if the fd is reused", function()
  local before = count_in_log("epoll_ctl")
  local _, r = get_json("/t/nbwait_kill")
  if not r then return false, "no answer" end
  local alerts = count_in_log("epoll_ctl") - before
  return r.armed and r.waiting_killed == 1 and r.gone_from_epoll and r.stale_closed == 1
    and r.stale_swept == 0 and r.swept and r.reused and r.new_armed and r.stale_new == 0
    and r.new_still_armed and r.new_woke == true and r.stale_end == 0 and r.left_end == false
    and alerts == 0, cjson.encode(r) .. " epoll_ctl lines in error.log: " .. alerts
end)

nb_check("io_wait: a raw TCP connection to the server, connect and greeting waited for", function()
  local port = url:match("^mysql://[^/]*:(%d+)/")
  local _, r = get_json("/t/nbwait_tcp?port=" .. tostring(port))
  return r and r.w == true and r.r == true and (r.n or 0) > 4, cjson.encode(r)
end)

nb_check("io_wait: a light thread killed during a statement leaves no registration of a closed socket", function()
  local _, r = get_json("/t/nb_kill")
  return r and r.waiting_before == 1 and r.stale_swept == 0 and r.waiting == 0
    and r.live <= r.open and r.v == 42, cjson.encode(r)
end)

-- Latency of a DB-free request while another request runs SELECT SLEEP(0.2).
local function latency_under_sleep(mode)
  local times = {}
  for i = 1, 5 do
    local h = spawn("/t/slow?secs=0.2&mode=" .. mode)
    sleep(0.05)
    local _, _, secs = http("/ping")
    times[i] = secs
    local s = finish(h)
    if s ~= 200 then error("slow request failed in " .. mode .. " mode") end
  end
  return median(times), times
end

check("single", "offload and io_wait keep the worker responsive during SELECT SLEEP(0.2); inline blocks it", function()
  local inline = latency_under_sleep("inline")
  local offload = latency_under_sleep("offload")
  local nb = latency_under_sleep("nb")
  print(string.format("# latency of /ping while another request runs SELECT SLEEP(0.2), median of 5: " ..
    "inline %.1f ms, offload %.1f ms, io_wait %.1f ms", inline * 1000, offload * 1000, nb * 1000))
  return offload < 0.05 and nb < 0.05 and inline > 0.1,
    string.format("inline %.3f s, offload %.3f s, io_wait %.3f s", inline, offload, nb)
end)

check("single", "a streaming Result under io_wait reads every row and leaves the worker responsive", function()
  local times, got = {}, nil
  for i = 1, 3 do
    local h = spawn("/t/stream?mode=nb")
    sleep(0.05)
    local _, _, secs = http("/ping")
    times[i] = secs
    local s, body = finish(h)
    if s ~= 200 or type(body) ~= "table" then return false, "the stream request failed: " .. tostring(s) end
    got = body
  end
  local ping = median(times)
  print(string.format("# latency of /ping while another request streams 200 rows (0.2 s): io_wait %.1f ms", ping * 1000))
  return got.rows == 200 and got.sum == 20100 and got.rowcount == 200 and ping < 0.05,
    string.format("rows %s, sum %s, rowcount %s, /ping %.3f s", tostring(got.rows), tostring(got.sum),
      tostring(got.rowcount), ping)
end)

-- Throughput of SELECT 1 requests, curl --parallel.
local function throughput(path, n, conc)
  local cfg = os.tmpname()
  local f = assert(io.open(cfg, "w"))
  for _ = 1, n do f:write('url = "', base, path, '"\noutput = "/dev/null"\n') end
  f:close()
  local t0 = now()
  local p = io.popen("curl -sS --no-progress-meter --parallel --parallel-immediate --parallel-max " .. conc ..
    " -K " .. sh_quote(cfg) .. " -w '%{http_code}\\n'")
  local ok = 0
  for line in p:lines() do if line == "200" then ok = ok + 1 end end
  p:close()
  local secs = now() - t0
  os.remove(cfg)
  return ok, n / secs
end

check("single", "SELECT 1 requests, inline, offloaded and io_wait: all answered", function()
  local n, conc = 2000, 20
  local ok, rate = {}, {}
  for _, m in ipairs({"inline", "offload", "nb"}) do throughput("/t/select1?mode=" .. m, 200, conc) end -- warm
  for _, m in ipairs({"inline", "offload", "nb"}) do ok[m], rate[m] = throughput("/t/select1?mode=" .. m, n, conc) end
  print(string.format("# SELECT 1 throughput, %d requests at concurrency %d, 1 worker: " ..
    "inline %.0f req/s, offload %.0f req/s, io_wait %.0f req/s", n, conc, rate.inline, rate.offload, rate.nb))
  return ok.inline == n and ok.offload == n and ok.nb == n,
    string.format("200s: inline %d, offload %d, io_wait %d of %d", ok.inline, ok.offload, ok.nb, n)
end)

check("single", "examples/openresty/app.lua: POST and GET /items, null as JSON null, 409 on a duplicate", function()
  local ready = wait_until(function()
    return db_scalar("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() " ..
      "AND TABLE_NAME = 'items'") == 1
  end)
  if not ready then return false, "the example's init_worker timer did not create its table" end
  local name = "pen-" .. run_id
  local s1, created = get_json("/items", {body = cjson.encode({name = name})})
  local s2 = get_json("/items", {body = cjson.encode({name = name})})
  local s3, list = get_json("/items")
  if s1 ~= 201 or s2 ~= 409 or s3 ~= 200 then return false, table.concat({s1, s2, s3}, " ") end
  local found
  for _, item in ipairs(list) do if item.name == name then found = item end end
  return found and found.id == created.id and found.note == cjson.null, cjson.encode(found)
end)

check("single", "examples/openresty/app.lua: GET /metrics, the worker's pool in Prometheus' format", function()
  get_json("/items") -- at least one checkout of the example's engine
  local status, body, _, headers = http("/metrics")
  if status ~= 200 or not headers:lower():find("content-type: text/plain; version=0.0.4", 1, true) then
    return false, tostring(status) .. " " .. headers
  end
  local checkouts = tonumber(body:match('\nscoped_pool_checkouts_total{engine="[^"]*"} (%d+)'))
  local typed = body:find("# TYPE scoped_pool_checkouts_total counter", 1, true)
  return typed and checkouts and checkouts >= 1, body:sub(1, 300)
end)

check("single", "re-entering a connection (finalizers, a params __index): the busy error, and the worker lives", function()
  local r = get_json_seq({"/t/reenter", "/t/reenter"})
  local a, b = r[1], r[2]
  if not (a and b and a.pid) then return false, "responses: " .. cjson.encode(r) end
  if a.pid ~= b.pid then return false, "the worker was replaced between the requests" end
  for _, x in ipairs({a, b}) do
    if x.busy < 1 or x.rows ~= 20000 or x.v ~= 5 or not x.commit_refused or #x.other > 0 then
      return false, cjson.encode(x)
    end
  end
  local _, st = get_json("/t/stats?engine=inline")
  return st and st.stats.checkedout == 0, "connections still out: " .. cjson.encode(st and st.stats)
end)

check("single", "no connection left checked out, no lease left, nothing worse than a warning logged", function()
  local ok = wait_until(function()
    local _, st = get_json("/status")
    if not (st and st.workers[1]) then return false end
    for _, w in ipairs(st.workers) do
      if w.at < st.now - 1 then return false end
      for _, e in pairs(w) do
        if type(e) == "table" and e.stats and e.stats.checkedout ~= 0 then return false end
      end
    end
    return true
  end)
  if not ok then local _, st = get_json("/status"); return false, cjson.encode(st) end
  local log = read_file(prefix .. "/error.log") or ""
  local bad = log:match("[^\n]*%[error%][^\n]*") or log:match("[^\n]*%[crit%][^\n]*")
    or log:match("[^\n]*%[alert%][^\n]*") or log:match("[^\n]*%[emerg%][^\n]*")
  return bad == nil, bad
end)

-- load ------------------------------------------------------------------------------

local WORKERS, PER_WORKER = 2, 3 + 2 -- nginx.conf.in, ngx_spec_app.lua's E.main

check("load", "500 requests at concurrency 50 on 2 workers: all 200, each with its own data", function()
  local N, C = 500, 50
  -- the server's own peak, from a clean count: nothing of this nginx is
  -- connected yet (its pools start empty), the previous one's connections
  -- must be gone
  local quiet = wait_until(function()
    return tonumber(db_rows("SHOW GLOBAL STATUS LIKE 'Threads_connected'")[1][2]) <= 1
  end, 10)
  local conn = db():connect()
  conn:exec_driver_sql("FLUSH STATUS")
  local baseline = tonumber(conn:execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'"):all()[1][2])
  conn:close()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. sh_quote(dir)))
  local cfg = dir .. "/curl.cfg"
  local f = assert(io.open(cfg, "w"))
  for i = 1, N do
    f:write('url = "', base, "/t/load?req=L", i, "-", run_id, '"\noutput = "', dir, "/", i, '"\n')
  end
  f:close()
  local t0 = now()
  local p = io.popen("curl -sS --no-progress-meter --parallel --parallel-immediate --parallel-max " .. C ..
    " -K " .. sh_quote(cfg) .. " -w '%{http_code}\\n'")
  local codes = {}
  for line in p:lines() do codes[line] = (codes[line] or 0) + 1 end
  p:close()
  local secs = now() - t0
  _G.LOAD = {dir = dir, N = N, baseline = baseline, quiet = quiet, secs = secs}
  print(string.format("# %d requests in %.2f s (%.0f req/s)", N, secs, N / secs))
  if codes["200"] ~= N then return false, "status codes: " .. cjson.encode(codes) end
  local bad, pids = {}, {}
  LOAD.responses = {}
  for i = 1, N do
    local r = cjson.decode(read_file(dir .. "/" .. i) or "")
    local req = "L" .. i .. "-" .. run_id
    if not r or r.req ~= req or r.back_req ~= req or r.back_conn ~= r.conn_id then
      bad[#bad + 1] = i
    else
      LOAD.responses[req] = r
      pids[tostring(r.pid)] = (pids[tostring(r.pid)] or 0) + 1
    end
  end
  os.execute("rm -rf " .. sh_quote(dir))
  local npids = 0
  for _ in pairs(pids) do npids = npids + 1 end
  print("# requests per worker: " .. cjson.encode(pids))
  if #bad > 0 then return false, #bad .. " responses without their own data, e.g. #" .. bad[1] end
  return npids == WORKERS, "served by " .. npids .. " worker(s)"
end)

check("load", "every committed row is there once, as its request reported it", function()
  local rows = db_rows("SELECT req, id, conn_id, pid FROM ngx_load WHERE req LIKE :p", {p = "L%-" .. run_id})
  local seen = {}
  for _, row in ipairs(rows) do
    if seen[row.req] then return false, "twice: " .. row.req end
    seen[row.req] = true
    local r = LOAD.responses[row.req]
    if not r or r.id ~= row.id or r.conn_id ~= row.conn_id or r.pid ~= row.pid then
      return false, "row differs from its response: " .. row.req
    end
  end
  return #rows == LOAD.N, #rows .. " rows"
end)

check("load", "no connection leaked: every worker's pool has all connections back", function()
  local last
  local ok = wait_until(function()
    local _, st = get_json("/status")
    last = st
    if not (st and #st.workers == WORKERS) then return false end
    for _, w in ipairs(st.workers) do
      -- a status published after the load, with everything checked in
      if w.at < st.now - 0.5 then return false end
      if w.main.stats.checkedout ~= 0 or w.main.stats.waiting ~= 0 then return false end
      if w.main.stats.open > PER_WORKER then return false end
    end
    return true
  end, 5)
  for _, w in ipairs(last and last.workers or {}) do
    print("# worker " .. w.pid .. ": " .. w.main.status)
  end
  return ok, cjson.encode(last)
end)

check("load", "the server never saw more than workers x (pool_size + max_overflow) connections", function()
  if not LOAD.quiet then
    local rows = db_rows("SELECT ID, USER, HOST, COMMAND, TIME FROM information_schema.PROCESSLIST")
    local t = {}
    for _, r in ipairs(rows) do t[#t + 1] = table.concat({r[1], r[2], r[3], r[4], r[5]}, " ") end
    return false, "other connections to the server before the load test:\n" .. table.concat(t, "\n")
  end
  local peak = tonumber(db_rows("SHOW GLOBAL STATUS LIKE 'Max_used_connections'")[1][2]) - LOAD.baseline
  print(string.format("# peak connections from nginx: %d (limit %d)", peak, WORKERS * PER_WORKER))
  return peak <= WORKERS * PER_WORKER and peak > 0, "peak " .. peak
end)

-- ---- the hint of a checkout that cannot wait (issue 22) ------------------------
-- A pool of 1 held by a request, then a checkout from the set phase
-- (set_by_lua) and from body_filter: TimeoutError at once, its text naming
-- the phase, and a hint that says where a checkout can wait instead.
check("single", "set_by_lua, body_filter: TimeoutError naming the phase, with a hint", function()
  local hold = spawn("/t/hold?secs=2")
  wait_until(function()
    local _, st = get_json("/t/stats?engine=tiny")
    return st and st.stats.checkedout == 1
  end)
  local _, set = get_json("/nw/set")
  local _, bf = get_json("/nw/bf")
  finish(hold)
  local bad = {}
  for name, r in pairs({set = set, body_filter = bf}) do
    local message = "QueuePool limit of size 1 overflow 0 reached, connection timed out, timeout 5.00 " ..
      "(the " .. name .. " phase cannot wait for a connection)"
    local hint = "1 connection is checked out (pool_size 1 + max_overflow 0) and the " .. name ..
      " phase cannot wait for one: check out in a phase that can (rewrite, access, content, " ..
      "ngx.timer.at), give them back sooner (close(), Session:remove()) or raise the limit; " ..
      "pool_leak_threshold = seconds shows where they were checked out"
    if type(r) ~= "table" then
      bad[#bad + 1] = name .. ": no result"
    elseif r.ok or r.phase ~= name or r.kind ~= "TimeoutError" or r.message ~= message or r.hint ~= hint
        or r.err_phase ~= name or r.checkedout ~= 1
        or r.text ~= "scoped.TimeoutError: " .. message .. "\n[hint: " .. hint .. "]" then
      bad[#bad + 1] = name .. ": " .. cjson.encode(r)
    end
  end
  return #bad == 0, table.concat(bad, "\n")
end)

-- quit -----------------------------------------------------------------------------
-- A 2-worker nginx that the checks reload and stop (graceful, as `nginx -s
-- reload` and `nginx -s quit` do) while requests wait in io_wait: its
-- error.log must have no alert (above all no "open socket ... left in
-- connection", which a wait left registered with nginx gives).

-- N requests of path (a function of i) at concurrency C in the background:
-- -> a handle for load_finish (the status codes)
local function load_start(pathf, N, C)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. sh_quote(dir)))
  local f = assert(io.open(dir .. "/curl.cfg", "w"))
  for i = 1, N do f:write('url = "', base, pathf(i), '"\noutput = "/dev/null"\n') end
  f:close()
  os.execute("( curl -sS --no-progress-meter --parallel --parallel-immediate --parallel-max " .. C ..
    " -K " .. sh_quote(dir .. "/curl.cfg") .. " -w '%{http_code}\\n' > " .. sh_quote(dir .. "/codes") ..
    " 2>/dev/null; echo done > " .. sh_quote(dir .. "/done") .. " ) &")
  return dir
end

local function load_finish(dir)
  wait_until(function() return read_file(dir .. "/done") end, 60)
  local codes = {}
  for line in (read_file(dir .. "/codes") or ""):gmatch("[^\n]+") do codes[line] = (codes[line] or 0) + 1 end
  os.execute("rm -rf " .. sh_quote(dir))
  return codes
end

local function master_pid() return tonumber(read_file(prefix .. "/nginx.pid") or "") end
local function alive(pid) return os.execute("kill -0 " .. pid .. " 2>/dev/null") == 0
  or os.execute("kill -0 " .. pid .. " 2>/dev/null") == true end

-- each worker left with a killed waiter that no later wait sweeps
local function leave_waiters()
  local pids = {}
  for _ = 1, 20 do
    local _, r = get_json("/t/nbwait_leave")
    if r and r.armed then pids[#pids + 1] = true end
  end
  return #pids
end

local QUIT_PORT = url and url:match("^mysql://[^/]*:(%d+)/")

check("quit", "io_wait under load: nginx -s reload mid-load, every request answered", function()
  if not NB_BUILT then print("# skipped: ngx_wait.so not built") return true end
  local left = leave_waiters()
  local h = load_start(function(i)
    return i % 2 == 0 and "/t/nbwait_tcp?port=" .. QUIT_PORT or "/t/nbwait_timeout"
  end, 600, 20)
  sleep(0.3)
  local pid = master_pid()
  os.execute("kill -HUP " .. pid)   -- nginx -s reload
  local codes = load_finish(h)
  print("# reload under load: status codes " .. cjson.encode(codes) .. ", killed waiters left armed: " .. left)
  return codes["200"] == 600 and left == 20, cjson.encode(codes)
end)

-- The killed waiters are left last (any later wait in their worker would
-- sweep them): the shutdown itself must release them. The 10 requests in
-- flight at the quit wait in io_wait (2 s), armed before them.
check("quit", "io_wait: nginx -s quit with waits in flight and killed waiters armed: no alert", function()
  if not NB_BUILT then print("# skipped: ngx_wait.so not built") return true end
  local h = load_start(function() return "/t/nbwait_hold?secs=2" end, 10, 10)
  sleep(0.3)
  local left = leave_waiters()
  local pid = master_pid()
  os.execute("kill -QUIT " .. pid)  -- nginx -s quit: graceful
  local gone = wait_until(function() return not alive(pid) end, 20)
  local codes = load_finish(h)
  local alerts, lines = 0, {}
  for line in (read_file(prefix .. "/error.log") or ""):gmatch("[^\n]+") do
    if line:find("[alert]", 1, true) or line:find("[crit]", 1, true) or line:find("[emerg]", 1, true) then
      alerts = alerts + 1
      lines[#lines + 1] = line
    end
  end
  print(string.format("# quit under load: master gone %s, %d requests answered 200 before it, " ..
    "killed waiters left armed: %d, alert lines: %d", tostring(gone ~= nil), codes["200"] or 0, left, alerts))
  return gone and alerts == 0 and left == 20 and (codes["200"] or 0) > 0, table.concat(lines, "\n")
end)

-- ---- main ----------------------------------------------------------------------

if mode == "count" then
  print(#checks[phase])
  return
end
assert(mode == "run" and checks[phase] and base and prefix and first, "usage: checks.lua run PHASE PORT PREFIX FIRST")
local failed = 0
for i, c in ipairs(checks[phase]) do
  local ok, res, diag = pcall(c.fn)
  if not ok then res, diag = false, tostring(res) end
  local n = first + i - 1
  if res then
    print(string.format("ok %d - %s", n, c.name))
  else
    failed = failed + 1
    print(string.format("not ok %d - %s", n, c.name))
    for line in tostring(diag):gmatch("[^\n]+") do print("#   " .. line) end
  end
  io.stdout:flush()
end
os.exit(failed == 0 and 0 or 1)
