--- Non-blocking I/O: statements that let other coroutines run while they wait
-- for the server.
--
-- An engine made with `io_wait` runs every statement, COMMIT, ROLLBACK, the
-- rollback on return and `ping` as a resumable operation (MariaDB
-- Connector/C's non-blocking API): where the blocking call would sleep in
-- the kernel, the running coroutine calls `io_wait(raw, fd, events, timeout)`
-- instead, which yields to its event loop until the connection's socket is
-- ready. The adapters below fill in `io_wait`, and `pool_wait`/`pool_wake`
-- (a checkout that waits for a free connection yields too, and is woken by
-- the next checkin):
--
--     local cqueues = require "cqueues"
--     local nonblocking = require "scoped.nonblocking"
--     local engine = scoped.create_engine(url, nonblocking.cqueues{pool_size = 2})
--
-- Opening a connection waits the same way, with several hosts too (each
-- host's connect and the target_session_attrs / galera check: the host loop
-- of csrc/core/connector.c stops at each wait).
--
-- A streaming Result waits too: each row, and a CALL's next result set
-- header (read with the end of the set before it), are read ahead through
-- io_wait; a stream still open at commit, rollback, close or invalidate is
-- drained the same way first (NonBlocking:_check_idle).
--
-- What still blocks: a TLS connection (its handshake and reads), a stream
-- drained by the collector, host name lookups, and anything run where the
-- coroutine cannot yield (the main thread, a finalizer, a C callback): there
-- the blocking call is made.
-- @module scoped.nonblocking
local core = require "scoped.core"

local M = {}

local isyieldable = coroutine.isyieldable or function()
  local _, main = coroutine.running()
  return not main
end

-- ---- the driver -------------------------------------------------------------
--
-- C never yields (Lua 5.1 and LuaJIT cannot yield across a C call): each
-- raw:_nb* call (csrc/lua/lnb.c) either finishes, returning true and the
-- value, or returns false, fd, events, timeout; the loop below waits and goes
-- on. A wait that raises gives the statement up: the server session is
-- killed, the connection invalidated (never pooled mid-reply).
local function drive(raw, io_wait, op, sql, params, extra, done, a, b, c)
  while not done do
    local ok, ready = pcall(io_wait, raw, a, b, c)
    if not ok then
      raw:_nb_abandon()
      error(ready, 0)
    end
    done, a, b, c = raw:_nb_cont(ready ~= false, op, sql, params, extra)
  end
  return a
end

local NonBlocking = {}
NonBlocking.__index = NonBlocking
M.NonBlocking = NonBlocking

--- wrap(raw, engine): the raw connection as the engine's Connections and
-- Sessions use it when it has io_wait.
-- @local
function M.wrap(raw, engine)
  return setmetatable({_raw = raw, _engine = engine}, NonBlocking)
end

-- Whether this caller may wait by yielding; a plug-in (scoped.ngx) narrows
-- it (phases of nginx that cannot yield).
local function can_wait(engine)
  local check = engine._io_can_wait
  if check then return check() end
  return isyieldable()
end
M.can_wait = can_wait

--- finish_checkout(engine, raw, need) -> fresh: a deferred checkout's
-- pre-ping ("ping") and connect ("open"), through io_wait. On any error the
-- slot goes back to the pool (raw:close) and the error goes on.
-- @local
function M.finish_checkout(engine, raw, need)
  local io_wait = engine._io_wait
  local ok, fresh = pcall(function()
    if need == "ping" then
      if drive(raw, io_wait, "ping", nil, nil, nil, raw:_nb("ping")) then return false end
    end
    return drive(raw, io_wait, "open", nil, nil, nil, raw:_nb("open"))
  end)
  if not ok then
    raw:close()
    error(fresh, 0)
  end
  return fresh
end

local function run(engine, raw, op, sql, params, text)
  return drive(raw, engine._io_wait, op, sql, params, text, raw:_nb(op, sql, params, text))
end

local function executemany(engine, raw, sql, sets, plan)
  local total, first_id, last = 0, 0, nil
  for i = 1, #plan, 2 do
    last = run(engine, raw, "batch", sql, sets[plan[i + 1]], plan[i])
    local n = last.rowcount
    if n > 0 then total = total + n end
    if first_id == 0 then first_id = last.lastrowid or 0 end
  end
  raw:_nb_counts(last, total, first_id)
  return last
end

-- A statement on a raw connection of engine (what NonBlocking:execute and
-- a Session holding the raw connection itself run).
local function execute(engine, raw, sql, params)
  if not can_wait(engine) then return raw:execute(sql, params) end
  if type(params) == "table" and type(rawget(params, 1)) == "table" then
    -- a list of parameter sets for a :name statement is an executemany
    -- (as raw:execute decides); with ? binds it is an IN list
    local plan = raw:_nb_plan_many(sql, params, true)
    if plan then return executemany(engine, raw, sql, params, plan) end
  end
  return run(engine, raw, "execute", sql, params)
end

function NonBlocking:execute(sql, params)
  return execute(self._engine, self._raw, sql, params)
end

function NonBlocking:exec_driver_sql(sql)
  local raw, engine = self._raw, self._engine
  if not can_wait(engine) then return raw:exec_driver_sql(sql) end
  return run(engine, raw, "exec_driver_sql", sql)
end

function NonBlocking:executemany(sql, sets)
  local raw, engine = self._raw, self._engine
  if not can_wait(engine) then return raw:executemany(sql, sets) end
  return executemany(engine, raw, sql, sets, raw:_nb_plan_many(sql, sets))
end

-- ---- streaming results ------------------------------------------------------
--
-- A streaming Result (stream_results) read without blocking: before each
-- read the next row (or the end of the set) is read ahead through io_wait
-- (raw:_nb("fetch")), and the C stream's reader, which under the
-- non-blocking driver takes only what was read ahead, builds it. What
-- result.lua adds (first, one, scalar, iter, partitions, scalars,
-- mappings) runs on top of fetchone and fetchmany as on any Result.
local StreamNB = {}
M.StreamNB = StreamNB
local stream_methods = {}

StreamNB.__index = function(self, k)
  local m = stream_methods[k]
  if m ~= nil then return m end
  m = core.result_methods._lua_methods[k] -- first, one, scalar, partitions, ...
  if m ~= nil then return m end
  return self._s[k] -- rowcount, lastrowid, returns_rows, yield_per, closed, ...
end
StreamNB.__tostring = function(self) return tostring(self._s) end
StreamNB.__close = function(self) self:close() end
StreamNB.__gc = nil

local function ahead(self)
  -- where the caller cannot yield (the stream handed to the main thread,
  -- a finalizer), nothing is read ahead: the reader's own read blocks
  if not can_wait(self._engine) then return end
  local raw = self._raw
  drive(raw, self._engine._io_wait, "fetch", nil, nil, nil, raw:_nb("fetch"))
end

function stream_methods.fetchone(self)
  ahead(self)
  return self._s:fetchone()
end

function stream_methods.fetchmany(self, n)
  if n == nil then n = 1 end
  local s = self._s
  local out = {}
  while #out < n do
    ahead(self)
    local part = s:fetchmany(n - #out)
    if part[1] == nil then break end
    for i = 1, #part do out[#out + 1] = part[i] end
  end
  return out
end

function stream_methods.fetchall(self)
  return stream_methods.fetchmany(self, math.huge)
end
stream_methods.all = stream_methods.fetchall

function stream_methods.iter(self)
  return function() return stream_methods.fetchone(self) end
end

function stream_methods.nextset(self)
  local s = self._s
  if not s.returns_rows then return s:nextset() end -- closed, or past its last set
  while true do
    ahead(self)
    if s:fetchone() == nil then break end
  end
  return s:nextset()
end

-- Reads and drops the rest of the current set through io_wait.
local function drain_set(self)
  local s = self._s
  while true do
    ahead(self)
    if s:fetchone() == nil then break end
  end
end

local function closing(self, how)
  local s = self._s
  if s.returns_rows then pcall(drain_set, self) end
  return s[how](s)
end
function stream_methods.close(self) return closing(self, "close") end
function stream_methods._soft_close(self) return closing(self, "_soft_close") end
function stream_methods.keys(self) return self._s:keys() end

local function wrap_stream(self, res)
  if getmetatable(res) ~= core.stream_result_mt then return res end -- no rows: buffered
  local st = setmetatable({_s = res, _raw = self._raw, _engine = self._engine}, StreamNB)
  -- for _check_idle (commit, rollback, close): weak, so that a stream
  -- dropped unread is still the collector's to give back
  local open = self._open
  if open == nil then
    open = setmetatable({}, {__mode = "v"})
    self._open = open
  end
  open[1] = st
  return st
end

function NonBlocking:stream(sql, params, yield_per)
  local raw, engine = self._raw, self._engine
  if not can_wait(engine) then return raw:stream(sql, params, yield_per) end
  return wrap_stream(self, drive(raw, engine._io_wait, "stream", sql, params, yield_per,
    raw:_nb("stream", sql, params, yield_per)))
end

function NonBlocking:commit()
  local raw, engine = self._raw, self._engine
  if not can_wait(engine) then return raw:commit() end
  run(engine, raw, "commit")
end

function NonBlocking:rollback()
  local raw, engine = self._raw, self._engine
  if not can_wait(engine) then return raw:rollback() end
  run(engine, raw, "rollback")
end

function NonBlocking:ping()
  local raw, engine = self._raw, self._engine
  if not can_wait(engine) then return raw:ping() end
  return run(engine, raw, "ping")
end

-- What the pool's reset would send on return (pool_reset_on_return: the
-- ROLLBACK or COMMIT the reset rule calls for, or COM_RESET_CONNECTION and
-- the session set up again), sent here without blocking: the reset then
-- finds nothing to do. rollback: the Connection's own transaction is rolled
-- back first, whatever the mode. A failure invalidates the connection, as
-- the pool's own reset does.
local function end_before_return(engine, raw, rollback)
  if raw:closed() or raw:is_invalidated() or not can_wait(engine) then return end
  local mode = engine._opts.pool_reset_on_return
  local ok = true
  if rollback and raw:in_transaction() then ok = pcall(run, engine, raw, "rollback") end
  if ok and mode == "reset_connection" then
    ok = pcall(run, engine, raw, "reset")
  elseif ok and raw:in_transaction() then
    if mode == "rollback" then
      ok = pcall(run, engine, raw, "rollback")
    elseif mode == "commit" then
      ok = pcall(run, engine, raw, "commit")
    end
  end
  if not ok then raw:invalidate() end
end

function NonBlocking:reset()
  end_before_return(self._engine, self._raw, false)
  return self._raw:reset()
end

function NonBlocking:close(rollback)
  local raw = self._raw
  raw:_check_idle("close", true)
  end_before_return(self._engine, raw, rollback)
  return raw:close(rollback)
end

-- ---- a Session holding the raw connection itself ------------------------------
--
-- The Session's raw path (scoped/session.lua), for an engine whose only
-- hooks are the waits (pool_wait, pool_wake, io_wait): no Connection object,
-- no proxy, a few Lua calls per request. engine.lua's refresh() installs
-- these as engine._session_ops.
local raw_finish = core.conn_methods.finish

--- session_ops(engine, checkout) -> {checkout, execute, finish}: checkout()
-- -> raw (checkout: engine.lua's, which waits with pool_wait and defers the
-- connect to io_wait); execute(raw, sql, params); finish(raw, commit) -> the
-- busy error or nothing, as raw:finish(commit, true) (then the pool's
-- waiters are woken).
-- @local
function M.session_ops(engine, checkout)
  local ops = {}
  local released = engine._released
  function ops.checkout()
    return (checkout(engine))
  end
  if engine._io_wait then
    function ops.execute(raw, sql, params) return execute(engine, raw, sql, params) end
    function ops.finish(raw, commit)
      if can_wait(engine) and not raw:closed() and not raw:is_invalidated() then
        -- busy (called from inside one of its statements): refused before
        -- anything is sent, as raw:finish refuses
        local idle, busy = pcall(raw._check_idle, raw, commit and "commit" or "rollback", true)
        if not idle then return busy end
        local ok, err = pcall(run, engine, raw, commit and "commit" or "rollback")
        if not ok then
          raw_finish(raw, false, true) -- back to the pool (a dead one discarded) first
          if released then released() end
          error(err, 0)
        end
        -- ended: raw:finish's ROLLBACK by the reset rule finds nothing to send
        commit = false
        if engine._opts.pool_reset_on_return == "reset_connection" then
          if not pcall(run, engine, raw, "reset") then raw:invalidate() end
        end
      end
      local busy = raw_finish(raw, commit, true)
      if released and not busy then released() end
      return busy
    end
  else
    ops.execute = core.conn_methods.execute
    function ops.finish(raw, commit)
      local busy = raw_finish(raw, commit, true)
      if released and not busy then released() end
      return busy
    end
  end
  return ops
end

-- _check_idle(what, true) comes before a commit, rollback, close or
-- invalidate of the Connection, and closes a streaming Result still open on
-- it: its rows (every set of a CALL) are first read and dropped here through
-- io_wait, where the C side would drain them the blocking way. A wait that
-- raises gives the stream up (the connection invalidated) and the error
-- goes on; a server error in the rows just ends the stream, as the blocking
-- drain ends it. Called from inside a read of the stream (a finalizer, a
-- hook), the drain is refused and the C check raises as before.
function NonBlocking:_check_idle(what, ends)
  local raw = self._raw
  local open = ends and self._open
  local st = open and open[1]
  if st ~= nil then
    open[1] = nil
    if st._s.returns_rows and not raw:is_invalidated() and can_wait(self._engine) then
      local ok, err = pcall(function()
        while stream_methods.nextset(st) do end -- each set drained, then the next one's header
      end)
      if not ok and raw:is_invalidated() then error(err, 0) end
    end
  end
  return raw:_check_idle(what, ends)
end

for _, name in ipairs({"render", "in_transaction", "thread_id", "last_gtid", "invalidate",
                       "is_invalidated", "invalidation_error", "set_hide_parameters",
                       "closed", "_pin"}) do
  NonBlocking[name] = function(self, ...)
    local raw = self._raw
    return raw[name](raw, ...)
  end
end
NonBlocking.__tostring = function(self) return "NonBlocking(" .. tostring(self._raw) .. ")" end

-- ---- adapters -------------------------------------------------------------------

local function with(opts, extra)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  for k, v in pairs(extra) do
    if o[k] == nil then o[k] = v end
  end
  return o
end

--- cqueues(opts) -> the create_engine options opts with io_wait, pool_wait
-- and pool_wake for cqueues (a statement's wait is `cqueues.poll` on the
-- connection's socket; a checkout that waits for a connection waits on a
-- `cqueues.condition` that each checkin signals).
-- @tparam[opt] table opts create_engine options
-- @treturn table the options to give create_engine
function M.cqueues(opts)
  local cqueues = require "cqueues"
  local condition = require "cqueues.condition"
  local freed = condition.new()
  return with(opts, {
    io_wait = function(_, fd, events, timeout)
      -- no timeout field: cqueues would return the object when it expires
      local what = {pollfd = fd, events = events}
      local ready = cqueues.poll(what, timeout)
      -- the descriptor may be closed and its number reused once this
      -- returns (a discarded connection): cqueues must forget it now
      cqueues.cancel(fd)
      return ready == what
    end,
    pool_wait = function(remaining)
      if remaining > 0 then freed:wait(remaining) end
    end,
    pool_wake = function() freed:signal() end,
  })
end

--- luv(opts) -> the create_engine options opts with io_wait, pool_wait and
-- pool_wake for luv (libuv): the waiting coroutine yields, a `uv.new_poll`
-- handle on the socket (closed after each wait) or a timer resumes it.
-- Statements must run inside coroutines that luv's callbacks resume (as
-- luvit's coro-* libraries do): the wait yields with no value, and only this
-- adapter's callbacks resume it.
-- @tparam[opt] table opts create_engine options
-- @treturn table the options to give create_engine
function M.luv(opts)
  local uv = require "luv"
  local waiters = {} -- coroutines waiting for a connection, oldest first

  local function resume(co, ...)
    local ok, err = coroutine.resume(co, ...)
    if not ok then error(err, 0) end
  end

  return with(opts, {
    io_wait = function(_, fd, events, timeout)
      local co = coroutine.running()
      local poll = uv.new_poll(fd)
      local timer
      local finished = false
      local function finish(ready)
        if finished then return end
        finished = true
        poll:stop()
        poll:close()
        if timer then timer:stop(); timer:close() end
        resume(co, ready)
      end
      poll:start(events == "rw" and "rw" or events, function() finish(true) end)
      if timeout then
        timer = uv.new_timer()
        timer:start(math.max(1, math.ceil(timeout * 1000)), 0, function() finish(false) end)
      end
      local ok, ready = pcall(coroutine.yield)
      if not ok or not finished then
        -- resumed by someone else, or the yield raised: leave no handle behind
        finished = true
        if not poll:is_closing() then poll:stop(); poll:close() end
        if timer and not timer:is_closing() then timer:stop(); timer:close() end
        if not ok then error(ready, 0) end
      end
      return ready
    end,
    pool_wait = function(remaining)
      if not (remaining > 0) then return end
      -- woken once: by a checkin (pool_wake) or by its deadline
      local w = {co = coroutine.running(), done = false}
      local timer = uv.new_timer()
      function w.wake()
        if w.done then return end
        w.done = true
        resume(w.co)
      end
      waiters[#waiters + 1] = w
      timer:start(math.max(1, math.ceil(remaining * 1000)), 0, w.wake)
      coroutine.yield()
      w.done = true
      for i = 1, #waiters do
        if waiters[i] == w then table.remove(waiters, i); break end
      end
      if not timer:is_closing() then timer:stop(); timer:close() end
    end,
    pool_wake = function()
      local w = table.remove(waiters, 1)
      if w then
        -- resumed from the loop, not from inside the checkin that woke it
        local t = uv.new_timer()
        t:start(0, 0, function() t:close(); w.wake() end)
      end
    end,
  })
end

M._core = core
return M
