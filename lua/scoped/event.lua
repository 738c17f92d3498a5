-- scoped.event.listen(engine, name, fn): SQLAlchemy's pool events.
--   connect(raw)     a new DB connection was opened (run SET statements here)
--   checkout(raw)    a connection leaves the pool
--   checkin(raw)     a connection is about to go back to the pool
--   reset(raw, state)  a connection goes back to the pool, before the reset the
--                    engine's pool_reset_on_return does (every return of a
--                    live connection); state = {transaction_was_reset = bool
--                    (Connection:close() rolled its transaction back already),
--                    terminate_only = false, asyncio_safe = true}, SQLAlchemy's
--                    PoolResetState; checkin comes after it
--   invalidate(raw, err)  a connection is discarded as unusable; err is the
--                    disconnect error, or what conn:invalidate(err) was given
-- raw is the RawConnection (execute, exec_driver_sql, thread_id, ...).
-- And SQLAlchemy's statement events, on the Connection (a Session's too):
--   before_execute(conn, statement, params)  before a statement is sent
--   after_execute(conn, statement, params, result, seconds)  after it ran
--   handle_error(conn, err)  a statement raised err; a listener may raise
--                    an error of its own, which is raised instead
-- (before_cursor_execute and after_cursor_execute are the same lists). A
-- statement listener makes every statement of the engine take the
-- Connection's path; with none, statements cost what they did.
local exc = require "scoped.exc"

local event = {}

-- the list each name goes to (SQLAlchemy's cursor-level spellings alias
-- the statement events)
local NAMES = {connect = "connect", checkout = "checkout", checkin = "checkin", reset = "reset",
               invalidate = "invalidate", before_execute = "before_execute",
               after_execute = "after_execute", handle_error = "handle_error",
               before_cursor_execute = "before_execute", after_cursor_execute = "after_execute"}
local STATEMENT = {before_execute = true, after_execute = true, handle_error = true}

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

function event.listen(target, name, fn)
  local events, list_name = target_events(target, name, fn)
  local list = events[list_name] or {}
  list[#list + 1] = fn
  events[list_name] = list
  -- checkouts and checkins (statements, for a statement event) now go
  -- through the listeners
  target:_events_changed(STATEMENT[list_name])
end

function event.remove(target, name, fn)
  local events, list_name = target_events(target, name, fn)
  local list = events[list_name] or {}
  for i = #list, 1, -1 do
    if list[i] == fn then table.remove(list, i) end
  end
end

function event.contains(target, name, fn)
  local events, list_name = target_events(target, name, fn)
  for _, f in ipairs(events[list_name] or {}) do
    if f == fn then return true end
  end
  return false
end

--- Calls the listeners of `name` on engine with the arguments.
function event.fire(engine, name, ...)
  local list = engine._events[name]
  if list then
    for i = 1, #list do list[i](...) end
  end
end

return event
