--- scoped.metrics: the pools' state and counters (engine.pool:stats()) as
-- Prometheus' text exposition format, for a /metrics endpoint:
--
--   location = /metrics {
--     content_by_lua_block {
--       ngx.header["Content-Type"] = "text/plain; version=0.0.4"
--       ngx.print(require("scoped.metrics").prometheus(engines))
--     }
--   }
--
-- Each series is labelled engine="<URL, password masked>"; two engines with
-- the same URL in one list are told apart by a " #2", " #3" suffix.
-- @module scoped.metrics
local exc = require "scoped.exc"

local M = {}

-- The counters kept in Lua for what happens above the pool (issue 21):
-- causal reads (on the reader's engine) and retries (on the engine of the
-- retried unit's sessions). One table per engine, made at its first count.
local COUNTERS = {
  {"causal_waits", "causal waits run on this engine (MASTER_GTID_WAIT, or a wsrep_sync_wait start)"},
  {"causal_timeouts", "causal waits that timed out"},
  {"causal_fallbacks", "timed-out causal reads run on the writer's engine (causal_fallback=primary)"},
  {"causal_errors", "timed-out causal reads that raised (causal_fallback=error)"},
  {"causal_stale", "timed-out causal reads that went on on the replica (causal_fallback=stale)"},
  {"retries", "units of work redone by scoped.retry"},
  {"retries_exhausted", "units of work given up by scoped.retry after their last attempt failed with a retried code"},
}

local function fresh_counters()
  local c = {}
  for _, f in ipairs(COUNTERS) do c[f[1]] = 0 end
  return c
end

-- the engine's counters table itself, made on first use (session.lua,
-- retry.lua count into it)
function M._counters(engine)
  local c = rawget(engine, "_unit_counters")
  if not c then
    c = fresh_counters()
    rawset(engine, "_unit_counters", c)
  end
  return c
end

local function is_engine_table(e)
  return type(e) == "table" and type(e._checkout) == "function"
end

--- counters(engine) -> a copy of the engine's causal read and retry
--- counters, all numbers (0 until something happened): `causal_waits`,
--- `causal_timeouts`, `causal_fallbacks`, `causal_errors`, `causal_stale`
--- (counted on the reader sessionmaker's engine), `retries`,
--- `retries_exhausted` (on the engine of the retried unit's sessions).
-- @tparam Engine engine
-- @treturn table
function M.counters(engine)
  if not is_engine_table(engine) then
    exc.raise("ArgumentError", "metrics.counters takes an Engine, got %s", type(engine))
  end
  local c = rawget(engine, "_unit_counters") or fresh_counters()
  local copy = {}
  for k, v in pairs(c) do copy[k] = v end
  return copy
end

-- name (after scoped_pool_), type, the stats() field, help
local FAMILIES = {
  {"size", "gauge", "size", "pool_size: connections kept open when idle"},
  {"checked_in", "gauge", "checkedin", "idle connections in the pool"},
  {"checked_out", "gauge", "checkedout", "connections handed out now"},
  {"overflow", "gauge", "overflow", "open connections beyond pool_size (negative: room left below it)"},
  {"open", "gauge", "open", "connections open (idle and checked out)"},
  {"waiting", "gauge", "waiting", "callers waiting for a connection"},
  {"checkouts_total", "counter", "checkouts", "connections handed out"},
  {"checkout_waits_total", "counter", "waits", "checkouts that had to wait for a connection"},
  {"checkout_wait_seconds_total", "counter", "wait_seconds", "time spent waiting by those checkouts"},
  {"checkout_wait_seconds_max", "gauge", "wait_max", "the longest wait for a connection"},
  {"timeouts_total", "counter", "timeouts", "checkouts that gave up after pool_timeout"},
  {"connects_total", "counter", "connects", "connections opened"},
  {"connect_failures_total", "counter", "connect_failures", "connection attempts that failed"},
  {"invalidations_total", "counter", "invalidations", "connections discarded as invalid"},
  {"recycles_total", "counter", "recycles", "connections replaced for being older than pool_recycle"},
  {"preping_failures_total", "counter", "preping_failures", "connections replaced after failing the pre-ping"},
}

local function label_value(s)
  return (s:gsub("[\\\"\n]", {["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n"}))
end

local function number(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v == math.floor(v) and v > -2^53 and v < 2^53 then return string.format("%d", v) end
  return string.format("%.17g", v)
end

local function is_engine(e)
  return type(e) == "table" and e.pool ~= nil and type(e.pool.stats) == "function"
end

--- prometheus(engine | {engine, ...}) -> the text exposition of every
--- engine's pool: gauges for its state, counters since it was made, and the
--- causal read and retry `counters` (scoped_causal_waits_total, ...,
--- scoped_retries_total, scoped_retries_exhausted_total).
-- @tparam Engine|{Engine,...} engines
-- @treturn string
function M.prometheus(engines)
  if is_engine(engines) then engines = {engines} end
  if type(engines) ~= "table" then
    exc.raise("ArgumentError", "metrics.prometheus takes an engine or a list of engines, got %s",
      type(engines))
  end
  local rows, seen = {}, {}
  for i, e in ipairs(engines) do
    if not is_engine(e) then
      exc.raise("ArgumentError", "metrics.prometheus: item %d is not an engine", i)
    end
    local name = tostring(e.url)
    seen[name] = (seen[name] or 0) + 1
    if seen[name] > 1 then name = name .. " #" .. seen[name] end
    rows[#rows + 1] = {label = 'engine="' .. label_value(name) .. '"', stats = e.pool:stats(),
                       counters = rawget(e, "_unit_counters") or fresh_counters()}
  end
  local out = {}
  for _, f in ipairs(FAMILIES) do
    local metric = "scoped_pool_" .. f[1]
    out[#out + 1] = "# HELP " .. metric .. " " .. f[4]
    out[#out + 1] = "# TYPE " .. metric .. " " .. f[2]
    for _, r in ipairs(rows) do
      out[#out + 1] = metric .. "{" .. r.label .. "} " .. number(r.stats[f[3]] or 0)
    end
  end
  for _, f in ipairs(COUNTERS) do
    local metric = "scoped_" .. f[1] .. "_total"
    out[#out + 1] = "# HELP " .. metric .. " " .. f[2]
    out[#out + 1] = "# TYPE " .. metric .. " counter"
    for _, r in ipairs(rows) do
      out[#out + 1] = metric .. "{" .. r.label .. "} " .. number(r.counters[f[1]])
    end
  end
  out[#out + 1] = ""
  return table.concat(out, "\n")
end

return M
