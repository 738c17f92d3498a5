-- scoped_session: one Session per scope, the scope being the running
-- coroutine unless a scopefunc says otherwise (SQLAlchemy's
-- orm/scoping.py and util/_collections.py ScopedRegistry).
local core = require "scoped.core"
local exc = require "scoped.exc"
local Sessionmaker = require("scoped.session").Sessionmaker

local M = {}

local scopes = {}
M.scopes = scopes

--- The default scope: the running coroutine, the main thread included.
scopes.coroutine = core.current_thread

-- Under OpenResty (an nginx worker's VM), scoped.ngx: the coroutine scope
-- also checks the request, and ngx_request has a registry of its own.
local ngxglue
if rawget(_G, "ngx") ~= nil then
  ngxglue = require "scoped.ngx"
  if not ngxglue.active then ngxglue = nil end
end

--- One session per nginx request, shared by its light threads. (Under
--- OpenResty scoped_session recognizes this function and keys its registry
--- by the request's ngx.ctx directly, held weakly.)
function scopes.ngx_request()
  local ngx = rawget(_G, "ngx")
  if not ngx or not ngx.ctx then
    exc.raise("InvalidRequestError", "scopes.ngx_request needs OpenResty (no ngx.ctx here)")
  end
  return ngx.ctx
end

-- A registry over a scopefunc: get, set, clear for the current scope.
-- Table, thread and userdata keys are held weakly; strings and numbers
-- stay until cleared. Like every registry here, clear() returns what it
-- cleared (remove() closes that).
local function scopefunc_registry(scopefunc)
  local map = setmetatable({}, {__mode = "k"})
  local function key()
    local k = scopefunc()
    if k == nil then exc.raise("InvalidRequestError", "scopefunc returned nil") end
    return k
  end
  return function() return map[key()] end,
         function(v) map[key()] = v end,
         function()
           local k = key()
           local v = map[k]
           map[k] = nil
           return v
         end
end

local PROXIED = {
  "execute", "executemany", "commit", "rollback", "close", "begin", "begin_nested", "scalar", "scalars",
  "connection", "in_transaction", "get_bind",
}

--- scoped_session(factory [, scopefunc]) -> Session registry object
function M.scoped_session(factory, scopefunc)
  if type(factory) ~= "function" and not (type(factory) == "table" and getmetatable(factory)
      and getmetatable(factory).__call) then
    exc.raise("ArgumentError", "scoped_session() needs a session factory (a sessionmaker)")
  end
  if scopefunc ~= nil and type(scopefunc) ~= "function" then
    exc.raise("ArgumentError", "scopefunc must be a function, got %s", type(scopefunc))
  end
  -- get() -> this scope's session or nil; set(s); clear() -> the session
  -- it forgot, or nil
  local get, set, clear, teardown
  if ngxglue and (scopefunc == nil or scopefunc == scopes.coroutine) then
    -- ngx_lua reuses coroutines across requests: each session is recorded
    -- with its request; teardown is remove() in the log phase
    get, set, clear, teardown = ngxglue.coroutine_registry()
  elseif ngxglue and scopefunc == scopes.ngx_request then
    get, set, clear = scopefunc_registry(ngxglue.request_key)
  elseif scopefunc == nil or scopefunc == scopes.coroutine then
    get, set, clear = core.thread_registry()
  else
    get, set, clear = scopefunc_registry(scopefunc)
  end

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
  local registry = setmetatable({
    has = function() return get() ~= nil end,
    set = function(_, s) set(s) end,
    clear = function() clear() end,
  }, {__call = function() return get() or make() end})
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

  -- Every proxied method works as Session:m(...) and as Session.m(...).
  for _, name in ipairs(PROXIED) do
    S[name] = function(first, ...)
      local s = get() or make()
      if first == S then return s[name](s, ...) end
      return s[name](s, first, ...)
    end
  end
  -- The ones every request calls, without varargs (a vararg call costs
  -- more than the lookup itself on Lua 5.4)
  function S.execute(first, sql, params)
    local s = get() or make()
    if first == S then return s:execute(sql, params) end
    return s:execute(first, sql)
  end
  function S.commit()
    local s = get() or make()
    return s:commit()
  end
  function S.rollback()
    local s = get() or make()
    return s:rollback()
  end

  --- Closes the current scope's session and forgets it. Under OpenResty,
  --- in log_by_lua: closes every session the request made through S, in
  --- any of its coroutines (the safety net after the handler).
  function S.remove()
    if teardown and ngxglue.in_log_phase() then return teardown() end
    local s = clear()
    if s ~= nil then s:close() end
  end

  --- Changes the factory's options; refused when this scope has a session
  --- (SQLAlchemy only warns: the change would not reach that session).
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

return M
