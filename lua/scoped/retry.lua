--- Redoing a unit of work that the server refused for a reason that goes
-- away when it is tried again: a deadlock (1213), a lock wait timeout
-- (1205), a Galera certification conflict (1213 too).
--
--     local total, attempts = scoped.retry(function(session)
--       session:execute("UPDATE account SET n = n - 1 WHERE id = 1")
--       session:execute("UPDATE account SET n = n + 1 WHERE id = 2")
--       return session:execute("SELECT SUM(n) FROM account"):scalar()
--     end, {sessionmaker = Session, attempts = 3})
--
-- Each attempt is the whole unit of work in a fresh Session: fn(session),
-- then its COMMIT; on an error the Session is rolled back and closed, and
-- the unit is run again only when the error's code is in `codes` and the
-- COMMIT's outcome is known. A COMMIT whose connection died under it
-- (`err.commit_unknown`) may have committed: it is redone only with
-- `idempotent = true`. Nothing is replayed behind the caller's back: what fn
-- did outside the database (a message sent, a counter bumped) is done again
-- on each attempt.
-- @module scoped.retry
local exc = require "scoped.exc"
local event = require "scoped.event"
local metrics = require "scoped.metrics"

local DEFAULT_CODES = {1213, 1205}

local function code_set(codes)
  local set = {}
  for _, c in ipairs(codes) do set[c] = true end
  return set
end

local DEFAULT_SET = code_set(DEFAULT_CODES)

--- retry(fn, opts) -> what fn returned, the attempts it took.
-- @tparam function fn called with a fresh Session for each attempt; its
-- return values are returned
-- @tparam table opts `sessionmaker` (required: what makes the Sessions),
-- `attempts` (default 3), `codes` (server error codes that are retried,
-- default {1213, 1205}), `idempotent` (default false: a COMMIT of unknown
-- outcome is never redone), `on_retry` (function(err, attempt), called
-- before each new attempt, e.g. to log or back off; it may yield)
-- @return fn's first value, then the number of attempts
--
-- Each redo is counted (`retries`; a unit given up after its last attempt
-- failed with a retried code: `retries_exhausted`) on the engine of the
-- unit's session (`scoped.metrics.counters`) and fires its `retry` event.
-- @raise the last attempt's error, or the first that is not retried
local function retry(fn, opts)
  if type(fn) ~= "function" then
    exc.raise("ArgumentError", "retry(fn, opts): fn must be a function, got %s", type(fn))
  end
  if type(opts) ~= "table" then
    exc.raise("ArgumentError", "retry(fn, opts): opts must be a table with a sessionmaker, got %s", type(opts))
  end
  local maker = opts.sessionmaker
  if maker == nil then
    exc.raise("ArgumentError", "retry(fn, opts): opts.sessionmaker is required")
  end
  local attempts = opts.attempts == nil and 3 or opts.attempts
  if type(attempts) ~= "number" or attempts < 1 or attempts ~= math.floor(attempts) then
    exc.raise("ArgumentError", "retry: attempts must be a whole number >= 1, got %s", tostring(attempts))
  end
  local codes = opts.codes == nil and DEFAULT_SET or code_set(opts.codes)
  local on_retry = opts.on_retry
  for attempt = 1, attempts do
    local session = maker()
    local ok, value = pcall(fn, session)
    if ok then ok, value = pcall(function() session:commit() return value end) end
    if ok then
      session:close()
      return value, attempt
    end
    local err = value
    pcall(session.rollback, session)
    pcall(session.close, session)
    local retryable = type(err) == "table" and codes[err.code] == true
      and (not err.commit_unknown or opts.idempotent == true)
    -- counted on the engine of the unit's session (metrics.counters)
    local bind = type(session) == "table" and session.bind
    local counted = type(bind) == "table" and type(bind._events) == "table"
    if not retryable then error(err, 0) end
    if attempt == attempts then
      if counted then
        local c = metrics._counters(bind)
        c.retries_exhausted = c.retries_exhausted + 1
      end
      error(err, 0)
    end
    if counted then
      local c = metrics._counters(bind)
      c.retries = c.retries + 1
      -- the attempt and the error's code: no statement, no bound value
      event.fire(bind, "retry", {attempt = attempt, code = err.code, sqlstate = err.sqlstate,
                                 attempts = attempts})
    end
    if on_retry then on_retry(err, attempt) end
  end
end

return retry
