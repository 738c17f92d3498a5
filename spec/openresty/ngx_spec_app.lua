-- The handlers the OpenResty specs (spec/openresty/checks.lua) call, in the
-- nginx that spec/openresty/run.sh starts (nginx.conf.in). Each answers
-- JSON about what it saw; the checks decide.
local scoped = require "scoped"
local cjson = require "cjson.safe"

local M = {}

local E, S = {}, {} -- engines and scoped sessions by name
local shared        -- ngx.shared.scoped_spec

--- init_by_lua (master, before fork): engines open nothing.
function M.init(url)
  assert(url, "SCOPED_TEST_URL is not set")
  -- the load test's engine: 2 workers x (3 + 2) connections at most
  E.main = scoped.create_engine(url, {pool_size = 3, max_overflow = 2, pool_timeout = 20})
  -- one connection, for exhaustion: queued checkouts wait up to 5 s ...
  E.tiny = scoped.create_engine(url, {pool_size = 1, max_overflow = 0, pool_timeout = 5})
  -- ... or 0.5 s
  E.quick = scoped.create_engine(url, {pool_size = 1, max_overflow = 0, pool_timeout = 0.5})
  -- statements in nginx's thread pool; `inline` is its twin that blocks
  -- the worker (no io_wait), `nb` the default (io_wait in nginx's epoll)
  E.off = scoped.create_engine(url, {pool_size = 4, max_overflow = 0, pool_timeout = 10,
    offload = "scoped_db"})
  E.inline = scoped.create_engine(url, {pool_size = 4, max_overflow = 0, pool_timeout = 10,
    io_wait = false})
  E.nb = scoped.create_engine(url, {pool_size = 4, max_overflow = 0, pool_timeout = 10})
  for name, engine in pairs(E) do
    S[name] = scoped.scoped_session(scoped.sessionmaker{bind = engine})
  end
  S.req = scoped.scoped_session(scoped.sessionmaker{bind = E.main}, scoped.scopes.ngx_request)
end

local function publish()
  local t = {pid = ngx.worker.pid(), at = ngx.now()}
  for name, engine in pairs(E) do
    t[name] = {status = engine.pool:status(), stats = engine.pool:stats()}
  end
  shared:set("pool:" .. ngx.worker.pid(), cjson.encode(t))
end

--- init_worker_by_lua: each worker publishes its pools' status every 50 ms
--- (what /status shows), so that one request sees every worker's.
function M.init_worker()
  shared = ngx.shared.scoped_spec
  publish()
  assert(ngx.timer.every(0.05, publish))
end

local function reply(t, status)
  ngx.status = status or 200
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(t))
end

-- A name for each session (they print alike), in a weak-keyed table.
local serial, names = 0, setmetatable({}, {__mode = "k"})
local function sid(s)
  if names[s] == nil then
    serial = serial + 1
    names[s] = ngx.worker.pid() .. "-" .. serial
  end
  return names[s]
end

local function error_fields(err)
  if type(err) ~= "table" then return {message = tostring(err)} end
  return {kind = err.kind, message = err.message, code = err.code,
          is_dbapi = scoped.exc.is(err, "DBAPIError"), text = tostring(err)}
end

local H = {} -- handlers by the last part of the URI

-- A handler that never calls remove(): its session (and open transaction,
-- with a row inserted) is left in the registry under this coroutine.
function H.forget()
  local s = S.main()
  local cid = S.main:scalar("SELECT CONNECTION_ID()")
  S.main:execute("INSERT INTO ngx_marks (tag) VALUES (:tag)", {tag = ngx.var.arg_tag})
  reply({co = tostring(coroutine.running()), sid = sid(s), conn_id = cid, in_tx = s:in_transaction()})
end

-- What the next request in the same coroutine finds.
function H.peek()
  local checked_out = E.main.pool:checkedout() -- before this handler uses any
  local had = S.main.registry:has()
  local s = S.main()
  local out = {co = tostring(coroutine.running()), had_session = had, sid = sid(s),
    in_tx = s:in_transaction(), checked_out_before = checked_out}
  S.main:remove()
  reply(out)
end

