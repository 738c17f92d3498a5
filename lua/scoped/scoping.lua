--- scoped_session: one Session per scope, the scope being the running
-- coroutine unless a scopefunc says otherwise (SQLAlchemy's
-- orm/scoping.py and util/_collections.py ScopedRegistry).
--
--     local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
--     Session:execute(sql); Session:commit(); Session:remove()
--
-- `scoped.scoped_session` and `scoped.scopes` are `scoped_session` and `scopes` here.
-- @module scoped.scoping
local core = require "scoped.core"
local exc = require "scoped.exc"
local Sessionmaker = require("scoped.session").Sessionmaker

local M = {}

--- Scope functions for `scoped_session`'s second argument.
-- @table scopes
local scopes = {}
M.scopes = scopes

--- The default scope: the running coroutine, the main thread included.
-- A dead coroutine's session is collected and its connection returns to the pool.
-- @function scopes.coroutine
-- @treturn thread the running coroutine
scopes.coroutine = core.current_thread

--- One session per nginx request, shared by its light threads. Outside
--- OpenResty it raises; under it scoped.ngx registers its own registry for
--- this scope (keyed by the request's ngx.ctx, held weakly).
function scopes.ngx_request()
  exc.raise("InvalidRequestError", "scopes.ngx_request needs OpenResty (no ngx.ctx here)")
end

-- ---- registries --------------------------------------------------------------
--
-- A registry keeps one session per scope (SQLAlchemy's ScopedRegistry and
-- ThreadLocalRegistry): a table of functions
--   get()    -> the current scope's session, or nil
--   set(s)   makes s the current scope's session
--   clear()  forgets it and returns what it forgot (remove() closes that)
--   remove   optional: remove(default) replaces Session:remove(), which
--            otherwise is default() (clear, then close)
-- made by the maker registered for the scope function; any other scope
-- function gets a scopefunc registry. A runtime plug-in (scoped.ngx)
-- registers its own makers when it loads.
local registry_makers = {}

--- register_scope(scopefunc, maker): scoped_session(f, scopefunc) makes its
--- registry with maker() from now on.
-- @local
function M.register_scope(scopefunc, maker)
  registry_makers[scopefunc] = maker
end

-- The coroutine scope: a weak map kept in C (lregistry.c), keyed by the
-- running coroutine.
M.register_scope(scopes.coroutine, function()
  local get, set, clear = core.thread_registry()
  return {get = get, set = set, clear = clear}
end)

--- A registry over a scopefunc. Table, thread and userdata keys are held
--- weakly; strings and numbers stay until cleared.
-- @local
function M.scopefunc_registry(scopefunc)
  local map = setmetatable({}, {__mode = "k"})
  local function key()
    local k = scopefunc()
    if k == nil then exc.raise("InvalidRequestError", "scopefunc returned nil") end
    return k
  end
  return {
    get = function() return map[key()] end,
    set = function(v) map[key()] = v end,
    clear = function()
      local k = key()
      local v = map[k]
      map[k] = nil
      return v
    end,
  }
end

local PROXIED = {
  "execute", "executemany", "commit", "rollback", "close", "begin", "begin_nested", "scalar", "scalars",
  "connection", "in_transaction", "get_bind",
}

--- scoped_session(factory [, scopefunc]) -> Session registry object
-- @tparam Sessionmaker|function factory makes each scope's session
-- @tparam[opt] function scopefunc returns the current scope's key (any value but nil;
-- table, thread and userdata keys are held weakly); default `scopes.coroutine`
-- @treturn ScopedSession
function M.scoped_session(factory, scopefunc)
  if type(factory) ~= "function" and not (type(factory) == "table" and getmetatable(factory)
      and getmetatable(factory).__call) then
    exc.raise("ArgumentError", "scoped_session() needs a session factory (a sessionmaker)")
  end
  if scopefunc ~= nil and type(scopefunc) ~= "function" then
    exc.raise("ArgumentError", "scopefunc must be a function, got %s", type(scopefunc))
  end
  local maker = registry_makers[scopefunc or scopes.coroutine]
  local reg = maker and maker() or M.scopefunc_registry(scopefunc)
  local get, set, clear = reg.get, reg.set, reg.clear

  -- a new scope's session without arguments: a sessionmaker's own maker
  -- skips the __call dispatch (every request makes one)
  local new_session = factory
  if getmetatable(factory) == Sessionmaker then
    new_session = factory:_plain_factory()
  end

  local function make(kw)
    if kw ~= nil then
      if get() ~= nil then
        exc.raise("InvalidRequestError", "Scoped session is already present; no new arguments may be specified.")
      end
      local s = factory(kw)
      set(s)
      return s
    end
    local s = new_session()
    set(s)
    return s
  end

  local S = {session_factory = factory}
  local registry_mt = {__call = function() return get() or make() end}
  local registry = setmetatable({
    has = function() return get() ~= nil end,
    set = function(_, s) set(s) end,
    clear = function() clear() end,
  }, registry_mt)
  exc._colon_methods(registry, "registry", registry_mt)
  S.registry = registry

  local mt = {}
  -- Session() on an existing scope: one C call (get) and one table lookup
  mt.__call = function(_, kw)
    if kw == nil then return get() or make() end
    return make(kw)
  end
  -- attributes of the current session (Session.bind, Session.info)
  mt.__index = function(_, k)
    local s = get() or make()
    return s[k]
  end
  mt.__tostring = function() return "scoped_session(" .. tostring(factory) .. ")" end
  setmetatable(S, mt)

  -- Every proxied method works as Session:m(...) and as Session.m(...)
  -- (SQLAlchemy's scoped_session is called as Session.execute(...)): there
  -- is no wrong self here; the session's own method checks its arguments.
  for _, name in ipairs(PROXIED) do
    S[name] = function(first, ...)
      local s = get() or make()
      if first == S then return s[name](s, ...) end
      return s[name](s, first, ...)
    end
  end
  -- The ones every request calls, without varargs (a vararg call costs
  -- more than the lookup itself on Lua 5.4)
  function S.execute(first, sql, params, opts)
    local s = get() or make()
    if first == S then return s:execute(sql, params, opts) end
    return s:execute(first, sql, params)
  end
  function S.commit()
    local s = get() or make()
    return s:commit()
  end
  function S.rollback()
    local s = get() or make()
    return s:rollback()
  end

  -- Closes the current scope's session and forgets it (a registry may do
  -- more: under OpenResty, in log_by_lua, every session the request made
  -- through S, in any of its coroutines, see scoped/ngx.lua).
  local function remove()
    local s = clear()
    if s ~= nil then s:close() end
  end
  local custom_remove = reg.remove
  if custom_remove then
    function S.remove() return custom_remove(remove) end
  else
    S.remove = remove
  end

  -- Changes the factory's options; refused when this scope has a session
  -- (SQLAlchemy only warns: the change would not reach that session).
  function S.configure(first, kw)
    if first ~= S then kw = first end
    if get() ~= nil then
      exc.raise("InvalidRequestError",
        "At least one scoped session is already present.  configure() can not affect sessions that have already been created.")
    end
    factory:configure(kw)
  end

  return S
