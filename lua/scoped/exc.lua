-- Errors are tables {kind = ..., message = ..., ...} with one metatable, so
-- that `err.kind`, `err.code` and `tostring(err)` work wherever they are
-- caught. The kinds and their hierarchy are SQLAlchemy's (sqlalchemy.exc).
local core = require "scoped.core"

local exc = {}

-- kind -> parent kind
local parent = {
  ArgumentError = "SQLAlchemyError",
  InvalidRequestError = "SQLAlchemyError",
  ResourceClosedError = "InvalidRequestError",
  PendingRollbackError = "InvalidRequestError",
  NoResultFound = "InvalidRequestError",
  MultipleResultsFound = "InvalidRequestError",
  TimeoutError = "SQLAlchemyError",
  DBAPIError = "SQLAlchemyError",
  InterfaceError = "DBAPIError",
  DatabaseError = "DBAPIError",
  DataError = "DatabaseError",
  OperationalError = "DatabaseError",
  IntegrityError = "DatabaseError",
  InternalError = "DatabaseError",
  ProgrammingError = "DatabaseError",
  NotSupportedError = "DatabaseError",
}
exc.hierarchy = parent

local mt = core.error_mt

--- Whether err is of kind `kind` or a kind below it.
function exc.is(err, kind)
  if type(err) ~= "table" or getmetatable(err) ~= mt then return false end
  local k = err.kind
  while k do
    if k == kind then return true end
    k = parent[k]
  end
  return false
end

