-- examples/openresty/app.lua: a small JSON API over scoped in OpenResty.
-- See nginx.conf next to it for the wiring, README.md ("OpenResty") for why.
--
--   GET  /items             -> [{"id":1,"name":"a","note":null}, ...]
--   POST /items {"name":..} -> {"id":..,"name":..,"connection":..}   (409 on a duplicate)
--   GET  /status            -> this worker's pool
--   GET  /metrics           -> the same in Prometheus' text format
local scoped = require "scoped"
local cjson = require "cjson.safe"

local M = {}

local engine, Session

--- init_by_lua: runs once in the master, before fork. create_engine opens
--- nothing, so no socket is shared by the workers; each worker's pool
--- starts empty (the pool is fork-safe).
function M.init(url, opts)
  assert(url, "set SCOPED_DATABASE_URL (and `env SCOPED_DATABASE_URL;` in nginx.conf)")
  engine = scoped.create_engine(url, opts or {
    -- per worker: the server sees up to workers * (pool_size + max_overflow)
    pool_size = 5, max_overflow = 5, pool_timeout = 10,
  })
  -- the default scope is the running coroutine: one session per handler
  -- (and per ngx.thread); scoped.scopes.ngx_request would share one per request
  Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
  M.engine, M.Session = engine, Session
end

--- init_worker_by_lua: the table, from a timer (timers may wait for a
--- connection; init_worker itself cannot).
function M.init_worker()
  ngx.timer.at(0, function(premature)
    if premature then return end
    local ok, err = pcall(function()
      Session:execute([[CREATE TABLE IF NOT EXISTS items (
        id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL UNIQUE, note TEXT NULL)]])
      Session:commit()
    end)
    Session:remove() -- a timer is a scope of its own: end it like a request
    if not ok then ngx.log(ngx.ERR, "items table: ", tostring(err)) end
  end)
end

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(body))
end

local function list()
  local rows = Session:execute("SELECT id, name, note FROM items ORDER BY id"):mappings():all()
  -- a NULL note is scoped.null, which is ngx.null and cjson.null: JSON null
  return 200, rows
end

local function create()
  ngx.req.read_body()
  local body = cjson.decode(ngx.req.get_body_data() or "")
  if type(body) ~= "table" or type(body.name) ~= "string" then
    return 400, {error = "send {\"name\": \"...\"}"}
  end
  local res = Session:execute("INSERT INTO items (name, note) VALUES (:name, :note)",
    {name = body.name, note = body.note or scoped.null})
  local id = res.lastrowid
  local conn_id = Session:scalar("SELECT CONNECTION_ID()")
  Session:commit()
  return 201, {id = id, name = body.name, connection = conn_id}
end

--- content_by_lua: one transaction per request; the session is removed
--- (rolled back if still open, connection back to the pool) whatever happens.
function M.items()
  local ok, status, body = pcall(ngx.req.get_method() == "POST" and create or list)
  Session:remove()
  if ok then return reply(status, body) end
  local err = status
  if scoped.exc.is(err, "IntegrityError") then
    return reply(409, {error = err.message})
  elseif scoped.exc.is(err, "TimeoutError") then
    return reply(503, {error = "database busy"})
  end
  ngx.log(ngx.ERR, tostring(err))
  return reply(500, {error = "internal error"})
end

--- log_by_lua: the safety net. Runs after every coroutine of the request is
--- done; closes whatever session a handler left open (an early ngx.exit,
--- an error before remove()). Cheap when there is nothing left.
function M.teardown()
  Session:remove()
end

function M.status()
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode({pid = ngx.worker.pid(), pool = engine.pool:status(), stats = engine.pool:stats()}))
end

function M.metrics()
  ngx.header["Content-Type"] = "text/plain; version=0.0.4"
  ngx.print(scoped.metrics.prometheus(engine))
end

return M