-- scopes.ngx_request: the entry thread and two light threads share one
-- session (and connection); the coroutine scope gives each its own.
function H.reqscope()
  local mine = sid(S.req())
  local cid = S.req:scalar("SELECT CONNECTION_ID()")
  local co_main = sid(S.main())
  local function light()
    ngx.sleep(0.001)
    local req_sid, req_cid = sid(S.req()), S.req:scalar("SELECT CONNECTION_ID()")
    local co_sid = sid(S.main())
    S.main:remove() -- this light thread's own session
    return {req_sid = req_sid, req_cid = req_cid, co_sid = co_sid}
  end
  -- one after the other: they share one connection, and with io_wait a
  -- statement yields, so overlapping ones would find it busy (README)
  local t1 = ngx.thread.spawn(light)
  local _, r1 = ngx.thread.wait(t1)
  local t2 = ngx.thread.spawn(light)
  local _, r2 = ngx.thread.wait(t2)
  S.main:remove()
  if ngx.var.arg_keep ~= "1" then S.req:remove() end
  reply({req_sid = mine, req_cid = cid, co_sid = co_main, threads = {r1, r2}})
end

function H.null()
  reply({scoped_is_ngx = scoped.null == ngx.null, scoped_is_cjson = scoped.null == cjson.null})
end

function H.stats()
  local engine = E[ngx.var.arg_engine or "main"]
  reply({stats = engine.pool:stats(), status = engine.pool:status(), pid = ngx.worker.pid()})
end

-- Holds a connection of engine `e` across ngx.sleep.
function H.hold()
  local name = ngx.var.arg_e or "tiny"
  local cid = S[name]:scalar("SELECT CONNECTION_ID()")
  ngx.sleep(tonumber(ngx.var.arg_secs) or 1)
  S[name]:remove()
  reply({conn_id = cid, released_at = ngx.now()})
end

-- Queues for a connection of engine `e`.
function H.wait()
  local name = ngx.var.arg_e or "tiny"
  ngx.update_time()
  local t0 = ngx.now()
  local ok, cid = pcall(S[name].scalar, S[name], "SELECT CONNECTION_ID()")
  ngx.update_time()
  local t1 = ngx.now()
  S[name]:remove()
  if not ok then return reply({error = error_fields(cid), waited = t1 - t0}) end
  reply({conn_id = cid, waited = t1 - t0, got_at = t1, n = tonumber(ngx.var.arg_n)})
end

-- N light threads queue on a pool of one (E.tiny), each holding the
-- connection for a short statement: how many times the pool's waiters were
-- woken (scoped.ngx counts its posts) against how many checkins there were
function H.herd()
  local sngx = require "scoped.ngx"
  local N = 8
  local posts0 = sngx._pool_wake_counts(E.tiny) or 0
  local threads, got = {}, 0
  for i = 1, N do
    threads[i] = ngx.thread.spawn(function()
      local c = E.tiny:connect()
      c:execute("SELECT SLEEP(0.01)")
      c:close()
      got = got + 1
    end)
  end
  for i = 1, N do ngx.thread.wait(threads[i]) end
  local posts, waiting = sngx._pool_wake_counts(E.tiny)
  reply({n = N, got = got, posts = posts - posts0, waiting = waiting})
end

-- Offload: one transaction over several statements, in worker threads.
function H.offload()
  local Off = S.off
  local tag = ngx.var.arg_tag
  local out = {}
  out.conn1 = Off:scalar("SELECT CONNECTION_ID()")
  Off:execute("INSERT INTO ngx_off (tag, note) VALUES (:tag, NULL)", {tag = tag})
  out.seen_in_tx = Off:scalar("SELECT COUNT(*) FROM ngx_off WHERE tag = :tag", {tag = tag})
  out.conn2 = Off:scalar("SELECT CONNECTION_ID()")
  Off:rollback()
  out.after_rollback = Off:scalar("SELECT COUNT(*) FROM ngx_off WHERE tag = :tag", {tag = tag})
  local res = Off:execute("INSERT INTO ngx_off (tag, note) VALUES (:tag, NULL)", {tag = tag})
  out.rowcount, out.lastrowid = res.rowcount, res.lastrowid
  Off:commit()
  local row = Off:execute("SELECT id, tag, note, 1.5 AS f FROM ngx_off WHERE tag = :tag", {tag = tag}):one()
  out.row = {id = row.id, tag = row.tag, f = row[4], note_is_null = row.note == ngx.null,
             fields = row._fields, dict = row:_asdict()}
  out.mappings = Off:execute("SELECT 1 AS a, 2 AS b UNION ALL SELECT 3, 4"):mappings():all()
  out.scalars = Off:execute("SELECT 1 UNION ALL SELECT 2"):scalars():all()
  out.none = Off:execute("SELECT 1 FROM DUAL WHERE 1 = 0"):first() == nil
  local ok, err = pcall(Off.execute, Off, "INSERT INTO ngx_off (tag) VALUES (:tag)", {tag = tag})
  out.dup_ok, out.dup = ok, error_fields(err)
  Off:rollback()
  ok, err = pcall(Off.scalar, Off, "SELEKT 1")
  out.syntax = error_fields(err)
  out.after_error = Off:scalar("SELECT 41 + 1")
  S.off:remove()
  out.leases_after = require("scoped.core").lease_count()
  reply(out)