end

--- What `scoped_session` returns: `Session()` is the current scope's
-- Session, made on first use; every Session method is proxied, called with
-- `:` or with `.`; `Session.bind` and `Session.info` read the current session's.
-- @type ScopedSession

--- (ScopeRegistry) the scope registry
-- @field registry

--- (Sessionmaker|function) what makes each scope's session
-- @field session_factory

--- `Session()`: the current scope's session. `Session{bind = e}` makes it
-- with those arguments (`InvalidRequestError` when the scope has one already).
-- @function ScopedSession:__call
-- @tparam[opt] table kw
-- @treturn Session

--- Closes the current scope's session and forgets it. Under OpenResty, in
-- `log_by_lua`, it closes every session the request made through this
-- scoped_session, in any of its coroutines.
-- @function ScopedSession:remove

--- Changes the factory's options (`Sessionmaker:configure`); refused with
-- `InvalidRequestError` while the current scope has a session.
-- @function ScopedSession:configure
-- @tparam table kw

--- Proxied to the current session: `Session:execute`.
-- @function ScopedSession:execute
-- @tparam string sql
-- @tparam[opt] table params
-- @treturn Result

--- Proxied: `Session:executemany`.
-- @function ScopedSession:executemany
-- @tparam string sql
-- @tparam table param_sets
-- @treturn Result

--- Proxied: `Session:commit`.
-- @function ScopedSession:commit

--- Proxied: `Session:rollback`.
-- @function ScopedSession:rollback

--- Proxied: `Session:close`.
-- @function ScopedSession:close

--- Proxied: `Session:begin`.
-- @function ScopedSession:begin
-- @treturn SessionTransaction

--- Proxied: `Session:begin_nested`.
-- @function ScopedSession:begin_nested
-- @treturn SessionTransaction

--- Proxied: `Session:scalar`.
-- @function ScopedSession:scalar
-- @tparam string sql
-- @tparam[opt] table params

--- Proxied: `Session:scalars`.
-- @function ScopedSession:scalars
-- @tparam string sql
-- @tparam[opt] table params
-- @treturn ScalarResult

--- Proxied: `Session:connection`.
-- @function ScopedSession:connection
-- @treturn Connection

--- Proxied: `Session:in_transaction`.
-- @function ScopedSession:in_transaction
-- @treturn boolean

--- Proxied: `Session:get_bind`.
-- @function ScopedSession:get_bind
-- @treturn Engine

--- `Session.registry`: the current scope's entry.
-- @type ScopeRegistry

--- Whether the current scope has a session.
-- @function ScopeRegistry:has
-- @treturn boolean

--- Makes s the current scope's session.
-- @function ScopeRegistry:set
-- @tparam Session s

--- Forgets the current scope's session without closing it.
-- @function ScopeRegistry:clear

return M
