--- sessionmaker and Session: SQLAlchemy 2.0's Session for textual SQL. A
-- session checks a connection out on its first statement (autobegin) and
-- gives it back at commit, rollback or close; it stays usable after each.
--
--     local SessionFactory = scoped.sessionmaker{bind = engine}   -- or sessionmaker(engine)
--     local s = SessionFactory()            -- or SessionFactory{bind = other}
--     s:execute(sql, params); s:commit(); s:close()
--
-- `scoped.sessionmaker` and `scoped.Session` are `sessionmaker` and `Session` here.
-- @module scoped.session
local core = require "scoped.core"
local exc = require "scoped.exc"
local engine_mod = require "scoped.engine"
local event = require "scoped.event"
local metrics = require "scoped.metrics"

local M = {}

-- The fast path. When the engine allows it (bind._raw_sessions: no
-- listeners, logging, hidden parameters, leak detection, yielding pool
-- wait or offload, outside AUTOCOMMIT; engine.lua's refresh() decides), a
-- session runs its statements on the RawConnection itself (_raw) instead
-- of through a Connection object, and ends the unit of work with one C call
-- (raw:finish: COMMIT or ROLLBACK, then back to the pool; the userdata is
-- kept for the next checkout, see l_checkout_spare in csrc/lua/lpool.c). Same
-- statements, same errors, same pool; what it saves is a Connection table
-- and two Lua layers per request. While the engine stays _fast the raw
-- connection serves; asking for the Connection (session:connection(),
-- begin_nested()) or an engine that stopped being _fast (echo turned on, a
-- listener added) hands the raw connection over to one (engine.adopt).
local pool_checkout = core.pool_methods.checkout_spare
local raw_execute = core.conn_methods.execute
local raw_finish = core.conn_methods.finish

-- A session is made with every field its request will set (false when
-- unset): a field added later grows the table, and growing it twice was a
-- tenth of the seed request's cost on Lua 5.4.
local Session = {}
Session.__index = Session
local SessionTransaction = {}
M.Session, M.SessionTransaction = Session, SessionTransaction

local SESSION_OPTIONS = {bind = true, info = true, readonly = true, causal_from = true,
  causal_timeout = true, causal_fallback = true, causal = true}
local FALLBACKS = {primary = true, error = true, stale = true}
local CAUSAL_MODES = {gtid = true, sync_wait = true}

local function check_kw(kw, who)
  if kw == nil then return {} end
  if type(kw) ~= "table" then
    exc.raise("ArgumentError", "%s takes a table of options, got %s", who, type(kw))
  end
  local bad = {}
  for k in pairs(kw) do
    if not SESSION_OPTIONS[k] then bad[#bad + 1] = "'" .. tostring(k) .. "'" end
  end
  if #bad > 0 then
    table.sort(bad)
    exc.raise("ArgumentError", "Invalid argument(s) %s sent to %s", table.concat(bad, ","), who)
  end
  if kw.bind ~= nil and (type(kw.bind) ~= "table" or type(kw.bind._checkout) ~= "function") then
    exc.raise("ArgumentError", "%s: bind must be an Engine", who)
  end
  if kw.info ~= nil and type(kw.info) ~= "table" then
    exc.raise("ArgumentError", "%s: info must be a table, got %s", who, type(kw.info))
  end
  if kw.readonly ~= nil and type(kw.readonly) ~= "boolean" then
    exc.raise("ArgumentError", "%s: readonly must be a boolean, got %s", who, type(kw.readonly))
  end
  if kw.causal_from ~= nil and (type(kw.causal_from) ~= "table" or not (kw.causal_from.kw
      or kw.causal_from.session_factory or type(kw.causal_from._checkout) == "function")) then
    exc.raise("ArgumentError", "%s: causal_from must be the writer's sessionmaker, scoped_session or Engine", who)
  end
  if kw.causal_timeout ~= nil and (type(kw.causal_timeout) ~= "number" or kw.causal_timeout < 0) then
    exc.raise("ArgumentError", "%s: causal_timeout must be a number of seconds >= 0", who)
  end
  if kw.causal_fallback ~= nil and not FALLBACKS[kw.causal_fallback] then
    exc.raise("ArgumentError", "%s: causal_fallback must be \"primary\", \"error\" or \"stale\"", who)
  end
  if kw.causal ~= nil and not CAUSAL_MODES[kw.causal] then
    exc.raise("ArgumentError", "%s: causal must be \"gtid\" or \"sync_wait\"", who)
  end
  return kw
end

-- A session's own info table: a shallow copy of what it was given (never
-- the maker's table itself, which every session of the maker would share),
-- a fresh {} when nothing was (SQLAlchemy's Session.info). The table costs
-- the seed request about 1,000 instructions on Lua 5.4 (bench/profile.sh
-- w2s); made lazily through a function __index it costs every method
-- lookup instead, which came to the same.
local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- A Session's state is what three fields say together (all set in new(),
-- see above; one field for the transaction's state instead of three
-- flags: a field more grows the table, which the seed request pays for):
--   _raw     the RawConnection of the fast path, or false
--   _conn    the Connection of the other path, or false
--   _active  false | true | FAILED | the SessionTransaction of a begin() block
--
--   state        _raw/_conn   _active        execute           commit           rollback, close
--   IDLE         false/false  false          checkout: ACTIVE  nothing sent     nothing sent
--   BEGUN        false/false  block          checkout: ACTIVE  nothing sent     nothing sent
--   ACTIVE       one is held  true | block   runs on it        COMMIT: IDLE     ROLLBACK*: IDLE
--   FAILED       false/false  FAILED         PendingRollback   PendingRollback  IDLE
--   BLOCK_ENDED  false/false  ended block    InvalidRequest    nothing sent     close: IDLE
-- (with a begin() block, "IDLE" after ACTIVE is BLOCK_ENDED: the block stays
-- in _active until it is closed. * ROLLBACK by the reset rule,
-- sc_conn_needs_end in csrc/core/conn.c.)
-- ACTIVE -> FAILED when a COMMIT fails (its connection lost or refused):
-- nothing more may run in what the caller believes is that transaction.
-- Every entry checks the state first (check_usable, finish), and a busy
-- connection (a re-entrant call from a finalizer or a params metamethod)
-- refuses before any field changes.
local function new(bind, info)
  return setmetatable({bind = bind, _raw = false, _conn = false, _active = false,
                       info = info and copy(info) or {}}, Session)
end

local ReaderSession, scope_key -- below: readonly and causal_from

-- A session of a maker with readonly or causal_from (its own class, so
-- that an ordinary Session's paths stay as they are).
local function new_reader(kw)
  return setmetatable({bind = kw.bind, _raw = false, _conn = false, _active = false,
                       info = kw.info and copy(kw.info) or {}, _kw = kw, _primary = false,
                       _beginning = false},
                      ReaderSession)
end

local function is_reader(kw)
  return kw.readonly or kw.causal_from ~= nil
end

--- A Session of its own (`scoped.Session{bind = engine}`), without a sessionmaker.
-- @tparam[opt] table kw `bind` (Engine), `info` (table, copied), `readonly`,
-- `causal_from`, `causal_timeout`, `causal_fallback` (see `sessionmaker`)
-- @treturn Session
function M.new_session(kw)
  kw = check_kw(kw, "Session()")
  if is_reader(kw) then return new_reader(kw) end
  return new(kw.bind, kw.info)
end

-- ---- sessionmaker ------------------------------------------------------------

local Sessionmaker = {}
Sessionmaker.__index = Sessionmaker
M.Sessionmaker = Sessionmaker

--- sessionmaker{bind = engine} or sessionmaker(engine) -> factory
--
-- For read replicas (README "Several servers"): `readonly = true` starts each
-- transaction of its sessions READ ONLY; `causal_from` (the writer's
-- sessionmaker, scoped_session or Engine, on an engine with `track_gtid`)
-- makes the first statement of a transaction in a scope that wrote wait on
-- the replica for that write (`MASTER_GTID_WAIT`, at most `causal_timeout`
-- seconds, default 1), then on a timeout do what `causal_fallback` says:
-- `"primary"` (default), `"error"` or `"stale"`. `causal = "sync_wait"`
-- (Galera) starts such a transaction with wsrep_sync_wait instead of
-- waiting for a GTID.
-- @tparam table|Engine kw `bind` (Engine) and `info` (table: each session gets a copy),
-- `readonly`, `causal_from`, `causal_timeout`, `causal_fallback`, `causal`; or the Engine
-- @treturn Sessionmaker call it for a Session
function M.sessionmaker(kw)
  if type(kw) == "table" and type(kw._checkout) == "function" then kw = {bind = kw} end
  kw = check_kw(kw, "sessionmaker()")
  local copy = {}
  for k, v in pairs(kw) do copy[k] = v end
  -- _reader: its sessions are ReaderSessions (readonly, causal_from)
  return setmetatable({kw = copy, _reader = is_reader(copy)}, Sessionmaker)
end

Sessionmaker.__call = function(self, kw)
  if kw == nil then -- self.kw was checked when it was set
    local base = self.kw
    if self._reader then return new_reader(base) end
    return new(base.bind, base.info)
  end
  check_kw(kw, "sessionmaker()")
  local merged = {}
  for k, v in pairs(self.kw) do merged[k] = v end
  for k, v in pairs(kw) do merged[k] = v end
  if self.kw.info ~= nil and kw.info ~= nil then
    -- SQLAlchemy: the maker's info updated with the call's
    local info = copy(self.kw.info)
    for k, v in pairs(kw.info) do info[k] = v end
    merged.info = info
  end
  return M.new_session(merged)
end

-- maker() without arguments, as a plain function: what
-- scoped_session calls for every new scope (no __call dispatch on the way).
function Sessionmaker:_plain_factory()
  if self._reader then return function() return self() end end
  return function()
    local base = self.kw
    return new(base.bind, base.info)
  end
end

--- A Session factory: `maker()` or `maker{bind = other, info = extra}` makes a
-- Session; `info` given to both is the maker's updated with the call's
-- (SQLAlchemy's rule), a copy for each session.
-- @type Sessionmaker

--- (table) what sessions are made with (`bind`, `info`); change it with `configure`
-- @field kw

--- Changes what later sessions are made with.
-- @tparam table kw `bind`, `info`
function Sessionmaker:configure(kw)
  kw = check_kw(kw, "sessionmaker.configure()")
  for k, v in pairs(kw) do self.kw[k] = v end
  self._reader = is_reader(self.kw)
end

Sessionmaker.__tostring = function(self)
  return "sessionmaker(bind=" .. tostring(self.kw.bind) .. ")"
end

-- ---- Session -----------------------------------------------------------------

local FAILED = "failed"

local function no_bind()
  exc.raise("InvalidRequestError", "This session is not bound to an Engine: pass bind= to sessionmaker")
end

local pending_rollback = exc.pending_rollback

-- _active holds a begin() block
local function block_of(a)
  if a and a ~= true and a ~= FAILED then return a end
  return nil
end

-- What every path that would start or use a transaction checks first (the
-- fast path never gets here: it runs only while its connection is held).
local function check_usable(self)
  local a = self._active
  if a == FAILED then pending_rollback() end
  local block = block_of(a)
  if block and block._ended then
    -- SQLAlchemy's rule inside `with session.begin():` once the session's
    -- own commit() or rollback() ended the block's transaction
    exc.raise("InvalidRequestError",
      "Can't operate on closed transaction inside context manager.  " ..
      "Please complete the context manager before emitting further commands.")
  end
end

--- A unit of work: checks a connection out on its first statement and gives
-- it back at `commit()`, `rollback()` and `close()`, staying usable after
-- each. A COMMIT that fails leaves it to be rolled back: statements and
-- `commit()` raise `PendingRollbackError` until `rollback()` or `close()`. A
-- session garbage-collected without `close()` gives its connection back.
-- @type Session

--- (Engine|nil) the engine it runs on
-- @field bind

--- (table) the session's own table (a copy of what it was made with)
-- @field info

--- The session's Connection, checked out (and the transaction begun) on
--- first use.
-- @treturn Connection
function Session:connection()
  local conn = self._conn
  if not conn then
    check_usable(self)
    local bind = self.bind or no_bind()
    local raw = self._raw
    if raw then
      self._raw = false
      conn = engine_mod.adopt(bind, raw)
    else
      conn = bind:connect()
    end
    self._conn = conn
    if not self._active then self._active = true end
  end
  return conn
end

-- execute, commit, rollback and close are the hot paths (a scoped_session's
-- request): they check their self by the field every Session has (_active
-- is never nil), read anyway, instead of exc._colon_methods' call more (see
-- the end of this file); a number or a boolean as self still meets Lua's
-- own "attempt to index".

--- Runs a statement in the session's transaction (see `Connection:execute`).
--
--     local rows = s:execute("SELECT * FROM t WHERE id = :id", {id = 1}):all()
-- @tparam string sql
-- @tparam[opt] table params
-- @tparam[opt] table opts execution options (`stream_results`, `yield_per`: see
-- `Connection:execute`), which go through the session's Connection
-- @treturn Result
function Session:execute(sql, params, opts)
  if not self then exc._colon("Session", "execute", self) end
  if opts ~= nil then return self:connection():execute(sql, params, opts) end
  local raw = self._raw
  if raw then
    local bind = self.bind
    if bind._fast then return raw_execute(raw, sql, params) end
    local ops = bind._session_ops
    if ops then return ops.execute(raw, sql, params) end
  end
  local conn = self._conn
  if not conn and not raw then
    local active = self._active
    if active then
      check_usable(self) -- FAILED, or a begin() block
    elseif active == nil then
      exc._colon("Session", "execute", self)
    end
    local bind = self.bind
    if bind ~= nil and bind._raw_sessions then
      local ops = bind._session_ops
      if ops then
        raw = ops.checkout() -- waits for a connection, or opens one, by yielding
        self._raw = raw
        if not active then self._active = true end
        return ops.execute(raw, sql, params)
      end
      raw = pool_checkout(bind._cpool)
      self._raw = raw
      if not active then self._active = true end
      return raw_execute(raw, sql, params)
    end
  end
  return (conn or self:connection()):execute(sql, params)
end

--- Runs sql once per parameter set (see `Connection:executemany`).
-- @tparam string sql
-- @tparam table param_sets
-- @treturn Result
function Session:executemany(sql, param_sets)
  return (self._conn or self:connection()):executemany(sql, param_sets)
end

--- `execute(sql, params):scalar()`.
-- @tparam string sql
-- @tparam[opt] table params
function Session:scalar(sql, params) return self:execute(sql, params):scalar() end
--- `execute(sql, params):scalars()`.
-- @tparam string sql
-- @tparam[opt] table params
-- @treturn ScalarResult
function Session:scalars(sql, params) return self:execute(sql, params):scalars() end
--- The Engine it runs on.
-- @treturn Engine
function Session:get_bind() return self.bind end

--- Whether a transaction is going (or a `begin()` block is open).
-- @treturn boolean
function Session:in_transaction()
  local a = self._active
  local block = block_of(a)
  if block then return not block._ended end
  return a ~= false
end

-- Ends the unit of work and gives the connection back to the pool, whatever
-- happens (a dead one discarded). A COMMIT that fails leaves the session
-- FAILED: nothing runs until rollback(), so no later statement commits on
-- its own what the caller believes was part of the failed transaction.
-- rollback and close go by the C reset rule (sc_conn_needs_end): ROLLBACK
-- whenever a transaction may be open, whatever pool_reset_on_return says.
-- Inside a begin() block the block stays in _active, its transaction over.
local function finish(self, commit)
  if not self then exc._colon("Session", commit and "commit" or "rollback", self) end
  local a = self._active
  if a == nil then exc._colon("Session", commit and "commit" or "rollback", self) end
  local after, was_ended = false, nil -- what _active is once the unit is over
  if a and a ~= true then -- rare: FAILED, or a begin() block
    if a == FAILED then
      if commit then pending_rollback() end
    else
      was_ended = a._ended
      a._ended = true
      after = a
    end
  end
  local raw = self._raw
  if raw then
    local bind = self.bind
    local ops = bind._session_ops
    if bind._fast or ops then
      self._raw = false
      -- FAILED until a COMMIT has gone through; a ROLLBACK that fails (its
      -- connection lost) ends the transaction all the same.
      self._active = commit and FAILED or after
      -- true: its userdata serves the next checkout. It returns an error
      -- only when it did nothing because the connection is busy (this was
      -- called from inside one of its statements: a finalizer, a params
      -- metamethod): the session is then put back as it was. (ops: the
      -- same, the end of the unit waited for by yielding)
      local busy
      if ops then busy = ops.finish(raw, commit) else busy = raw_finish(raw, commit, true) end
      if busy then
        self._raw, self._active = raw, a
        if after then after._ended = was_ended end
        error(busy, 0)
      end
      self._active = after
      return
    end
    -- listeners or logging came since the checkout: the Connection's path
    local ok, err = pcall(raw._check_idle, raw, commit and "commit" or "rollback", true)
    if not ok then
      if after then after._ended = was_ended end
      error(err, 0)
    end
    self:connection()
  end
  local conn = self._conn
  if not conn then
    self._active = after
    return
  end
  -- a busy connection refuses before the session changes
  local craw = conn.raw
  if craw then
    local ok, err = pcall(craw._check_idle, craw, commit and "commit" or "rollback", true)
    if not ok then
      if after then after._ended = was_ended end
      error(err, 0)
    end
  end
  self._conn = false
  self._active = commit and FAILED or after
  local ok, err = pcall(commit and conn.commit or conn.rollback, conn)
  if ok and commit and craw then
    -- track_gtid: the GTID of this COMMIT, for the scope's causal readers;
    -- a COMMIT without one (nothing written, no binlog: Galera) is recorded
    -- too, for causal = "sync_wait" readers (synced: the reader engines
    -- that have synced since), and leaves a GTID still to wait for as it is
    local gtids = self.bind._gtids
    if gtids then
      local g = craw:last_gtid()
      local k = scope_key()
      if g then
        gtids[k] = {gtid = g, waited = {}, synced = false}
      else
        local rec = gtids[k]
        if rec then rec.synced = false else gtids[k] = {gtid = false, waited = {}, synced = false} end
      end
    end
  end
  conn:close() -- back to the pool, rolled back, whatever happened
  if not ok then error(err, 0) end
  self._active = after
end

--- Commits and gives the connection back (the COMMIT is always sent when a
-- connection is held; nothing is sent when none is).
function Session:commit() return finish(self, true) end

--- Rolls back and gives the connection back; always succeeds.
function Session:rollback() finish(self, false) end

--- Rolls back what is open, gives the connection back and closes an open
-- `begin()` block; the session stays usable.
function Session:close()
  -- close() ends every scoped request (remove()), usually with nothing
  -- checked out any more: that case skips finish(). An open begin() block
  -- is closed with it.
  if not self then exc._colon("Session", "close", self) end
  local a = self._active
  if a == nil then exc._colon("Session", "close", self) end
  if a and a ~= true and a ~= FAILED then -- an open begin() block
    a._ended, a._closed = true, true
    self._active = true
  end
  if not (self._raw or self._conn) then
    self._active = false
    return
  end
  return finish(self, false)
end

--- session:begin() -> SessionTransaction: a transaction as a block, which
--- is SQLAlchemy's `with session.begin():`. As a Lua 5.4 <close> variable it
--- commits on normal exit and rolls back on error; until it is closed (by
--- its commit(), rollback() or close(), or the end of its scope), nothing
--- runs on the session outside its transaction.
--
--     do
--       local tx <close> = s:begin()
--       s:execute("INSERT INTO t (id) VALUES (1)")
--     end -- committed here, or rolled back by an error
-- @treturn SessionTransaction
-- @raise InvalidRequestError "A transaction is already begun on this Session."
function Session:begin()
  check_usable(self)
  if self._active then
    exc.raise("InvalidRequestError", "A transaction is already begun on this Session.")
  end
  local t = setmetatable({session = self, nested = false, _ended = false, _closed = false},
    SessionTransaction)
  self._active = t
  return t
end

--- session:begin_nested() -> a SAVEPOINT, nestable.
-- @treturn SessionTransaction a nested one (`nested` is true)
function Session:begin_nested()
  check_usable(self)
  local conn = self:connection()
  return setmetatable({session = self, nested = true, tx = conn:begin_nested()}, SessionTransaction)
end

Session.__close = function(self) self:close() end
Session.__tostring = function(self)
  return "Session(bind=" .. tostring(self.bind) .. ((self._conn or self._raw) and ", in transaction)" or ")")
end

-- ---- SessionTransaction ------------------------------------------------------
--
-- The root one (begin()) is open until its own commit/rollback/close; its
-- transaction ends earlier when the session's commit(), rollback() or
-- close() ends it (_ended). A nested one is its savepoint's handle.

local function st_closed()
  exc.raise("ResourceClosedError", "This transaction is closed")
end

-- The block is done; returns whether it was still the session's open
-- transaction (then _active holds an ordinary one for the session to end).
local function st_close(self)
  self._closed = true
  local s = self.session
  if s._active ~= self then return false end
  s._active = not self._ended
  return not self._ended
end

SessionTransaction.__index = function(self, k)
  if k == "is_active" then
    if self.nested then return self.tx.is_active end
    return not self._ended and not self._closed and self.session._active == self
  end
  return SessionTransaction[k]
end

-- commit() and rollback() of a block: a nested one's savepoint, or the
-- session's transaction (once: a second call finds the block closed)
local function st_end(self, how)
  if self.nested then
    local tx = self.tx
    if not tx.is_active then st_closed() end
    return tx[how](tx)
  end
  if self._closed or self._ended then st_closed() end
  st_close(self)
  local s = self.session
  return s[how](s)
end

--- A `Session:begin()` block (SQLAlchemy's `with session.begin():`) or a
-- `Session:begin_nested()` savepoint. As a Lua 5.4 `<close>` variable it
-- commits on normal exit and rolls back on error; on LuaJIT call `commit()`
-- or `rollback()`.
-- @type SessionTransaction

--- (Session) its session
-- @field session

--- (boolean) true for a savepoint
-- @field nested

--- (Transaction) a savepoint's handle (nested ones only)
-- @field tx

--- (boolean) false as soon as its transaction ends, whoever ended it
-- @field is_active

--- Commits the block's transaction (or releases the savepoint).
-- @raise ResourceClosedError "This transaction is closed" when it is over
function SessionTransaction:commit() return st_end(self, "commit") end
--- Rolls the block's transaction back (or back to the savepoint).
-- @raise ResourceClosedError "This transaction is closed" when it is over
function SessionTransaction:rollback() return st_end(self, "rollback") end

--- Ends the block, rolling back what is still open; a closed one does nothing.
function SessionTransaction:close()
  if self.nested then return self.tx:close() end
  if self._closed then return end
  if st_close(self) then self.session:rollback() end
end

SessionTransaction.__close = function(self, err)
  if self.nested then
    if not self.tx.is_active then return end
    if err == nil then return self.tx:commit() end
    return self.tx:rollback()
  end
  if self._closed then return end
  if err ~= nil or self._ended then return self:close() end -- rolls back what is still open
  local ok, commit_err = pcall(self.commit, self)
  if not ok then
    pcall(self.session.rollback, self.session) -- a failed commit rolls back
    error(commit_err, 0)
  end
end

-- ---- read replicas: readonly and causal_from ---------------------------------
--
-- A session of sessionmaker{readonly = true} or {causal_from = Writer}
-- (README "Several servers"). Its own class: an ordinary Session's paths
-- are untouched. Before the first statement of each of its transactions
-- (begin_reader) it may wait on its replica for the GTID of the scope's last
-- COMMIT through the writer's engine (track_gtid, recorded by finish above),
-- and with readonly it starts the transaction READ ONLY.

-- The scope the writer's GTIDs are recorded in and the readers look them
-- up by: the nginx request (ngx.ctx) under OpenResty, else the running
-- coroutine (the main thread included) -- scoped_session's default scopes.
-- (Above its use in finish: a forward declaration there.)
function scope_key()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.get_phase then
    local phase = ngx.get_phase()
    if phase ~= "init" and phase ~= "init_worker" then return ngx.ctx end
  end
  return core.current_thread()
end

local function writer_engine(from)
  if type(from._checkout) == "function" then return from end
  local maker = from.session_factory or from
  return maker.kw and maker.kw.bind
end

ReaderSession = setmetatable({}, {__index = Session})
ReaderSession.__index = ReaderSession
ReaderSession.__close = function(self) self:close() end
ReaderSession.__tostring = Session.__tostring

local base_execute, base_finish_commit, base_rollback, base_close, base_connection =
  Session.execute, Session.commit, Session.rollback, Session.close, Session.connection

-- The start of a transaction on the reader: the causal wait, then START
-- TRANSACTION READ ONLY. On a wait that timed out, "primary" moves the
-- transaction to a Session on the writer's engine (self._primary).
local begin_reader_in

local function begin_reader(self)
  self._beginning = true
  local ok, err = pcall(begin_reader_in, self)
  self._beginning = false
  if not ok then error(err, 0) end
end

-- A wait that timed out (or a sync_wait statement the server gave up on):
-- counted, told to causal_timeout listeners, then what causal_fallback says.
-- Returns true when the transaction moved to the writer's engine.
local function causal_timed_out(self, kw, bind, w, rec, timeout)
  local fallback = kw.causal_fallback or "primary"
  local c = metrics._counters(bind)
  c.causal_timeouts = c.causal_timeouts + 1
  if fallback == "stale" then
    c.causal_stale = c.causal_stale + 1
    if rec.gtid then rec.waited[bind] = true end
    if kw.causal == "sync_wait" then
      rec.synced = rec.synced or {}
      rec.synced[bind] = true
    end
  else
    base_rollback(self) -- the replica's connection goes back
    if fallback == "error" then
      c.causal_errors = c.causal_errors + 1
    else
      c.causal_fallbacks = c.causal_fallbacks + 1
    end
  end
  -- the GTID, the timeout and the fallback: no bound value, no password
  event.fire(bind, "causal_timeout", {gtid = rec.gtid or nil, timeout = timeout,
    fallback = fallback, mode = kw.causal or "gtid"})
  if fallback == "stale" then return false end
  if fallback == "error" then
    if rec.gtid and kw.causal ~= "sync_wait" then
      exc.raise("OperationalError",
        "causal read: the replica did not reach GTID %s within causal_timeout (%s s)",
        rec.gtid, tostring(timeout))
    end
    exc.raise("OperationalError", "causal read: the node's wsrep_sync_wait timed out")
  end
  local p = new(w, nil)
  self._primary = p
  if kw.readonly then p:execute("START TRANSACTION READ ONLY") end
  return true
end

-- causal = "sync_wait" (Galera): the transaction starts with the node
-- caught up with the cluster, in the one statement that begins it;
-- SET STATEMENT leaves nothing set on the connection. The server's
-- timeout (repl.causal_read_timeout) is 1205.
local SYNC_BEGIN = "SET STATEMENT wsrep_sync_wait = 1 FOR START TRANSACTION"
local SYNC_BEGIN_RO = "SET STATEMENT wsrep_sync_wait = 1 FOR START TRANSACTION READ ONLY"

function begin_reader_in(self)
  local kw = self._kw
  local bind = self.bind or no_bind()
  local from = kw.causal_from
  if from then
    local w = writer_engine(from)
    if not w then no_bind() end
    local gtids = w._gtids
    if not gtids then
      exc.raise("ArgumentError", "causal_from: the writer's engine needs create_engine(url, {track_gtid = true})")
    end
    local rec = gtids[scope_key()]
    if rec and kw.causal == "sync_wait" then
      local synced = rec.synced
      if not (synced and synced[bind]) then
        local c = metrics._counters(bind)
        c.causal_waits = c.causal_waits + 1
        local ok, err = pcall(base_execute, self, kw.readonly and SYNC_BEGIN_RO or SYNC_BEGIN)
        if ok then
          synced = rec.synced or {}
          rec.synced = synced
          synced[bind] = true
          return
        end
        if type(err) ~= "table" or err.code ~= 1205 then error(err, 0) end
        if causal_timed_out(self, kw, bind, w, rec, nil) then return end
      end
    elseif rec and rec.gtid and not rec.waited[bind] then
      local timeout = kw.causal_timeout or 1
      local c = metrics._counters(bind)
      c.causal_waits = c.causal_waits + 1
      local r = base_execute(self, "SELECT MASTER_GTID_WAIT(:gtid, :timeout)",
        {gtid = rec.gtid, timeout = timeout}):scalar()
      if tonumber(r) == 0 then
        rec.waited[bind] = true
      else -- -1: timed out (NULL: the server is no replica)
        if causal_timed_out(self, kw, bind, w, rec, timeout) then return end
      end
    end
  end
  if kw.readonly then base_execute(self, "START TRANSACTION READ ONLY") end
end

-- a connection is held, or begin_reader is running (its statements)
local function held(self) return self._raw or self._conn or self._beginning end

function ReaderSession:execute(sql, params, opts)
  if not self then exc._colon("Session", "execute", self) end
  local p = self._primary
  if not p and not held(self) then
    begin_reader(self)
    p = self._primary
  end
  if p then return p:execute(sql, params, opts) end
  return base_execute(self, sql, params, opts)
end

function ReaderSession:connection()
  local p = self._primary
  if not p and not held(self) then
    begin_reader(self)
    p = self._primary
  end
  if p then return p:connection() end
  return base_connection(self)
end

-- the end of the unit of work: the writer's session too when the reads
-- fell back to it
local function reader_end(self, how, base)
  local p = self._primary
  if p then
    self._primary = false
    base(self)
    return p[how](p)
  end
  return base(self)
end

function ReaderSession:commit() return reader_end(self, "commit", base_finish_commit) end
function ReaderSession:rollback() return reader_end(self, "rollback", base_rollback) end
function ReaderSession:close() return reader_end(self, "close", base_close) end
function ReaderSession:in_transaction()
  return self._primary and true or Session.in_transaction(self)
end

-- Every other public method checks its self with one call more (exc._colon_methods).
exc._colon_methods(Session, "Session", Session,
  {execute = true, commit = true, rollback = true, close = true}, ReaderSession)
exc._colon_methods(ReaderSession, "Session", ReaderSession, {execute = true}, Session)
exc._colon_methods(SessionTransaction, "SessionTransaction", SessionTransaction)
exc._colon_methods(Sessionmaker, "sessionmaker", Sessionmaker)

return M
