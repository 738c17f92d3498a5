--- scoped.event.listen(engine, name, fn): SQLAlchemy's pool events and
-- statement events (see `events`).
--
--     scoped.event.listen(engine, "connect", function(raw)
--       raw:exec_driver_sql("SET time_zone = '+00:00'")
--     end)
-- @module scoped.event
local exc = require "scoped.exc"

local event = {}

--- The events, and what each listener gets. A listener that raises when a
-- connection is given back gets the connection invalidated (and the error
-- logged), never lost; one that raises at checkout fails the checkout.
-- @table events
-- @field connect `(raw)`: a new DB connection was opened (run SET statements here);
-- fires again after a `reset_connection` reset, which forgets what it set
-- @field checkout `(raw)`: a connection leaves the pool
-- @field reset `(raw, state)`: a live connection goes back, before the pool's reset;
-- `state = {transaction_was_reset = bool, terminate_only = false, asyncio_safe = true}`
-- (`transaction_was_reset`: `Connection:close()` rolled its transaction back already)
-- @field checkin `(raw)`: a connection goes back to the pool, after the reset
-- @field invalidate `(raw, err)`: a connection is discarded as unusable; err is the
-- disconnect error, or what `Connection:invalidate(err)` was given
-- @field before_execute `(conn, statement, params)`: before a statement is sent;
-- `conn` is the Connection (a Session's too)
-- @field after_execute `(conn, statement, params, result, seconds)`: after it ran
-- @field handle_error `(conn, err)`: a statement raised err; a listener may raise an
-- error of its own, which is raised instead
-- @field host_denied `(info)`: several hosts: a host is denied (a failed connect, a wrong
-- role, a disconnect of one of its connections); `info = {host, port, code, ["until"] =
-- seconds until the denial ends}`
-- @field host_restored `(info)`: a denied host gave a connection again; `{host, port}`
-- @field failover `(info)`: a new connection went to another host after one failed in
-- the same connect; `{from_host, from_port, host, port, code}`
-- @field before_cursor_execute the same list as before_execute (SQLAlchemy's spelling)
-- @field after_cursor_execute the same list as after_execute
-- @field causal_timeout `(info)`, on the reader sessionmaker's engine: a causal
-- wait timed out; `info = {gtid = "0-1-42" (nil for causal = "sync_wait"),
-- timeout = seconds (nil for sync_wait), fallback = "primary" | "error" | "stale",
-- mode = "gtid" | "sync_wait"}`; fired once the fallback is done (before the
-- "error" fallback's error is raised)
-- @field retry `(info)`, on the engine of the retried unit's session: `scoped.retry`
-- redoes a unit of work; `info = {attempt = the attempt that failed, code = its
-- error code, sqlstate = its SQLSTATE, attempts = the most allowed}`; fired before
-- `on_retry`
--
-- A listener's error is raised to the caller (of the statement, of retry).
-- causal_timeout and retry listeners cost nothing on other paths.
--
-- `raw` is the `RawConnection` (execute, exec_driver_sql, thread_id, ...). A
-- statement listener makes every statement of the engine take the
-- Connection's path; with none, statements cost what they did.
local NAMES = {connect = "connect", checkout = "checkout", checkin = "checkin", reset = "reset",
               invalidate = "invalidate", before_execute = "before_execute",
               after_execute = "after_execute", handle_error = "handle_error",
               before_cursor_execute = "before_execute", after_cursor_execute = "after_execute",
               host_denied = "host_denied", host_restored = "host_restored", failover = "failover",
               causal_timeout = "causal_timeout", retry = "retry"}
local STATEMENT = {before_execute = true, after_execute = true, handle_error = true}
local HOSTS = {host_denied = true, host_restored = true, failover = true}
-- fired above the pool and the statements: listening to them leaves the
-- engine's paths as they are
local UNIT = {causal_timeout = true, retry = true}

local function target_events(target, name, fn)
  if type(target) ~= "table" or type(target._events) ~= "table" then
    exc.raise("ArgumentError", "event target must be an Engine")
  end
  if not NAMES[name] then
    exc.raise("ArgumentError", "No such event '%s' for target '%s'", tostring(name), tostring(target))
  end
  if type(fn) ~= "function" then
    exc.raise("ArgumentError", "event listener must be a function, got %s", type(fn))
  end
  return target._events, NAMES[name]
end

--- Adds a listener.
-- @tparam Engine target
-- @tparam string name one of the `events`
-- @tparam function fn gets the event's arguments
-- @raise ArgumentError for another target, an unknown event or a non-function
function event.listen(target, name, fn)
  local events, list_name = target_events(target, name, fn)
  local list = events[list_name] or {}
  list[#list + 1] = fn
  events[list_name] = list
  -- checkouts and checkins (statements, for a statement event) now go
  -- through the listeners
  if not UNIT[list_name] then target:_events_changed(STATEMENT[list_name], HOSTS[list_name]) end
end

--- Removes a listener.
-- @tparam Engine target
-- @tparam string name
-- @tparam function fn
function event.remove(target, name, fn)
  local events, list_name = target_events(target, name, fn)
  local list = events[list_name] or {}
  for i = #list, 1, -1 do
    if list[i] == fn then table.remove(list, i) end
  end
end

--- Whether fn listens to name on target.
-- @tparam Engine target
-- @tparam string name
-- @tparam function fn
-- @treturn boolean
function event.contains(target, name, fn)
  local events, list_name = target_events(target, name, fn)
  for _, f in ipairs(events[list_name] or {}) do
    if f == fn then return true end
  end
  return false
end

--- Calls the listeners of `name` on engine with the arguments (what the
-- engine does; errors are the caller's).
-- @tparam Engine engine
-- @tparam string name
-- @param ... the event's arguments
function event.fire(engine, name, ...)
  local list = engine._events[name]
  if list then
    for i = 1, #list do list[i](...) end
  end
end

return event
