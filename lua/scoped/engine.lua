--- Engine, Connection and Transaction: SQLAlchemy 2.0's "commit as you go"
-- over the C pool (csrc/core/pool.c via csrc/lua/lpool.c).
--
--     local engine = scoped.create_engine("mysql://app:secret@127.0.0.1/shop", {pool_size = 5})
--     local conn = engine:connect()
--     conn:execute("INSERT INTO t (id) VALUES (:id)", {id = 1})
--     conn:commit()
--     conn:close()
--
-- `scoped.create_engine` is `create_engine` here.
-- @module scoped.engine
local core = require "scoped.core"
local exc = require "scoped.exc"
local urlmod = require "scoped.url"
local event = require "scoped.event"
local nonblocking = require "scoped.nonblocking"

local M = {}

-- The C functions of the hot paths, kept as upvalues: a call through them
-- skips the method lookup through the userdata's metatable. Used only where
-- the raw connection is known to be the C userdata (a plain engine: no
-- offload stand-in, see plain below).
local pool_checkout = core.pool_methods.checkout
local raw_execute = core.conn_methods.execute
local raw_close = core.conn_methods.close

-- Engine's methods. An engine's metatable is EngineMT (below): echo is a
-- property, so that turning it on or off refreshes what the hot paths may
-- skip (refresh()).
local Engine = {}
-- defaults of the fields only begin() and begin_nested() set (see below)
local Connection = {closed = false, _root = false, _sp = false, _spn = 0}
Connection.__index = Connection
local Transaction = {}
Transaction.__index = Transaction
local Pool = {}
Pool.__index = Pool
M.Engine, M.Connection, M.Transaction = Engine, Connection, Transaction

-- create_engine's options: SQLAlchemy's names and defaults, and the types
-- they take (a list where several are fine).