end

-- An offloaded statement from a timer (run_worker_thread works there too).
function H.offload_timer()
  local key = ngx.var.arg_key
  assert(ngx.timer.at(0, function()
    local ok, v = pcall(S.off.scalar, S.off, "SELECT 6 * 7")
    S.off:remove()
    shared:set("result:" .. key, cjson.encode({ok = ok, value = v, phase = ngx.get_phase()}))
  end))
  reply({started = true})
end

-- A statement of `secs` seconds, inline or offloaded.
function H.slow()
  local name = ({offload = "off", nb = "nb"})[ngx.var.arg_mode] or "inline"
  local secs = tonumber(ngx.var.arg_secs) or 0.2
  ngx.update_time()
  local t0 = ngx.now()
  S[name]:scalar("SELECT SLEEP(:s)", {s = secs})
  S[name]:remove()
  ngx.update_time()
  reply({took = ngx.now() - t0})
end

-- A streaming Result (stream_results) under the engine's mode: 200 rows,
-- each a millisecond apart on the server, read one by one.
function H.stream()
  local name = ({offload = "off", nb = "nb"})[ngx.var.arg_mode] or "inline"
  ngx.update_time()
  local t0 = ngx.now()
  local r = S[name]:execute("SELECT seq, SLEEP(0.001) FROM seq_1_to_200", nil, {stream_results = true})
  local n, sum = 0, 0
  for row in r:iter() do
    n = n + 1
    sum = sum + row[1]
  end
  local rowcount = r.rowcount
  S[name]:commit()
  S[name]:remove()
  ngx.update_time()
  reply({rows = n, sum = sum, rowcount = rowcount, took = ngx.now() - t0})
end

function H.select1()
  local name = ({offload = "off", nb = "nb"})[ngx.var.arg_mode] or "inline"
  local v = S[name]:scalar("SELECT 1")
  S[name]:remove()
  ngx.say(v)
end

-- The load test's request: its own transaction, its own row.
function H.load()
  local req = ngx.var.arg_req
  local cid = S.main:scalar("SELECT CONNECTION_ID()")
  local res = S.main:execute("INSERT INTO ngx_load (req, conn_id, pid) VALUES (:req, :cid, :pid)",
    {req = req, cid = cid, pid = ngx.worker.pid()})
  ngx.sleep(0.005) -- hold the connection across a yield: the pool is contended
  local back = S.main:execute("SELECT req, conn_id FROM ngx_load WHERE id = :id", {id = res.lastrowid}):one()
  S.main:commit()
  S.main:remove()
  reply({req = req, conn_id = cid, id = res.lastrowid, back_req = back.req, back_conn = back.conn_id,
         pid = ngx.worker.pid()})
end

