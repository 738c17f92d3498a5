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
-- the same URL in one list are told apart by a " #2", " #3" suffix. The
-- series of engine:hosts() (scoped_host_*) are labelled host="h:port" as
-- well, never with a user or a password.
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
  {"failbacks_total", "counter", "failbacks",
   "idle connections to a later host replaced once an earlier host was back (several hosts, sequential)"},
}

-- per host of the engine's URL (engine:hosts()): name (after scoped_host_),
-- type, the hosts() field (a function: computed), help
local HOST_FAMILIES = {
  {"up", "gauge", function(h) return h.state == "up" and 1 or 0 end,
   "1 when the host may be tried, 0 while it is denied"},
  {"connects_total", "counter", "connects", "connections opened on the host"},
  {"failures_total", "counter", false,
   "failed connects and disconnects on the host, by error code (label code)"},
  {"denials_total", "counter", "denials", "times the host was denied"},
  {"failovers_total", "counter", "failovers", "connects that went to another host after this one failed"},
  {"open", "gauge", "open", "the pool's connections open to the host (idle and checked out)"},
  {"checked_out", "gauge", "checkedout", "the pool's connections to the host handed out now"},
  {"checked_in", "gauge", "idle", "the pool's idle connections to the host"},
  {"checkout_waits_total", "counter", "checkout_waits",
   "checkouts that ended on the host without an idle connection at hand"},
  {"checkout_wait_seconds_total", "counter", "checkout_wait", "time spent by those checkouts"},
  {"checkout_wait_seconds_max", "gauge", "checkout_wait_max", "the longest of those checkouts"},
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

-- host="h:port" ([h]:port for an IPv6 address); the same host twice in one
-- URL is told apart by " #2", " #3"
local function host_rows(e, engine_label)
  if type(e.hosts) ~= "function" then return {} end
  local list, seen = e:hosts(), {}
  local out = {}
  for i, h in ipairs(list) do
    local name = tostring(h.host)
    if name:find(":", 1, true) then name = "[" .. name .. "]" end
    name = name .. ":" .. tostring(h.port)
    seen[name] = (seen[name] or 0) + 1
    if seen[name] > 1 then name = name .. " #" .. seen[name] end
    out[i] = {label = engine_label .. ',host="' .. label_value(name) .. '"', info = h}
  end
  return out
end

--- prometheus(engine | {engine, ...}) -> the text exposition of every
--- engine's pool: gauges for its state, counters since it was made, and the
--- causal read and retry `counters` (scoped_causal_waits_total, ...,
--- scoped_retries_total, scoped_retries_exhausted_total), and per host of
--- its URL what `engine:hosts()` tells (scoped_host_up, ...,
--- scoped_host_failures_total by code), labelled host="h:port" as well.
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
    local label = 'engine="' .. label_value(name) .. '"'
    rows[#rows + 1] = {label = label, stats = e.pool:stats(),
                       counters = rawget(e, "_unit_counters") or fresh_counters(),
                       hosts = host_rows(e, label)}
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
  for _, f in ipairs(HOST_FAMILIES) do
    local metric = "scoped_host_" .. f[1]
    out[#out + 1] = "# HELP " .. metric .. " " .. f[4]
    out[#out + 1] = "# TYPE " .. metric .. " " .. f[2]
    for _, r in ipairs(rows) do
      for _, h in ipairs(r.hosts) do
        if f[3] == false then
          local codes = {}
          for code in pairs(h.info.failures or {}) do codes[#codes + 1] = code end
          table.sort(codes)
          for _, code in ipairs(codes) do
            out[#out + 1] = metric .. "{" .. h.label .. ',code="' .. code .. '"} '
              .. number(h.info.failures[code])
          end
        else
          local v = type(f[3]) == "function" and f[3](h.info) or h.info[f[3]]
          out[#out + 1] = metric .. "{" .. h.label .. "} " .. number(v or 0)
        end
      end
    end
  end
  out[#out + 1] = ""
  return table.concat(out, "\n")
end

return M
