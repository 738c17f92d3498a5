-- sessionmaker and Session: SQLAlchemy 2.0's Session for textual SQL. A
-- session checks a connection out on its first statement (autobegin) and
-- gives it back at commit, rollback or close; it stays usable after each.
local core = require "scoped.core"
local exc = require "scoped.exc"
local engine_mod = require "scoped.engine"

local M = {}

-- The fast path. On a plain engine (no listeners, logging, hidden
-- parameters, leak detection, yielding pool wait or offload: engine.lua's
-- _plain) outside AUTOCOMMIT, a session runs its statements on the
-- RawConnection itself (_raw) instead of through a Connection object, and
-- ends the unit of work with one C call (raw:finish: COMMIT or ROLLBACK,
-- then back to the pool; the userdata is kept for the next checkout, see
-- l_checkout_spare in csrc/lpool.c). Same statements, same errors, same pool; what it
-- saves is a Connection table and two Lua layers per request. Asking for
-- the Connection (session:connection(), begin_nested(), an engine that
-- stopped being plain) hands the raw connection over to one (engine.adopt).
local pool_checkout = core.pool_methods.checkout_spare
local raw_execute = core.conn_methods.execute
local raw_finish = core.conn_methods.finish

-- A session is made with every field its request will set (false when
-- unset): a field added later grows the table, and growing it twice was a
-- tenth of the seed request's cost on Lua 5.4.
local Session = {}
Session.__index = Session
local SessionTransaction = {}
SessionTransaction.__index = SessionTransaction
M.Session, M.SessionTransaction = Session, SessionTransaction

local SESSION_OPTIONS = {bind = true, info = true}

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
  return kw
end

local function new(bind, info)
  local s = setmetatable({bind = bind, _raw = false, _conn = false, _active = false}, Session)
  if info ~= nil then s.info = info end
  return s
end

function M.new_session(kw)
  kw = check_kw(kw, "Session()")
  return new(kw.bind, kw.info)
end

-- ---- sessionmaker ------------------------------------------------------------

local Sessionmaker = {}
Sessionmaker.__index = Sessionmaker
M.Sessionmaker = Sessionmaker

--- sessionmaker{bind = engine} or sessionmaker(engine) -> factory
function M.sessionmaker(kw)
  if type(kw) == "table" and type(kw._checkout) == "function" then kw = {bind = kw} end
  kw = check_kw(kw, "sessionmaker()")
  local copy = {}
  for k, v in pairs(kw) do copy[k] = v end
  return setmetatable({kw = copy}, Sessionmaker)
end

Sessionmaker.__call = function(self, kw)
  if kw == nil then -- self.kw was checked when it was set
    local base = self.kw
    return new(base.bind, base.info)
  end
  check_kw(kw, "sessionmaker()")
  local merged = {}
  for k, v in pairs(self.kw) do merged[k] = v end
  if kw then for k, v in pairs(kw) do merged[k] = v end end
  return M.new_session(merged)
end

--- maker() without arguments, as a plain function: what
--- scoped_session calls for every new scope (no __call dispatch on the way).
function Sessionmaker:_plain_factory()
  return function()
    local base = self.kw
    return new(base.bind, base.info)
  end
end

--- Changes what later sessions are made with.
function Sessionmaker:configure(kw)
  kw = check_kw(kw, "sessionmaker.configure()")
  for k, v in pairs(kw) do self.kw[k] = v end
end

Sessionmaker.__tostring = function(self)
  return "sessionmaker(bind=" .. tostring(self.kw.bind) .. ")"
end

-- ---- Session -----------------------------------------------------------------

local function no_bind()
  exc.raise("InvalidRequestError", "This session is not bound to an Engine: pass bind= to sessionmaker")
end

--- The session's Connection, checked out (and the transaction begun) on
--- first use.
function Session:connection()
  local conn = self._conn
  if not conn then
    local bind = self.bind or no_bind()
    local raw = self._raw
    if raw then
      self._raw = false
      conn = engine_mod.adopt(bind, raw)
    else
      conn = bind:connect()
    end
    self._conn = conn
    self._active = true
  end
  return conn
end

function Session:execute(sql, params)
  local raw = self._raw
  if raw and not self.bind.echo then return raw_execute(raw, sql, params) end
  local conn = self._conn
  if not conn and not raw then
    local bind = self.bind
    if bind ~= nil and bind._plain and not bind.echo and not bind._autocommit then
      raw = pool_checkout(bind._cpool)
      self._raw = raw
      self._active = true
      return raw_execute(raw, sql, params)
    end
  end
  conn = conn or self:connection()
  self._active = true
  return conn:execute(sql, params)
end

function Session:executemany(sql, param_sets)
  local conn = self._conn or self:connection()
  self._active = true
  return conn:executemany(sql, param_sets)
end

function Session:scalar(sql, params) return self:execute(sql, params):scalar() end
function Session:scalars(sql, params) return self:execute(sql, params):scalars() end
function Session:get_bind() return self.bind end
function Session:in_transaction() return self._active end

-- Gives the connection back to the pool; finish is "commit" or "rollback".
local function finish(self, how)
  local raw = self._raw
  if raw then
    local bind = self.bind
    if bind._plain and not bind.echo then
      self._raw = false
      self._active = false
      return raw_finish(raw, how == "commit", true) -- true: its userdata serves the next checkout
    end
    self:connection() -- listeners or logging came since the checkout: the Connection's path
  end
  local conn = self._conn
  self._active = false
  if not conn then return end
  self._conn = false
  local ok, err = pcall(conn[how], conn)
  conn:close() -- back to the pool whatever happened (reset on return)
  if not ok then error(err, 0) end
end

function Session:commit() return finish(self, "commit") end

function Session:rollback() finish(self, "rollback") end

-- close() ends every scoped request (remove()), usually with nothing
-- checked out any more: that case skips finish()
function Session:close()
  if not (self._raw or self._conn) then
    self._active = false
    return
  end
  return finish(self, "rollback")
end

--- session:begin() -> SessionTransaction; as a <close> variable it commits
--- on normal exit and rolls back on error.
function Session:begin()
  if self._active then
    exc.raise("InvalidRequestError", "A transaction is already begun on this Session.")
  end
  self._active = true
  return setmetatable({session = self, is_active = true, nested = false}, SessionTransaction)
end

--- session:begin_nested() -> a SAVEPOINT, nestable.
function Session:begin_nested()
  local conn = self:connection()
  self._active = true
  return setmetatable({session = self, is_active = true, nested = true, tx = conn:begin_nested()},
    SessionTransaction)
end

Session.__close = function(self) self:close() end
Session.__tostring = function(self)
  return "Session(bind=" .. tostring(self.bind) .. ((self._conn or self._raw) and ", in transaction)" or ")")
end

local function tx_end(self)
  if not self.is_active then
    exc.raise("InvalidRequestError", "This transaction is inactive")
  end
  self.is_active = false
end

function SessionTransaction:commit()
  tx_end(self)
  if self.nested then self.tx:commit() else self.session:commit() end
end

function SessionTransaction:rollback()
  tx_end(self)
  if self.nested then self.tx:rollback() else self.session:rollback() end
end

SessionTransaction.__close = function(self, err)
  if not self.is_active then return end
  if err == nil then self:commit() else self:rollback() end
end

return M