-- Re-entering a connection (issue 17, finding 3): finalizers the collector
-- runs while a statement of the same scoped_session reads its rows, each
-- running a statement through that session, and a params __index that
-- commits it. They must meet "This connection is busy", never freed memory
-- (a worker died of signal 11 here).
function H.reenter()
  local Session = S.inline
  local tally = {busy = 0, ran = 0, other = {}}
  local function busy(err)
    return type(err) == "table" and err.kind == "InvalidRequestError"
      and tostring(err.message):find("This connection is busy", 1, true) ~= nil
  end
  local pause = collectgarbage("setpause", 100) -- cycles end inside the statement
  local rows
  Session:execute("SELECT 1")
  for _ = 1, 20 do
    for _ = 1, 300 do
      local p = newproxy(true)
      getmetatable(p).__gc = function()
        local ok, err = pcall(Session.execute, Session, "SELECT 1")
        if ok then tally.ran = tally.ran + 1
        elseif busy(err) then tally.busy = tally.busy + 1
        else tally.other[#tally.other + 1] = tostring(type(err) == "table" and err.message or err) end
      end
    end
    rows = #Session:execute("SELECT seq FROM seq_1_to_20000"):all()
    if tally.busy > 0 then break end
  end
  collectgarbage("setpause", pause)
  collectgarbage()
  local commit_ok, commit_err
  local v = Session:scalar("SELECT :a", setmetatable({}, {__index = function()
    commit_ok, commit_err = pcall(Session.commit, Session)
    return 5
  end}))
  Session:commit()
  Session:remove()
  reply({pid = ngx.worker.pid(), busy = tally.busy, ran = tally.ran, other = tally.other, rows = rows,
         v = v, commit_refused = commit_ok == false and busy(commit_err)})
end

-- Reads what a log-phase check stored.
function H.result()
  -- nothing stored yet is {missing = true} (cjson.decode("null") would be
  -- cjson.null, a truthy userdata, which the checks cannot index)
  local stored = shared:get("result:" .. ngx.var.arg_key)
  reply(stored and cjson.decode(stored) or {missing = true})
end

-- A light thread killed in the middle of an io_wait statement: once the
-- collector has found its coroutine (the connection discarded, its socket
-- closed), a sweep leaves no registration of a closed socket, every
-- registration left is a socket the engine still holds, and the engine
-- serves the next statement
function H.nb_kill()
  local sngx = require "scoped.ngx"
  local t = ngx.thread.spawn(function()
    local v = S.nb:scalar("SELECT SLEEP(2)")
    S.nb:remove()
    return v
  end)
  ngx.sleep(0.05)
  local _, waiting_before = sngx._io_wait_counts()
  assert(ngx.thread.kill(t))
  t = nil -- luacheck: ignore t
  collectgarbage()
  collectgarbage()
  local v = S.nb:scalar("SELECT 41 + 1")
  S.nb:remove()
  local live, waiting, stale = sngx._io_wait_counts(true)
  -- every engine of this app waits with io_wait but inline and offload
  local open = 0
  for _, e in pairs(E) do open = open + e.pool:checkedin() + e.pool:checkedout() end
  reply({waiting_before = waiting_before, stale_swept = stale, v = v, live = live, waiting = waiting,
         open = open})
end

-- the io_wait's own handlers (nbwait_*), added on the first request (busted
-- loads this file too, as its name ends in _spec_app, without them on its path)
local wait_handlers = false

function M.dispatch()
  if not wait_handlers then
    wait_handlers = true
    require("ngx_wait_app")(H, reply)
  end
  local name = ngx.var.uri:match("^/%a+/([%w_]+)$")
  local h = H[name]
  if not h then return reply({error = "no handler " .. tostring(name)}, 404) end
  local ok, err = pcall(h)
  if not ok then
    ngx.log(ngx.ERR, "handler ", name, ": ", tostring(err))
    return reply({error = error_fields(err)}, 500)
  end
end

--- log_by_lua: the safety net.
function M.teardown()
  for _, Session in pairs(S) do Session:remove() end
end

-- A checkout that cannot wait: one try, TimeoutError at once if none is free.
local function try_once()
  ngx.update_time()
  local t0 = ngx.now()
  local ok, err = pcall(S.tiny.scalar, S.tiny, "SELECT CONNECTION_ID()")
  ngx.update_time()
  local elapsed = ngx.now() - t0
  S.tiny:remove()
  return {ok = ok, kind = not ok and type(err) == "table" and err.kind or nil,
          message = not ok and tostring(err) or nil, elapsed = elapsed, phase = ngx.get_phase()}
end

function M.header_filter()
  local r = try_once()
  ngx.header["X-Result"] = cjson.encode(r)
end

function M.log_phase()
  shared:set("result:" .. (ngx.var.arg_key or "log"), cjson.encode(try_once()))
end

-- ---- the hint of a checkout that cannot wait (issue 22) ------------------------
-- One try on the tiny engine from a phase that cannot yield: what it raised,
-- as JSON.
function M.no_wait_json()
  local ok, err = pcall(S.tiny.scalar, S.tiny, "SELECT 1")
  S.tiny:remove()
  local t = {ok = ok, phase = ngx.get_phase()}
  if not ok then
    if type(err) ~= "table" then err = {message = tostring(err)} end
    t.kind, t.message, t.hint, t.text = err.kind, err.message, err.hint, tostring(err)
    t.err_phase, t.checkedout = err.phase, err.checkedout
  end
  return cjson.encode(t)
end

-- body_filter_by_lua: the body becomes no_wait_json()'s answer.
function M.no_wait_body_filter()
  if ngx.ctx.no_wait_done then
    ngx.arg[1] = ""
    return
  end
  ngx.ctx.no_wait_done = true
  ngx.arg[1] = M.no_wait_json() .. "\n"
end

function M.status()
  local out = {}
  for _, k in ipairs(shared:get_keys(0)) do
    if k:sub(1, 5) == "pool:" then out[#out + 1] = cjson.decode(shared:get(k)) end
  end
  ngx.update_time()
  reply({now = ngx.now(), workers = out})
end

return M