--- The options of `create_engine` (its second argument). The defaults are
-- SQLAlchemy's; an unknown option or a wrong type raises `ArgumentError`
-- ("Invalid argument(s) 'foo' sent to create_engine()").
-- @table options
-- @field pool_size (number, 5) idle connections kept; 0: no limit at all, overflow included
-- @field max_overflow (number, 10) connections beyond pool_size; -1: no limit
-- @field pool_timeout (number, 30) seconds to wait for a connection (fractions allowed),
-- then `TimeoutError`
-- @field pool_recycle (number, -1) seconds after which a connection is replaced at checkout
-- @field pool_pre_ping (boolean, false) ping at checkout; a dead connection is replaced silently
-- @field pool_use_lifo (boolean, false) hand out the most recently returned connection first
-- @field pool_reset_on_return ("rollback") what the pool does with a connection given
-- back without `close()`: "rollback", "commit", "reset_connection"
-- (COM_RESET_CONNECTION, then the engine's settings again) or false
-- @field poolclass ("QueuePool") or "NullPool": no connection is kept
-- @field echo (boolean, false) log statements and pool events (to stderr or `logger`)
-- @field logger (function) `logger(level, line)`: level "info" for what echo shows
-- (statements, COMMIT, ROLLBACK, checkouts and returns), "warn" for what went wrong
-- on the side (a leak report, a listener's error); the default writes to stderr,
-- under OpenResty it is `ngx.log` at `ngx.INFO` or `ngx.WARN`
-- @field isolation_level (string) "READ COMMITTED", "REPEATABLE READ", "READ UNCOMMITTED",
-- "SERIALIZABLE" or "AUTOCOMMIT"
-- @field track_gtid (boolean, false) each connection asks the server, at connect, to
-- send the GTID of every COMMIT in its OK packet (session tracking of `last_gtid`):
-- read with `raw:last_gtid()`, and what `sessionmaker{causal_from = ...}` needs of
-- the writer's engine (see README "Several servers")
-- @field connect_args (table) URL query parameters, added to the URL's
-- @field hide_parameters (boolean, false) keep bind values out of errors and logs
-- @field pool_wait (function) the pool_wait contract: when no connection is free,
-- the checkout calls `pool_wait(remaining)` in Lua, `remaining` being the seconds
-- left of `pool_timeout`, and tries again when it returns (its return values are
-- ignored). It should return once a connection may have been given back, or after
-- at most `remaining` seconds: it may yield (`ngx.sleep`, a coroutine scheduler,
-- cqueues; C never yields), and one that returns at once makes a busy loop. The
-- caller keeps its place in the pool's FIFO queue meanwhile; once `pool_timeout`
-- is over the checkout raises `TimeoutError`. An error raised by `pool_wait` gives
-- up the place in the queue and ends the checkout with that error. A second
-- argument, the caller's ticket, has `ticket:ready()`: true once the pool has
-- handed it a connection or a slot (or its time is over), which lets a
-- `pool_wake` wake only the waiters it served (scoped.ngx does).
-- @field pool_wake (function) called with no argument each time a connection goes
-- back to the pool or its slot is freed: what wakes a `pool_wait` that yields
-- (`scoped.nonblocking`'s adapters set both)
-- @field io_wait (function or false) non-blocking statements: `io_wait(raw, fd, events, timeout)`
-- is called where a statement, COMMIT, ROLLBACK or ping would block, with the
-- connection's socket, "r", "w" or "rw", and the seconds it may wait (nil: no
-- limit); it yields to the event loop until the socket is ready and returns
-- true, or false when the time is over (the statement then fails as a
-- read_timeout does). An error it raises abandons the statement: the server
-- session is killed and the connection invalidated. Called only where the
-- coroutine can yield; elsewhere the blocking call is made. `scoped.nonblocking`
-- has adapters for cqueues and luv; under OpenResty scoped.ngx sets it
-- unless io_wait is false (every round trip then blocks, as without it).
-- @field shared (string) a name: engines of this name share one pool process-wide
-- @field pool_leak_threshold (number) seconds: a connection held longer is reported once
-- through the logger, with the traceback of its checkout
-- @field offload (string) OpenResty: run statements in this nginx thread pool
-- (ignored outside nginx)
local OPTIONS = {
  pool_size = {"number", 5},
  max_overflow = {"number", 10},
  pool_timeout = {"number", 30},
  pool_recycle = {"number", -1},
  pool_pre_ping = {"boolean", false},
  pool_use_lifo = {"boolean", false},
  pool_reset_on_return = {{"string", "boolean"}, "rollback"},
  poolclass = {"string", "QueuePool"},
  echo = {"boolean", false},
  logger = {"function"},
  isolation_level = {"string"},
  track_gtid = {"boolean", false},
  connect_args = {"table"},
  hide_parameters = {"boolean", false},
  pool_wait = {"function"},
  pool_wake = {"function"},
  io_wait = {{"function", "boolean"}}, -- false: no waiting (OpenResty's default io_wait off)
  shared = {"string"},
  offload = {"string"},       -- OpenResty: run statements in this nginx thread pool (scoped.ngx)
  pool_leak_threshold = {"number"},
}

local function type_ok(want, v)
  if type(want) == "table" then
    for _, w in ipairs(want) do if type(v) == w then return true end end
    return false
  end
  return type(v) == want
end

local function check_options(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    exc.raise("ArgumentError", "create_engine() options must be a table, got %s", type(opts))
  end
  local unknown = {}
  for k in pairs(opts) do
    if OPTIONS[k] == nil then unknown[#unknown + 1] = "'" .. tostring(k) .. "'" end
  end
  if #unknown > 0 then
    table.sort(unknown)
    exc.raise("ArgumentError", "Invalid argument(s) %s sent to create_engine()", table.concat(unknown, ","))
  end
  local o = {}
  for k, spec in pairs(OPTIONS) do
    local v = opts[k]
    if v == nil then
      v = spec[2]
    elseif not type_ok(spec[1], v) then
      local want = type(spec[1]) == "table" and table.concat(spec[1], " or ") or spec[1]
      exc.raise("ArgumentError", "create_engine(): %s must be a %s, got %s", k, want, type(v))
    end
    o[k] = v
  end
  for k, v in pairs(o) do
    if v ~= v then exc.raise("ArgumentError", "create_engine(): %s must be a number, got nan", k) end
  end
  local function whole(name, min)
    local v = o[name]
    if v ~= math.floor(v) or v < min or v > 2147483647 then
      exc.raise("ArgumentError", "create_engine(): %s must be a whole number >= %d, got %s", name, min, tostring(v))
    end
  end
  whole("pool_size", 0)
  whole("max_overflow", -1)
  if o.pool_timeout < 0 or o.pool_timeout ~= o.pool_timeout then
    exc.raise("ArgumentError", "create_engine(): pool_timeout must be >= 0")
  end
  if o.poolclass ~= "QueuePool" and o.poolclass ~= "NullPool" then
    exc.raise("ArgumentError", "create_engine(): poolclass must be 'QueuePool' or 'NullPool', got '%s'", o.poolclass)
  end
  local r = o.pool_reset_on_return
  if r ~= "rollback" and r ~= "commit" and r ~= "reset_connection" and r ~= false then
    exc.raise("ArgumentError",
      "create_engine(): pool_reset_on_return must be 'rollback', 'commit', 'reset_connection' or false")
  end
  if o.io_wait == true then
    exc.raise("ArgumentError", "create_engine(): io_wait must be a function or false")
  end
  if o.io_wait and o.offload then
    exc.raise("ArgumentError", "create_engine(): io_wait and offload cannot both be given " ..
      "(a statement either waits in its coroutine or runs in a worker thread)")
  end
  local t = o.pool_leak_threshold
  if t ~= nil and not (t > 0) then
    exc.raise("ArgumentError", "create_engine(): pool_leak_threshold must be a number of seconds > 0, got %s", tostring(t))
  end
  return o
end

-- A deterministic text of what makes two shared engines the same.
local function shared_key(u, o)
  local parts = {u:render_as_string(false)}
  local keys = {}
  for k in pairs(OPTIONS) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = o[k]
    if type(v) ~= "function" and type(v) ~= "table" and k ~= "shared" and k ~= "echo"
        and k ~= "pool_leak_threshold" and k ~= "offload" then
      parts[#parts + 1] = k .. "=" .. tostring(v)
    end
  end
  return table.concat(parts, "\n")
end

-- logger(level, line): level is "info" for what echo shows (statements,
-- COMMIT, ROLLBACK, checkouts) and "warn" for what went wrong on the side
-- (a leak report, a listener's error). Under nginx, scoped.ngx makes the
-- default ngx.log at the matching level.
local function default_logger(level, line)
  if level == "info" then
    io.stderr:write(line, "\n")
  else
    io.stderr:write(level, ": ", line, "\n")
  end
end

-- The one place that decides what the hot paths may skip. Without a
-- yielding pool wait, listeners, logging, hidden parameters, leak
-- detection or an offload wrapper, a checkout and a checkin are one C call
-- each (what W1 in bench/ measures) and a statement goes straight to C:
-- _fast. A Session may then also run on the raw connection itself, outside
-- AUTOCOMMIT: _raw_sessions (scoped/session.lua). Each hot path reads one
-- of the two fields; whatever changes a hook calls this.
--
-- An engine whose only hooks are the waits (pool_wait, pool_wake, io_wait:
-- every engine under OpenResty, a cqueues or luv one) is not _fast, but its
-- Sessions still hold the raw connection itself: _raw_sessions, with
-- _session_ops the waiting versions of the checkout, the statement and the
-- end of the unit of work (scoped/nonblocking.lua), instead of a Connection
-- object and its checkin per request.
local checkout -- below
local function refresh(engine)
  local plain = not (engine._has_events or engine.hide_parameters or engine._leak or engine._wrap)
    and not engine._echo
  local waits = engine._pool_wait or engine._io_wait
  engine._fast = plain and not waits
  -- track_gtid: a Session reads its COMMIT's GTID off the connection
  -- before giving it back, which the Connection path does (session.lua)
  engine._raw_sessions = plain and not engine._autocommit and not engine._gtids
  engine._session_ops = engine._raw_sessions and waits and nonblocking.session_ops(engine, checkout)
    or false
end

local EngineMT = {
  __index = function(self, k)
    if k == "echo" then return rawget(self, "_echo") end
    return Engine[k]
  end,
  -- echo is never a field of the engine table, so that every assignment
  -- to it comes here (SQLAlchemy lets a program toggle it at any time)
  __newindex = function(self, k, v)
    if k == "echo" then
      rawset(self, "_echo", v and true or false)
      refresh(self)
    else
      rawset(self, k, v)
    end
  end,
  __tostring = function(self) return "Engine(" .. tostring(self.url) .. ")" end,
}
M.EngineMT = EngineMT

local on_create = {}

--- on_create(fn): fn(engine) runs for every engine made from now on, before
--- its hot-path flags are computed (a runtime plug-in sets its hooks there
--- with engine:_set_hooks).
-- @local
function M.on_create(fn)
  on_create[#on_create + 1] = fn
end

--- create_engine(url, opts) -> Engine. Opens no connection.
-- @tparam string|URL url `mysql://user:pass@host:port/db?charset=utf8mb4` (see `scoped.url`)
-- @tparam[opt] table opts the `options`
-- @treturn Engine
-- @raise ArgumentError for a bad URL or option
function M.create_engine(url, opts)
  local o = check_options(opts)
  local u = urlmod.make_url(url)
  if o.connect_args then
    local args = {}
    for k, v in pairs(o.connect_args) do
      if type(k) ~= "string" then exc.raise("ArgumentError", "connect_args keys must be strings") end
      v = tostring(v)
      core.check_url_param(k, v)
      args[k] = v
    end
    local q = {}
    for k, v in pairs(u.query) do q[k] = v end
    for k, v in pairs(args) do q[k] = v end
    u = u:set({query = q})
  end
  local copts = {
    pool_size = o.pool_size, max_overflow = o.max_overflow, pool_timeout = o.pool_timeout,
    pool_recycle = o.pool_recycle, pool_pre_ping = o.pool_pre_ping, pool_use_lifo = o.pool_use_lifo,
    pool_reset_on_return = o.pool_reset_on_return, isolation_level = o.isolation_level,
    hide_parameters = o.hide_parameters, shared = o.shared, track_gtid = o.track_gtid,
  }
  if o.poolclass == "NullPool" then
    -- no connection is kept: each checkin closes, each checkout opens
    copts.pool_size, copts.max_overflow, copts.null_pool = 0, -1, true
  end
  if o.shared then copts.shared_key = shared_key(u, o) end
  local cpool = core.pool_new(u, copts)
  local engine = setmetatable({
    url = u,
    hide_parameters = o.hide_parameters,
    _opts = o,
    _cpool = cpool,
    _echo = o.echo,
    -- the hooks (changed only through _set_hooks and _events_changed) and
    -- what refresh() derives from them; every field is set (false when
    -- off), so that the hot path's lookups hit the table
    _pool_wait = o.pool_wait or false,
    _io_wait = o.io_wait or false,
    _io_can_wait = false,
    _wrap = false,
    _released = o.pool_wake or false,
    _has_events = false,
    _stmt_events = false, -- before_execute, after_execute or handle_error listened to
    _leak = o.pool_leak_threshold or false,
    _fast = false,
    _raw_sessions = false,
    _session_ops = false,
    _autocommit = o.isolation_level == "AUTOCOMMIT",
    -- track_gtid: scope key -> {gtid = the GTID of the scope's last COMMIT through a
    -- Session} (what sessionmaker{causal_from = ...} waits for; session.lua)
    _gtids = o.track_gtid and setmetatable({}, {__mode = "k"}) or false,
    _log = o.logger or default_logger,
    _events = {},
    _held = o.pool_leak_threshold and setmetatable({}, {__mode = "k"}),
    -- the method every unit of work calls, in the table itself: a lookup
    -- through EngineMT's __index function would cost checkout + checkin
    -- (W1) about a fiftieth on Lua 5.4
    connect = Engine.connect,
  }, EngineMT)
  engine.pool = setmetatable({_cpool = cpool, _class = o.poolclass}, Pool)
  -- runtime plug-ins: under OpenResty, a pool wait that yields instead
  -- of blocking the worker, its checkin notifier, the offload wrapper
  -- (scoped/ngx.lua installs its attach() here)
  for i = 1, #on_create do on_create[i](engine) end
  refresh(engine)
  return engine
end

-- ---- Pool: SQLAlchemy's QueuePool introspection ---------------------------

--- What `Pool:stats` returns: one snapshot, taken under the pool's lock:
-- the pool's state, and counters since the pool was made (in a forked
-- child: since the fork). `scoped.metrics.prometheus` writes them all.
-- @table PoolStats
-- @field size (integer) pool_size
-- @field checkedin (integer) idle connections in the pool
-- @field checkedout (integer) connections checked out
-- @field overflow (integer) connections beyond pool_size (negative while fewer are open)
-- @field open (integer) connections open, idle and checked out
-- @field waiting (integer) callers waiting for a connection
-- @field checkouts (integer) connections handed out
-- @field waits (integer) checkouts that had to wait
-- @field wait_seconds (number) the time those checkouts waited, summed
-- @field wait_max (number) the longest wait
-- @field timeouts (integer) checkouts that gave up after pool_timeout
-- @field connects (integer) connections opened
-- @field connect_failures (integer) connection attempts that failed (a failed open is no checkout)
-- @field invalidations (integer) connections discarded as invalid (with the idle ones
-- a disconnect takes along)
-- @field recycles (integer) connections replaced for being older than pool_recycle
-- @field preping_failures (integer) connections replaced after failing the pre-ping
-- @field failbacks (integer) several hosts, sequential: idle connections to a later host
-- replaced at checkout once an earlier host's denial has ended

--- The engine's pool (`engine.pool`): SQLAlchemy's QueuePool introspection.
-- The counts are of live connections: a connection discarded (dead,
-- invalidated, replaced by pre-ping or `pool_recycle`) leaves them at once.
-- @type Pool

--- SQLAlchemy's text: `Pool size: 5  Connections in pool: 0 Current Overflow: -4
-- Current Checked out connections: 1`; "NullPool" for a NullPool.
-- @treturn string
function Pool:status()
  if self._class == "NullPool" then return "NullPool" end
  return self._cpool:status()
end
--- pool_size.
-- @treturn integer
function Pool:size() return self._cpool:stats().size end
--- Idle connections in the pool.
-- @treturn integer
function Pool:checkedin() return self._cpool:stats().checkedin end
--- Connections checked out.
-- @treturn integer
function Pool:checkedout() return self._cpool:stats().checkedout end
--- Connections beyond pool_size (negative while fewer are open).
-- @treturn integer
function Pool:overflow() return self._cpool:stats().overflow end
--- All the counts at once.
-- @treturn PoolStats
function Pool:stats() return self._cpool:stats() end
--- Closes the idle connections (as `Engine:dispose`).
function Pool:dispose() self._cpool:dispose() end
Pool.__tostring = function(self) return self._class end

-- ---- checkout ---------------------------------------------------------------

-- A raw connection out of the pool. Without pool_wait a caller that must
-- wait blocks in C on the pool's condition variable (right for OS threads
-- sharing a pool). With pool_wait the wait happens here, in Lua, so that
-- pool_wait may yield (a coroutine scheduler, ngx.sleep, cqueues): C never
-- yields. The ticket keeps this caller's place in the pool's FIFO queue.
-- With io_wait, where the caller can yield, the checkout is deferred: a
-- connection to open or to pre-ping comes back as it is (need "open" or
-- "ping") and the non-blocking driver does it (scoped/nonblocking.lua).
function checkout(engine)
  local cpool = engine._cpool
  local wait = engine._pool_wait
  local defer = engine._io_wait and nonblocking.can_wait(engine)
  if not wait and not defer then return cpool:checkout() end
  local raw, fresh, need = cpool:try_checkout(nil, defer)
  while not raw do
    local ticket = fresh
    if not wait then
      -- io_wait but no pool_wait: nothing to wait with but the blocking way
      ticket:cancel()
      return cpool:checkout()
    end
    -- the ticket too: a pool_wait that keeps one wake-up per waiter can
    -- tell, at pool_wake, which waiters were served (ticket:ready())
    local ok, err = pcall(wait, ticket:remaining(), ticket)
    if not ok then
      ticket:cancel()
      error(err, 0)
    end
    raw, fresh, need = cpool:try_checkout(ticket, defer)
  end
  if need then fresh = nonblocking.finish_checkout(engine, raw, need) end
  return raw, fresh
end

-- ---- leak detection (pool_leak_threshold, HikariCP's leakDetectionThreshold) --
--
-- Only an engine with the option pays for it (plain() is false then): each
-- checkout records raw -> {when, traceback} in _held, a weak-keyed table of
-- this engine's outstanding checkouts; each checkout and checkin (and
-- engine:check_leaks(), e.g. from a timer) scans it and reports, once per
-- checkout, any held longer than the threshold. A raw connection closed
-- behind the engine's back (replaced after a disconnect) or collected
-- leaves the table by itself.
local function check_leaks(engine)
  local now, n = core.monotonic(), 0
  for raw, h in pairs(engine._held) do
    if raw:closed() then
      engine._held[raw] = nil
    elseif not h.reported and now - h.at > engine._leak then
      h.reported = true
      n = n + 1
      engine._log("warn", string.format("scoped.pool: connection held for %.1f s, longer than " ..
        "pool_leak_threshold (%g s): not returned to the pool (a leak?); it was %s",
        now - h.at, engine._leak, h.where))
    end
  end
  return n
end

--- A pool of connections to one server, with SQLAlchemy's names: what
-- `create_engine` makes and `Engine:connect` checks out of.
-- @type Engine

--- (URL) the engine's URL, password included (`tostring` masks it)
-- @field url

--- (Pool) its pool
-- @field pool

--- (boolean) log statements and pool events; may be switched at any time
-- @field echo

--- (boolean) the option of that name
-- @field hide_parameters

--- engine:check_leaks() -> how many connections were newly reported as held
--- past pool_leak_threshold (0 without the option). The check also runs at
--- each checkout and checkin; call this from a timer to report without them.
-- @treturn integer
function Engine:check_leaks()
  if not self._leak then return 0 end
  return check_leaks(self)
end

-- A connection went back to the pool or its slot was freed: wake whoever
-- waits for one in Lua (scoped.ngx sets _released).
local function released(engine)
  local notify = engine._released
  if notify then notify() end
end

-- A checkout that timed out on an engine with pool_leak_threshold: the
-- hint says where the connections still out were checked out (the first
-- frame of each traceback outside scoped itself; err.checked_out_at has
-- the tracebacks).
local function leak_hint(engine, err)
  if not exc.is(err, "TimeoutError") then return err end
  local places, seen, all = {}, {}, {}
  for raw, h in pairs(engine._held) do
    if not raw:closed() then
      all[#all + 1] = h.where
      local place
      for line in h.where:gmatch("[^\n]+") do
        local p = line:match("^%s*([^%s]+:%d+):")
        if p and not p:find("scoped/", 1, true) then place = p; break end
      end
      place = place or "?"
      if not seen[place] then seen[place] = 0; places[#places + 1] = place end
      seen[place] = seen[place] + 1
    end
  end
  if #all > 0 then
    table.sort(places)
    for i, p in ipairs(places) do places[i] = seen[p] > 1 and p .. " (" .. seen[p] .. "x)" or p end
    err.checked_out_at = all
    err.hint = (err.hint or ""):gsub("; pool_leak_threshold = seconds shows .*$", "") ..
      "; they were checked out at " .. table.concat(places, ", ")
  end
  return err
end

-- Several hosts: hands the host events the C core recorded since the last
-- call (host_denied, host_restored, failover) to their listeners, one table
-- each; a listener's error is logged. Only engines with such a listener
-- call it, after each checkout (or failed one) and checkin.
local function host_events(engine)
  local list, dropped = engine._cpool:host_events()
  if not list then return end
  if dropped and dropped > 0 then
    engine._log("warn", string.format("scoped.pool: %d host events lost (none taken for a while)", dropped))
  end
  for i = 1, #list do
    local ev = list[i]
    local name = ev.name
    ev.name = nil
    local ok, err = pcall(event.fire, engine, name, ev)
    if not ok then engine._log("warn", "scoped.pool: exception in a " .. name .. " listener: " .. tostring(err)) end
  end
end

function Engine:_checkout()
  if self._host_events then
    local ok, raw = pcall(self._checkout_events, self)
    host_events(self)
    if not ok then error(raw, 0) end
    return raw
  end
  return self:_checkout_events()
end

function Engine:_checkout_events()
  local raw, fresh
  if self._leak then
    local ok, a, b = pcall(checkout, self)
    if not ok then error(leak_hint(self, a), 0) end
    raw, fresh = a, b
  else
    raw, fresh = checkout(self)
  end
  if self._io_wait then
    raw = nonblocking.wrap(raw, self)
  elseif self._wrap then
    raw = self._wrap(raw)
  end
  if self.hide_parameters then raw:set_hide_parameters(true) end
  if self._has_events then
    local ok, err = pcall(function()
      if fresh then event.fire(self, "connect", raw) end
      event.fire(self, "checkout", raw)
    end)
    if not ok then
      -- a listener failed on this connection: never hand it out half set up
      raw:invalidate()
      raw:close()
      released(self)
      error(err, 0)
    end
  end
  if self._echo then self._log("info", "scoped.pool: connection checked out") end
  if self._leak then
    check_leaks(self)
    self._held[raw] = {at = core.monotonic(), where = debug.traceback("checked out at:", 2)}
  end
  return raw
end

-- What happens to a raw connection given back by a Connection, a Session's
-- Connection path or the garbage collector, in SQLAlchemy's order: the
-- reset event (a PoolResetState-like table), the reset itself (rollback,
-- commit or COM_RESET_CONNECTION, by pool_reset_on_return: raw:reset),
-- the checkin event, then back to the pool (raw:close). rollback_first: the
-- Connection's own transaction is rolled back first, whatever the reset
-- mode (Connection.close()); was_reset is then what the reset event is
-- told. A connection that died or was invalidated gets no reset. Errors of
-- listeners are logged, the connection invalidated; it always goes back.
function Engine:_checkin(raw, rollback_first, was_reset)
  if self._leak then
    self._held[raw] = nil
    check_leaks(self)
  end
  if rollback_first and not raw:is_invalidated() then
    if self._echo and raw:in_transaction() then self._log("info", "ROLLBACK") end
    pcall(raw.rollback, raw) -- a failed ROLLBACK leaves it invalidated (discarded)
  end
  if self._has_events then
    local ok, err = pcall(function()
      if not raw:is_invalidated() then
        event.fire(self, "reset", raw, {transaction_was_reset = was_reset == true,
                                        terminate_only = false, asyncio_safe = true})
        raw:reset()
      end
      event.fire(self, "checkin", raw)
    end)
    if not ok then
      raw:invalidate()
      self._log("warn", "scoped.pool: exception during reset or checkin, connection invalidated: " .. tostring(err))
    end
  end
  raw:close()
  released(self)
  if self._host_events then host_events(self) end
  if self._echo then self._log("info", "scoped.pool: connection returned") end
end

-- event.listen added a listener: checkouts and checkins go through them
-- from now on, and a checked-out connection that is garbage-collected
-- fires reset and checkin as it goes back (the C pool calls this hook from
-- the raw connection's finalizer).
function Engine:_events_changed(statement, hosts)
  self._has_events = true
  if statement then self._stmt_events = true end
  if hosts then self._host_events = true end
  refresh(self)
  local engine = self
  self._cpool:set_gc_hook(function(raw) engine:_checkin(raw, false, false) end)
end

-- engine:_set_hooks{pool_wait = f, released = f, wrap = f, log = f, io_wait = f,
-- io_can_wait = f}: what a
-- runtime plug-in (scoped.ngx) installs; nil leaves a hook as it is (log:
-- the logger, when the engine was given none).
function Engine:_set_hooks(hooks)
  for _, name in ipairs({"pool_wait", "released", "wrap", "log", "io_wait", "io_can_wait"}) do
    local v = hooks[name]
    if v ~= nil then rawset(self, "_" .. name, v) end
  end
  refresh(self)
end

-- connect, and Connection's execute and close, are the hot paths: they
-- check their self by a field every instance has (_fast, _tx), read anyway,
-- instead of exc._colon_methods' call more (see the end of this file); a
-- number or a boolean as self still meets Lua's own "attempt to index".

--- engine:connect() -> Connection (checked out at once). In Lua 5.4,
-- `local conn <close> = engine:connect()` closes it at the end of the scope.
-- @treturn Connection
-- @raise TimeoutError after pool_timeout; OperationalError when the server cannot be reached
function Engine:connect()
  if not self then exc._colon("Engine", "connect", self) end
  local fast = self._fast
  if fast == nil then exc._colon("Engine", "connect", self) end
  -- The Connection is made before the checkout: an allocation after it may
  -- raise (out of memory; on LuaJIT a finalizer's error), and a checked-out
  -- connection held by nothing but the stack would be out of the pool until
  -- the collector gives it back. Storing into the existing raw field
  -- allocates nothing. (The fields every unit of work writes are all set
  -- up front: they then change in place instead of growing the table; a
  -- fifth would double its size, which costs checkout + checkin a sixth on
  -- Lua 5.4.)
  local conn = setmetatable({engine = self, raw = false, _tx = false, closed = false}, Connection)
  if fast then
    conn.raw = pool_checkout(self._cpool)
  else
    conn.raw = self:_checkout()
  end
  return conn
end

--- engine:begin() -> a Connection in a transaction. As a Lua 5.4 <close>
--- variable it commits on normal exit and rolls back on error; with a
--- function, it runs fn(conn) inside the transaction (any Lua).
--
--     engine:begin(function(conn) conn:execute("UPDATE t SET n = n + 1") end)
-- @tparam[opt] function fn called with the Connection; committed when it returns,
-- rolled back when it raises (the error goes on)
-- @treturn Connection without fn; nothing with it
function Engine:begin(fn)
  if fn ~= nil and type(fn) ~= "function" then
    exc.raise("ArgumentError", "engine:begin() takes a function or nothing, got %s", type(fn))
  end
  local conn = self:connect()
  conn:begin()
  conn._commit_on_close = true
  if fn == nil then return conn end
  local ok, err = pcall(fn, conn)
  if ok then
    ok, err = pcall(conn.commit, conn) -- a failed COMMIT must not skip close()
  else
    pcall(conn.rollback, conn)
  end
  conn:close()
  if not ok then error(err, 0) end
end

--- engine:hosts() -> a list with one table per host of the URL (one for a
-- one-host engine), in the URL's order: `host`, `port` (never the
-- credentials), `state` ("up" or "denied"), `restored_in` (seconds until a
-- denial ends, 0 when up), `role` ("read-write", "read-only", "unknown":
-- as last seen at connect, known with target_session_attrs or galera),
-- `connects` (connections opened on it), `failures` (`{[code] = count}`:
-- failed connects and disconnects), `denials`, `failovers` (connects that
-- went to another host after this one failed), and the pool's connections
-- to it: `open`, `checkedout`, `idle`; the checkouts that ended on it
-- without an idle connection at hand (they waited in the queue, or a
-- connection was opened for them, the hosts tried before included):
-- `checkout_waits`, `checkout_wait` (seconds, summed), `checkout_wait_max`.
-- @treturn table
function Engine:hosts()
  return self._cpool:hosts()
end

--- Closes the idle connections and starts a fresh pool; connections checked
-- out at that moment are closed when they come back. In a forked child,
-- call it before using the engine.
function Engine:dispose()
  self._cpool:dispose()
end

-- ---- Connection ------------------------------------------------------------
--
-- The transaction a Connection is in, as SQLAlchemy 2.0 keeps it:
--   _tx   false (none), ACTIVE, or FAILED: the transaction is still there
--         but can neither run statements nor commit ("rollback first": its
--         COMMIT failed, its connection died or was invalidated); only
--         rollback() ends it. A statement in ACTIVE runs at once; any other
--         state goes through begin_statement, which autobegins.
--   _root the Transaction handle of begin() while its transaction runs: a
--         handle acts only while it is the current one, so a stale handle
--         never touches a later transaction
--   _sp   the names of the open savepoints, innermost last (false: none);
--         _spn counts savepoints over the Connection's whole life, so a
--         name never repeats and an old handle cannot hit a new savepoint.
--   (_root, _sp and _spn are set only by those who use begin() and
--   begin_nested(); the class holds their defaults)
-- The server side of "is there anything to roll back" is not kept here: it
-- is the C reset rule (sc_conn_needs_end in csrc/core/conn.c), which rollback()
-- and close() go through.
local ACTIVE, FAILED = "active", "failed"

local function closed_error()
  exc.raise("ResourceClosedError", "This Connection is closed")
end

local function pending_rollback(self)
  exc.pending_rollback(self._sp and #self._sp > 0)
end

-- Gives back a connection that died or was invalidated: the invalidate
-- event gets err, or the disconnect error the C core kept; the pool
-- discards it and frees its slot.
local function discard(self, raw, err)
  local engine = self.engine
  self.raw = nil
  if engine._has_events then
    local ok, lerr = pcall(event.fire, engine, "invalidate", raw, err or raw:invalidation_error())
    if not ok then engine._log("warn", "scoped.pool: exception in an invalidate listener: " .. tostring(lerr)) end
  end
  engine:_checkin(raw, false, false)
end

-- The raw connection, checked out anew when the last one was let go (after
-- rollback() or invalidate()) or died outside a transaction. Inside one, a
-- dead connection is never replaced: the statement would run outside the
-- transaction the caller believes in, so the transaction is FAILED and the
-- caller must roll back first (SQLAlchemy's rule; while the Connection does
-- not know yet, the C core refuses statements on a dead connection with the
-- same error, so the hot path pays nothing for it).
local function live_raw(self)
  if self.closed then closed_error() end
  local tx = self._tx
  if tx == FAILED then pending_rollback(self) end
  local raw = self.raw
  if raw ~= nil and raw:is_invalidated() then
    if tx then
      self._tx = FAILED
      pending_rollback(self)
    end
    discard(self, raw)
    raw = nil
  end
  if raw == nil then
    raw = self.engine:_checkout()
    self.raw = raw
  end
  return raw
end

-- A statement's raw connection: live_raw, and autobegin (no round trip:
-- autocommit is off on pooled connections) unless the engine runs in
-- AUTOCOMMIT, where there is no transaction to begin.
local function begin_statement(self)
  local raw = live_raw(self)
  if not self._tx and not self.engine._autocommit then self._tx = ACTIVE end
  return raw
end

local function log_statement(self, sql, params)
  local e = self.engine
  if e.hide_parameters then
    e._log("info", sql .. "\n[SQL parameters hidden due to hide_parameters=True]")
  else
    local shown = params and exc.render_params(params) or "[no parameters]"
    e._log("info", sql .. "\n" .. shown)
  end
end

-- A statement with listeners around it (the statement events of
-- scoped.event): before_execute, the statement timed, then after_execute;
-- or handle_error with the error, which is raised unless a listener raises
-- its own.
local function observed(self, engine, raw, method, sql, params, extra)
  event.fire(engine, "before_execute", self, sql, params)
  local t0 = core.monotonic()
  local ok, res = pcall(raw[method], raw, sql, params, extra)
  if not ok then
    event.fire(engine, "handle_error", self, res)
    error(res, 0)
  end
  event.fire(engine, "after_execute", self, sql, params, res, core.monotonic() - t0)
  return res
end

local execute_opts -- the execution options' path (below)

--- A connection checked out of an Engine's pool, with SQLAlchemy 2.0's
-- transaction rules: the first statement begins a transaction by itself
-- (autobegin); after a lost connection or a failed COMMIT every statement
-- raises `PendingRollbackError` until `rollback()`. One call at a time: Lua
-- code a statement runs (a params `__index`, a finalizer) must not use the
-- same connection (`InvalidRequestError` "This connection is busy").
-- @type Connection

--- (Engine) where it came from
-- @field engine

--- (boolean) true after `close()`
-- @field closed

--- (RawConnection|nil) the connection it holds now, if any
-- @field raw

--- Runs a statement with `:name` binds from a table or `?` binds from an
-- array (an array value becomes an IN list: `WHERE id IN :ids`).
--
--     conn:execute("SELECT * FROM t WHERE id = :id", {id = 1}):all()
-- @tparam string sql the statement
-- @tparam[opt] table params the binds; a list of tables with `:name` binds runs it once per set
-- @tparam[opt] table opts execution options for this statement (SQLAlchemy 2.0's
-- `execution_options` argument): `stream_results`, `yield_per` (see `execution_options`)
-- @treturn Result
-- @raise DBAPIError kinds for server errors, ArgumentError for binds
function Connection:execute(sql, params, opts)
  -- every statement's path: one field test when a transaction is running
  -- (_tx is never nil on a Connection: a self that is none goes the slow way)
  if not self then exc._colon("Connection", "execute", self) end
  -- (opts: a local test)
  if opts ~= nil then return execute_opts(self, sql, params, opts) end
  local raw = self.raw
  if raw == nil or self._tx ~= ACTIVE then
    if self._tx == nil then exc._colon("Connection", "execute", self) end
    raw = begin_statement(self)
  end
  local engine = self.engine
  if engine._fast then return raw_execute(raw, sql, params) end
  if engine._echo then log_statement(self, sql, params) end
  if engine._stmt_events then return observed(self, engine, raw, "execute", sql, params) end
  return raw:execute(sql, params)
end

-- ---- execution options: stream_results and yield_per ----------------------
--
-- SQLAlchemy's spelling: conn:execution_options{stream_results = true,
-- yield_per = n} (for the Connection's later statements; it returns the
-- Connection) and the execution_options argument of execute (one
-- statement). yield_per implies stream_results, as in SQLAlchemy 2.0. A
-- streaming statement returns a Result read off the connection as it is
-- iterated (raw:stream, csrc/lua/lstream.c); until it is closed the
-- connection is busy.
local function check_exec_options(opts, who)
  if type(opts) ~= "table" then
    exc.raise("ArgumentError", "%s: execution options must be a table, got %s", who, type(opts))
  end
  local stream, yield_per
  for k, v in pairs(opts) do
    if k == "stream_results" then
      if type(v) ~= "boolean" then
        exc.raise("ArgumentError", "%s: stream_results must be a boolean, got %s", who, type(v))
      end
      stream = v
    elseif k == "yield_per" then
      if type(v) ~= "number" or v < 1 or v ~= math.floor(v) or v > 1e9 then
        exc.raise("ArgumentError", "%s: yield_per must be a positive integer", who)
      end
      yield_per = v
    else
      exc.raise("ArgumentError",
        "%s: unknown execution option '%s' (stream_results and yield_per are accepted)", who, tostring(k))
    end
  end
  return stream, yield_per
end

local EMPTY = {}

execute_opts = function(self, sql, params, opts)
  local stream, yield_per = check_exec_options(opts, "execute")
  local xo = self._xo
  if xo then
    if stream == nil then stream = xo.stream_results end
    if yield_per == nil then yield_per = xo.yield_per end
  end
  if stream == nil and yield_per ~= nil then stream = true end
  if not stream then return Connection.execute(self, sql, params) end
  local raw = self.raw
  if raw == nil or self._tx ~= ACTIVE then raw = begin_statement(self) end
  local engine = self.engine
  if engine._echo then log_statement(self, sql, params) end
  if engine._stmt_events then return observed(self, engine, raw, "stream", sql, params, yield_per) end
  return raw:stream(sql, params, yield_per)
end

-- the execute of a Connection given stream_results by execution_options:
-- set on that Connection alone, so that no other pays for the option
local function execute_streaming(self, sql, params, opts)
  return execute_opts(self, sql, params, opts or EMPTY)
end

--- Execution options for the Connection's later statements (SQLAlchemy's
-- spelling; an execute's own options argument wins).
--
--     for row in conn:execution_options{stream_results = true}:execute(sql):iter() do ... end
-- @tparam table opts `stream_results` (boolean: rows read off the
-- connection as they are asked for, the connection busy until the Result
-- is closed), `yield_per` (integer: `Result:partitions`' default size;
-- implies `stream_results`)
-- @treturn Connection the same Connection
-- @raise ArgumentError for an unknown option or a wrong value
function Connection:execution_options(opts)
  if self.closed then closed_error() end
  local stream, yield_per = check_exec_options(opts, "execution_options")
  local xo = self._xo or {}
  if stream ~= nil then xo.stream_results = stream end
  if yield_per ~= nil then
    xo.yield_per = yield_per
    if xo.stream_results == nil then xo.stream_results = true end
  end
  rawset(self, "_xo", xo)
  rawset(self, "execute", xo.stream_results and execute_streaming or nil)
  return self
end

--- The execution options set by `execution_options`.
-- @treturn table a copy
function Connection:get_execution_options()
  local t = {}
  for k, v in pairs(self._xo or EMPTY) do t[k] = v end
  return t
end

--- Runs sql once per parameter set; an INSERT ... VALUES (...) is sent as
--- multi-row INSERTs. rowcount is the total. (execute(sql, {set1, set2})
--- does the same for a statement with :name binds.)
-- @tparam string sql the statement
-- @tparam table param_sets a list of parameter tables
-- @treturn Result rowcount the total, lastrowid the first row's id
function Connection:executemany(sql, param_sets)
  local raw = begin_statement(self)
  local engine = self.engine
  if engine._echo then log_statement(self, sql, param_sets) end
  if engine._stmt_events then return observed(self, engine, raw, "executemany", sql, param_sets) end
  return raw:executemany(sql, param_sets)
end

--- Runs sql as it is: no bind parsing (a `:` or `?` stays as written).
-- @tparam string sql the statement
-- @treturn Result
function Connection:exec_driver_sql(sql)
  local raw = begin_statement(self)
  local engine = self.engine
  if engine._echo then log_statement(self, sql, nil) end
  if engine._stmt_events then return observed(self, engine, raw, "exec_driver_sql", sql, nil) end
  return raw:exec_driver_sql(sql)
end

--- `execute(sql, params):scalar()`: the first column of the first row, nil when no row.
-- @tparam string sql
-- @tparam[opt] table params
function Connection:scalar(sql, params) return self:execute(sql, params):scalar() end
--- `execute(sql, params):scalars()`.
-- @tparam string sql
-- @tparam[opt] table params
-- @treturn ScalarResult
function Connection:scalars(sql, params) return self:execute(sql, params):scalars() end

--- Whether a transaction is going (begun, or waiting for `rollback()`).
-- @treturn boolean
function Connection:in_transaction() return self._tx ~= false end

-- the transaction is over: its handles and savepoints with it (fields only
-- written when set, so that a Connection that never used them stays small)
local function tx_ended(self)
  self._tx = false
  if self._root then self._root = false end
  if self._sp then self._sp = false end
end

--- Commits the transaction, if any. A COMMIT that fails leaves the
-- transaction to be rolled back (`PendingRollbackError` until `rollback()`).
function Connection:commit()
  if self.closed then closed_error() end
  local tx = self._tx
  if not tx then return end
  if tx == FAILED then pending_rollback(self) end
  local raw = self.raw
  if raw ~= nil then
    -- refused when called from inside one of its statements (a finalizer,
    -- a params metamethod): before anything here changes
    raw:_check_idle("commit", true) -- an open streaming Result is closed first
    -- FAILED until the COMMIT succeeds: one that fails (its connection
    -- lost, or refused) leaves the transaction to be rolled back, never
    -- forgotten, so the next statement cannot start a new one unawares
    self._tx = FAILED
    if raw:is_invalidated() then pending_rollback(self) end
    if self.engine._echo then self.engine._log("info", "COMMIT") end
    raw:commit()
  end
  tx_ended(self)
end

--- Rolls the transaction back (always succeeds; nothing is sent when the
-- reset rule proves there is nothing to roll back). The next statement
-- begins a new transaction, on a new connection if the last one died.
function Connection:rollback()
  if self.closed then closed_error() end
  local raw = self.raw
  -- busy: refused before anything changes (an open streaming Result is closed first)
  if raw ~= nil then raw:_check_idle("rollback", true) end
  tx_ended(self)
  if raw == nil then return end
  if raw:is_invalidated() then
    -- the transaction died with the connection: let it go, check out anew
    -- on the next statement
    discard(self, raw)
    return
  end
  if self.engine._echo and raw:in_transaction() then self.engine._log("info", "ROLLBACK") end
  raw:rollback() -- sends nothing when the C reset rule proves there is nothing to roll back
end

--- Begins a transaction explicitly; autobegin makes this optional.
-- @treturn Transaction
-- @raise InvalidRequestError when one is going already
function Connection:begin()
  if self.closed then closed_error() end
  if self._tx then
    exc.raise("InvalidRequestError",
      "This connection has already initialized a SQLAlchemy Transaction() object via begin() or " ..
      "autobegin; can't call begin() here unless rollback() or commit() is called first.")
  end
  self._tx = ACTIVE
  local t = setmetatable({conn = self, savepoint = false}, Transaction)
  self._root = t
  return t
end

--- A SAVEPOINT; nestable. Its commit releases it, its rollback rolls back to it.
-- @treturn Transaction its `savepoint` field is the name (`sa_savepoint_N`, never repeated)
function Connection:begin_nested()
  if self.closed then closed_error() end
  local raw = begin_statement(self)
  self._spn = self._spn + 1 -- used up even when SAVEPOINT fails, as SQLAlchemy's
  local name = "sa_savepoint_" .. self._spn
  if self.engine._echo then log_statement(self, "SAVEPOINT " .. name, nil) end
  raw:exec_driver_sql("SAVEPOINT " .. name)
  local sp = self._sp or {}
  sp[#sp + 1] = name
  self._sp = sp
  return setmetatable({conn = self, savepoint = name}, Transaction)
end

--- conn:invalidate([err]): the connection is discarded (err goes to the
--- invalidate listeners); a transaction open on it must be rolled back
--- before the Connection runs anything again.
-- @param[opt] err what the invalidate listeners get
function Connection:invalidate(err)
  if self.closed then closed_error() end
  local raw = self.raw
  if raw then
    raw:_check_idle("invalidate", true) -- busy: refused before anything changes
    raw:invalidate()
    discard(self, raw, err)
  end
  if self._tx then self._tx = FAILED end
end

--- Gives the connection back to the pool, its own transaction rolled back
--- whatever pool_reset_on_return says (SQLAlchemy's Connection.close()).
function Connection:close()
  if not self then exc._colon("Connection", "close", self) end
  if self.closed then return end
  local raw = self.raw
  if raw == nil and self._tx == nil then exc._colon("Connection", "close", self) end
  local engine = self.engine
  local fast = engine._fast
  -- a busy connection (this was called from inside one of its statements)
  -- refuses, before anything here changes: raw_close runs no Lua code, so
  -- on the fast path it can go first
  if raw then
    if fast then raw_close(raw, true) else raw:_check_idle("close", true) end
  end
  self.closed = true
  local had_tx = self._tx ~= false
  if had_tx then tx_ended(self) end
  self.raw = nil
  if raw and not fast then engine:_checkin(raw, true, had_tx) end
end

--- The raw connection (checked out anew if the last one was let go).
-- @treturn RawConnection
function Connection:get_raw() return live_raw(self) end

--- A Connection over a raw connection already checked out of engine and
--- inside a transaction (a Session that ran statements on the raw
--- connection directly and now hands it over, see scoped/session.lua).
-- @local
function M.adopt(engine, raw)
  raw:_pin() -- user code can reach it now: never reused for another checkout
  if engine._io_wait then raw = nonblocking.wrap(raw, engine) end
  return setmetatable({engine = engine, raw = raw, _tx = ACTIVE, closed = false}, Connection)
end

Connection.__close = function(self, err)
  local ok, commit_err = true, nil
  if self._commit_on_close and not self.closed then
    if err == nil then
      ok, commit_err = pcall(self.commit, self)
    else
      pcall(self.rollback, self)
    end
  end
  self:close() -- back to the pool, rolled back, even when the COMMIT failed
  if not ok then error(commit_err, 0) end
end

Connection.__tostring = function(self)
  return "Connection(" .. tostring(self.engine) .. (self.closed and ", closed)" or ")")
end

-- ---- Transaction -------------------------------------------------------------
--
-- A handle on one transaction (begin()) or savepoint (begin_nested()) of a
-- Connection. It acts only on its own: current() checks that it is still
-- the Connection's transaction (_root) or, for a savepoint, that its name
-- is still open (names never repeat, and every savepoint is dropped when
-- its transaction ends).

local function current(self)
  local conn = self.conn
  if not conn._tx or conn.closed then return false end
  local name = self.savepoint
  if not name then return conn._root == self end
  local sp = conn._sp
  if sp then
    for i = #sp, 1, -1 do
      if sp[i] == name then return true end
    end
  end
  return false
end

-- Drops savepoint name and every savepoint opened after it (RELEASE and
-- ROLLBACK TO end those inner ones on the server too).
local function pop_savepoint(conn, name)
  local sp = conn._sp
  for i = #sp, 1, -1 do
    local n = sp[i]
    sp[i] = nil
    if n == name then break end
  end
end

Transaction.__index = function(self, k)
  if k == "is_active" then return current(self) and self.conn._tx ~= FAILED end
  return Transaction[k]
end

--- A handle on one transaction (`Connection:begin`) or savepoint
-- (`Connection:begin_nested`). It acts only on its own transaction: once
-- that is over, `commit()` raises `InvalidRequestError` and `rollback()` /
-- `close()` do nothing. As a Lua 5.4 `<close>` variable it commits on normal
-- exit and rolls back on error.
-- @type Transaction

--- (Connection) its connection
-- @field conn

--- (string|false) the savepoint's name, false for a transaction
-- @field savepoint

--- (boolean) whether its transaction or savepoint is still going
-- @field is_active

--- Commits the transaction, or releases the savepoint.
-- @raise InvalidRequestError "This transaction is inactive" when it is over
function Transaction:commit()
  if not current(self) then
    exc.raise("InvalidRequestError",
      self.savepoint and "This nested transaction is inactive" or "This transaction is inactive")
  end
  local conn, name = self.conn, self.savepoint
  if not name then return conn:commit() end
  if conn._tx == FAILED then pending_rollback(conn) end
  pop_savepoint(conn, name) -- a RELEASE that fails leaves the savepoint gone all the same
  conn:exec_driver_sql("RELEASE SAVEPOINT " .. name)
end

--- Rolls back the handle's own transaction or savepoint; a handle whose
--- transaction is over does nothing (SQLAlchemy warns and does nothing).
function Transaction:rollback()
  if not current(self) then return end
  local conn, name = self.conn, self.savepoint
  if not name then return conn:rollback() end
  pop_savepoint(conn, name)
  local raw = conn.raw
  -- on a dead connection, or in a transaction that must be rolled back
  -- anyway, a savepoint's rollback is silent (SQLAlchemy: it is often part
  -- of an error handler); the outer rollback() does the work
  if conn._tx == FAILED or raw == nil or raw:is_invalidated() then return end
  conn:exec_driver_sql("ROLLBACK TO SAVEPOINT " .. name)
end

--- Rolls back when still active; otherwise does nothing.
function Transaction:close()
  if current(self) then self:rollback() end
end

Transaction.__close = function(self, err)
  if not current(self) then return end
  if err ~= nil then return self:rollback() end
  local ok, commit_err = pcall(self.commit, self)
  if not ok then
    pcall(self.rollback, self) -- as SQLAlchemy's context manager: a failed commit rolls back
    error(commit_err, 0)
  end
end

-- Every other public method checks its self with one call more (exc._colon_methods).
exc._colon_methods(Engine, "Engine", EngineMT, {connect = true})
exc._colon_methods(Connection, "Connection", Connection, {execute = true, close = true})
exc._colon_methods(Transaction, "Transaction", Transaction)
exc._colon_methods(Pool, "Pool", Pool)

return M
