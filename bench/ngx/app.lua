-- The OpenResty load test's handlers (bench/ngx.sh, bench/ngx/nginx.conf.in):
-- the same two units of work through scoped in three modes and through
-- lua-resty-mysql 0.29 (a benchmark peer from ../shared/peers, on this
-- nginx's lua_package_path only; scoped never requires it).
--
--   /scoped/MODE/sleep   one SELECT SLEEP(0.02)
--   /scoped/MODE/unit    INSERT + SELECT of that row + COMMIT
--   /scoped/MODE/select1 one SELECT 1 (bench/ngx_cost.sh: costs per wait)
--   /resty/sleep, /resty/unit   the same with lua-resty-mysql, as its manual
--                        says: connect (from its pool), query, set_keepalive;
--                        the unit in an explicit transaction (BEGIN ... COMMIT)
-- MODE: inline (statements block the worker), offload (nginx's thread
-- pool), nb (io_wait in nginx's event loop: the default), nbwide (nb with
-- as many connections as lua-resty-mysql really opens), nbover (nb with
-- lua-resty-mysql's pool rule: keep cap, open more on demand), bell (design (b): a
-- helper thread and a doorbell cosocket, bench/ngx/doorbell.lua).
local scoped = require "scoped"

local M = {}
local S = {}        -- scoped_session per mode
local E = {}        -- engine per mode
local CAP           -- connections per worker, every system alike
local DB            -- lua-resty-mysql's connect options

function M.init(url, cap, wide)
  CAP = cap
  -- each system its own MariaDB user (bench/ngx.sh creates them), so that
  -- the bench can count each one's connections on the server
  local function url_for(mode) return (url:gsub("^mysql://[^@/]*@", "mysql://b_" .. mode .. "@")) end
  local function engine(mode, extra, size)
    local o = {pool_size = size or cap, max_overflow = 0, pool_timeout = 60}
    for k, v in pairs(extra or {}) do o[k] = v end
    return scoped.create_engine(url_for(mode), o)
  end
  -- no io_wait: every round trip blocks the worker (what scoped did before)
  local inline = engine("inline", {io_wait = false})
  local engines = {inline = inline, offload = engine("offload", {offload = "bench_db"}), nb = engine("nb"),
    -- as many connections per worker as lua-resty-mysql opens at this
    -- concurrency (its pool_size does not cap them, see bench/README.md)
    nbwide = engine("nbwide", nil, wide),
    -- lua-resty-mysql's own rule: `cap` connections kept per worker, more
    -- opened when all are busy and closed when they come back to a full
    -- pool (its set_keepalive pool size; scoped's max_overflow = -1)
    nbover = engine("nbover", {max_overflow = -1})}
  -- design (b), a helper thread and a doorbell cosocket (bench/ngx/doorbell.lua)
  local okb, bell = pcall(engine, "bell", {io_wait = require("doorbell").io_wait})
  if okb then engines.bell = bell end
  for mode, e in pairs(engines) do
    E[mode] = e
    S[mode] = scoped.scoped_session(scoped.sessionmaker{bind = e})
  end
  local u = scoped.make_url(url)
  DB = {host = u.host, port = u.port, user = "b_resty", password = "",
        database = u.database, pool_size = cap, backlog = 10000, charset = "utf8mb4"}
end

local function fail(err)
  ngx.log(ngx.ERR, "bench: ", tostring(err))
  return ngx.exit(500)
end

local function scoped_sleep(Session)
  Session:scalar("SELECT SLEEP(0.02)")
  Session:remove()
end

local function scoped_select1(Session)
  Session:scalar("SELECT 1")
  Session:remove()
end

local function scoped_unit(Session)
  local res = Session:execute("INSERT INTO ngx_bench (w, note) VALUES (:w, :n)",
    {w = ngx.worker.id(), n = "unit"})
  local row = Session:execute("SELECT id, w, note FROM ngx_bench WHERE id = :id", {id = res.lastrowid}):one()
  if row == nil then error("row not found") end
  Session:commit()
  Session:remove()
end

function M.scoped(mode, what)
  local Session = S[mode]
  if Session == nil then return fail("no engine for mode " .. mode) end
  local f = what == "sleep" and scoped_sleep or what == "select1" and scoped_select1 or scoped_unit
  local ok, err = pcall(f, Session)
  if not ok then
    pcall(Session.remove, Session)
    return fail(err)
  end
  ngx.say("ok")
end

local mysql -- resty.mysql, required on first use (only this nginx has it)

local function resty_query(db, sql)
  local res, err, errno = db:query(sql)
  if not res then error(string.format("%s (%s): %s", tostring(err), tostring(errno), sql)) end
  return res
end

function M.resty(what)
  mysql = mysql or require "resty.mysql"
  local db = assert(mysql:new())
  db:set_timeout(60000)
  local ok, err = db:connect(DB)
  if not ok then return fail("connect: " .. tostring(err)) end
  local fine, e = pcall(function()
    if what == "sleep" then
      resty_query(db, "SELECT SLEEP(0.02)")
    elseif what == "select1" then
      resty_query(db, "SELECT 1")
    else
      resty_query(db, "BEGIN")
      local res = resty_query(db, "INSERT INTO ngx_bench (w, note) VALUES (" .. ngx.worker.id() .. ", 'unit')")
      local rows = resty_query(db, "SELECT id, w, note FROM ngx_bench WHERE id = " .. tonumber(res.insert_id))
      if rows[1] == nil then error("row not found") end
      resty_query(db, "COMMIT")
    end
  end)
  if not fine then
    db:close()
    return fail(e)
  end
  db:set_keepalive(10000, CAP)
  ngx.say("ok")
end

-- /stats/MODE: this worker's pool counters for that mode (waits, wait_max...)
function M.stats(mode)
  local e = E[mode]
  if e == nil then return fail("no engine for mode " .. mode) end
  local t = e.pool:stats()
  t.pid = ngx.worker.pid()
  ngx.say(require("cjson").encode(t))
end

-- /waitloop/MODE?k=K (bench/ngx_cost.sh): K waits with no database, one
-- after the other in one light thread: write a byte into a socketpair, wait
-- for the other end to be readable (io_wait of design nb or bell), read it
local ffi = require "ffi"
pcall(ffi.cdef, [[
  int socketpair(int domain, int type, int protocol, int sv[2]);
  long write(int fd, const void *buf, unsigned long n);
  long read(int fd, void *buf, unsigned long n);
  int close(int fd);
]])

function M.waitloop(mode)
  local io_wait = mode == "bell" and require("doorbell").io_wait or require("scoped.ngx").io_wait_hook()
  local k = tonumber(ngx.var.arg_k) or 1000
  local sv = ffi.new("int[2]")
  assert(ffi.C.socketpair(1, 1, 0, sv) == 0)
  local buf = ffi.new("char[1]")
  local woke = 0
  for _ = 1, k do
    ffi.C.write(sv[1], "x", 1)
    if io_wait(nil, sv[0], "r", 5) then woke = woke + 1 end
    ffi.C.read(sv[0], buf, 1)
  end
  ffi.C.close(sv[0]); ffi.C.close(sv[1])
  if woke ~= k then return fail("waitloop: " .. woke .. " of " .. k) end
  ngx.say("ok")
end

return M