local function render_value(v, depth)
  local t = type(v)
  if t == "string" then
    return string.format("%q", v):gsub("\\\n", "\\n")
  elseif v == core.null then
    return "null"
  elseif t == "table" and depth < 2 then
    local parts, n = {}, 0
    for k, x in pairs(v) do
      n = n + 1
      if n > 10 then parts[#parts + 1] = "..."; break end
      local key = type(k) == "string" and k .. "=" or ""
      parts[#parts + 1] = key .. render_value(x, depth + 1)
    end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

--- "[parameters: {...}]" as error texts and echo show bind values.
function exc.render_params(params)
  return "[parameters: " .. render_value(params, 0) .. "]"
end

mt.__tostring = function(err)
  local kind = err.kind or "SQLAlchemyError"
  if err.code ~= nil then
    -- SQLAlchemy: (sqlalchemy.exc.IntegrityError) (1062, "Duplicate entry ...")
    local s = string.format('(scoped.%s) (%d, "%s")', kind, err.code, tostring(err.message))
    if err.statement then
      s = s .. "\n[SQL: " .. err.statement .. "]"
      if err.hide_parameters then
        s = s .. "\n[SQL parameters hidden due to hide_parameters=True]"
      elseif err.params ~= nil then
        s = s .. "\n" .. exc.render_params(err.params)
      end
    end
    if err.hint then s = s .. "\n[hint: " .. err.hint .. "]" end
    return s
  end
  local s = "scoped." .. kind .. ": " .. tostring(err.message)
  if err.hint then s = s .. "\n[hint: " .. err.hint .. "]" end
  return s
end

-- With hide_parameters, bound values must not reach an error through the
-- server's message either: it quotes the statement after a syntax error
-- ("near '...' at line 1") and the value in "Duplicate entry '...'".
local function plain_replace(s, what, with)
  local out, i = {}, 1
  while true do
    local a, b = s:find(what, i, true)
    if not a then break end
    out[#out + 1] = s:sub(i, a - 1) .. with
    i = b + 1
  end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

mt.scrub = function(err, params)
  local msg = tostring(err.message or "")
  msg = msg:gsub("near '.*' at line (%d+)", "near [hidden due to hide_parameters] at line %1")
  local values = {}
  local function collect(v, depth)
    if type(v) == "string" or type(v) == "number" then
      values[#values + 1] = tostring(v)
    elseif type(v) == "table" and depth < 2 then
      for _, x in pairs(v) do collect(x, depth + 1) end
    end
  end
  collect(params, 0)
  table.sort(values, function(a, b) return #a > #b end)
  for _, v in ipairs(values) do
    if #v > 0 then msg = plain_replace(msg, "'" .. v .. "'", "'[hidden]'") end
    if #v >= 4 then msg = plain_replace(msg, v, "[hidden]") end
  end
  err.message = msg
end

--- Raises SQLAlchemy 2.0's one text for every "rollback first" refusal
--- (its code 8s2b): a transaction whose connection died, whose COMMIT
--- failed or whose Connection was invalidated must be rolled back before
--- anything else runs. (csrc/lua/lconn.h defines the same text.)
function exc.pending_rollback(in_savepoint)
  exc.raise("PendingRollbackError",
    "Can't reconnect until invalid %stransaction is rolled back.  Please rollback() fully before proceeding",
    in_savepoint and "savepoint " or "")
end

-- ---- hints: the next step for the errors a newcomer meets first ---------------
--
-- err.hint, one line, also shown by tostring(err). Written from the error
-- and the engine's URL table, never from its password. The C binding calls
-- exc._hint when a connection cannot be opened and when a checkout times out
-- (core.set_hinter below).

-- where a connection goes, as Connector/C picks it: a unix socket when the
-- host is left out or is "localhost", else TCP
local function target(url)
  local q = url.query or {}
  if url.host == nil or url.host == "localhost" then
    return "unix socket " .. (q.unix_socket or "(the client's default path)")
  end
  return url.host .. ":" .. tostring(url.port or 3306)
end

local connect_hints = {
  [1045] = function(err, url)
    -- the server names the account as it sees it: user and the client's host
    local user, host = tostring(err.message):match("for user '(.-)'@'(.-)'")
    local who = user and string.format("'%s'@'%s'", user, host)
      or string.format("'%s'", tostring(url.username or "root"))
    return string.format("the server at %s refused %s: the password in the URL is wrong, or that " ..
      "user may not connect from that host (CREATE USER / GRANT on the server)", target(url), who)
  end,
  [1049] = function(_, url)
    return string.format("there is no database '%s' on %s: create it (CREATE DATABASE) or fix the URL",
      tostring(url.database), target(url))
  end,
  [2002] = function(_, url)
    local q = url.query or {}
    return string.format("could not reach a server at %s (connect_timeout %s s): is it running and " ..
      "listening there? Check the URL's host, port or unix_socket", target(url), q.connect_timeout or "10")
  end,
}
connect_hints[2003] = connect_hints[2002]

-- Sets err.hint for the errors that have one (url: the engine's URL
-- table, for connect errors).
function exc._hint(err, url)
  if err.kind == "TimeoutError" and err.checkedout then
    local n = err.checkedout
    local held = string.format("%d connection%s checked out (pool_size %d + max_overflow %d)",
      n, n == 1 and " is" or "s are", err.pool_size, err.max_overflow)
    if err.phase then
      -- scoped.ngx: a phase that cannot yield tried once, waited for nothing
      err.hint = string.format("%s and the %s phase cannot wait for one: check out in a phase that " ..
        "can (rewrite, access, content, ngx.timer.at), give them back sooner (close(), " ..
        "Session:remove()) or raise the limit; pool_leak_threshold = seconds shows where they were " ..
        "checked out", held, err.phase)
    else
      err.hint = string.format("%s and none came back within pool_timeout (%g s): give them back " ..
        "sooner (close(), Session:remove()) or raise the limit; pool_leak_threshold = seconds shows " ..
        "where they were checked out", held, err.pool_timeout)
    end
    return err
  end
  local f = url and connect_hints[err.code]
  if f then err.hint = f(err, url) end
  return err
end

core.set_hinter(exc._hint)

-- ---- methods called with a dot ------------------------------------------------
--
-- `s.execute("SELECT 1")` passes the statement as self. Every public method
-- refuses a self that is not an instance of its class with one error,
-- naming the class and method, instead of a bare Lua error from deep inside.

local function describe(v)
  if v == nil then return "nil" end
  return "a " .. type(v)
end

-- Raises ArgumentError "use a colon: Class:method(...)" for a method
-- called on something that is not an instance of its class.
function exc._colon(class, method, self)
  exc.raise("ArgumentError", "use a colon: %s:%s(...) (self is %s, not %s %s)",
    class, method, describe(self), class:find("^[AEIOU]") and "an" or "a", class)
end

-- Checks self on every public method of a class (its method table: every
-- function whose name does not start with "_"), but those in `except`,
-- which check for themselves: the hot paths, which cannot afford a call
-- more (they test a field every instance has, and call exc._colon).
-- `mt` is the instances' metatable (`mt2`, if given, a second kind's: a
-- streaming Result). Returns the unchecked functions, for
-- callers that know what they hold.
function exc._colon_methods(class, name, mt, except, mt2)
  local impl = {}
  for k, f in pairs(class) do
    if type(f) == "function" and type(k) == "string" and k:sub(1, 1) ~= "_" then
      impl[k] = f
      if not (except and except[k]) then
        if mt2 == nil then
          class[k] = function(self, ...)
            if getmetatable(self) ~= mt then exc._colon(name, k, self) end
            return f(self, ...)
          end
        else -- a class of two kinds (a Result: buffered or streaming)
          class[k] = function(self, ...)
            local m = getmetatable(self)
            if m ~= mt and m ~= mt2 then exc._colon(name, k, self) end
            return f(self, ...)
          end
        end
      end
    end
  end
  return impl
end

--- A new error table of `kind` (fields are copied onto it).
function exc.new(kind, message, fields)
  local err = {}
  if fields then for k, v in pairs(fields) do err[k] = v end end
  err.kind, err.message = kind, message
  return setmetatable(err, mt)
end

--- Raises an error of `kind`; extra arguments format the message.
function exc.raise(kind, fmt, ...)
  error(exc.new(kind, select("#", ...) > 0 and string.format(fmt, ...) or fmt), 0)
end

return exc
