-- LuaSQL (Debian's lua-sql-mysql) doing the benchmark workloads: what a Lua
-- program would use instead of scoped. No pool, no binds, strings only.
--
--   lua5.4|luajit bench/luasql_bench.lua SOCKET WORKLOAD N|serve
--
-- as bench/scoped_bench.lua (serve: for bench/interleave.py).
--
-- LuaSQL's connect() takes no socket argument: libmariadb falls back to the
-- MYSQL_UNIX_PORT environment variable, which this program checks it used.
local driver = require "luasql.mysql"
local clock = require "benchclock"
local benchlib = require "benchlib"
local now = clock.now

local sock, workload, n = arg[1], arg[2], tonumber(arg[3])
local serving = arg[3] == "serve"
assert(sock and workload and (n or serving), "usage: luasql_bench.lua SOCKET WORKLOAD N|serve")
assert(os.getenv("MYSQL_UNIX_PORT") == sock, "run with MYSQL_UNIX_PORT=" .. sock)

local function result(v, fmt) io.write(string.format("RESULT " .. (fmt or "%.3f") .. "\n", v)) end
local function extra(k, v) io.write(string.format("EXTRA %s %.3f\n", k, v)) end

local env = assert(driver.mysql())
local function connect()
  local conn = assert(env:connect("scoped_test", "root"))
  assert(conn:execute("SET NAMES utf8mb4"))
  local cur = assert(conn:execute("SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()"))
  local host = cur:fetch()
  cur:close()
  assert(host == "localhost", "not on the unix socket: " .. tostring(host))
  conn:setautocommit(false) -- as scoped's pooled connections and DB-API
  return conn
end

local W = {}
-- w2, w2s, w3, w4one, w4batch: SLICED[w]() -> slice(n) -> ops [, after()],
-- as in bench/scoped_bench.lua
local SLICED = {}

local function select1(conn)
  local cur = assert(conn:execute("SELECT 1"))
  local v = cur:fetch()
  cur:close()
  return v
end

function SLICED.w2()
  local conn = connect()
  return function(k)
    for _ = 1, k do select1(conn) end
    return k
  end
end

-- W2s: no sessions in LuaSQL: the same two statements on one connection
local function request(conn)
  select1(conn)
  conn:commit()
end

function SLICED.w2s()
  local conn = connect()
  return function(k)
    for _ = 1, k do request(conn) end
    return k
  end
end

local function counters(mon)
  local c = {}
  local cur = assert(mon:execute("SHOW GLOBAL STATUS WHERE Variable_name IN " ..
    "('Questions','Com_select','Com_commit','Com_rollback')"))
  local k, v = cur:fetch()
  while k do
    c[k:lower()] = tonumber(v)
    k, v = cur:fetch()
  end
  cur:close()
  return c
end

function W.w2s_count()
  local conn = connect()
  request(conn)
  local mon = connect()
  local a = counters(mon)
  local b = counters(mon)
  for _ = 1, n do request(conn) end
  local c = counters(mon)
  result(((c.questions - b.questions) - (b.questions - a.questions)) / n, "%.2f")
  extra("select", (c.com_select - b.com_select) / n)
  extra("commit", (c.com_commit - b.com_commit) / n)
  extra("rollback", (c.com_rollback - b.com_rollback) / n)
end

-- W3: rows as LuaSQL gives them (every value a string; NULL is nil)
local W3_SQL = "SELECT id, name, score, big, created, note FROM bench_rows"
local function w3_once(conn)
  local cur = assert(conn:execute(W3_SQL))
  local rows, nrows = {}, 0
  local row = cur:fetch({}, "n")
  while row do
    nrows = nrows + 1
    rows[nrows] = row
    row = cur:fetch({}, "n")
  end
  cur:close()
  local bytes = 0
  for i = 1, nrows do
    local r = rows[i]
    local id, name, score, big, created, note = r[1], r[2], r[3], r[4], r[5], r[6]
    bytes = bytes + #id + #name + #score + #big + #created
    if note then bytes = bytes + #note else bytes = bytes + 1 end
  end
  conn:commit()
  return nrows
end

function SLICED.w3()
  local conn = connect()
  return function(k)
    local rows = 0
    for _ = 1, k do rows = rows + w3_once(conn) end
    return rows
  end
end

-- W3 with LuaSQL's documented idiom (its manual: "reuse the same table"):
-- one row table, refilled by every cur:fetch(row, "n"), each row's cells
-- touched as it comes; what W3 streamed compares scoped's stream_results to
local function w3reuse_once(conn)
  local cur = assert(conn:execute(W3_SQL))
  local nrows, bytes = 0, 0
  local row = cur:fetch({}, "n")
  while row do
    nrows = nrows + 1
    local id, name, score, big, created, note = row[1], row[2], row[3], row[4], row[5], row[6]
    bytes = bytes + #id + #name + #score + #big + #created
    if note then bytes = bytes + #note else bytes = bytes + 1 end
    row = cur:fetch(row, "n")
  end
  cur:close()
  conn:commit()
  return nrows
end

function SLICED.w3stream()
  local conn = connect()
  return function(k)
    local rows = 0
    for _ = 1, k do rows = rows + w3reuse_once(conn) end
    return rows
  end
end

local function truncate(conn)
  assert(conn:execute("TRUNCATE TABLE bench_ins"))
  conn:commit()
end

-- W4: the statement built with conn:escape, the usual LuaSQL idiom; one
-- transaction per slice
function SLICED.w4one()
  local conn = connect()
  truncate(conn)
  return function(k)
    for i = 1, k do
      assert(conn:execute(string.format("INSERT INTO bench_ins (a, b) VALUES (%d, '%s')",
        i, conn:escape("name-" .. i))))
    end
    conn:commit()
    return k
  end, function() truncate(conn) end
end

function SLICED.w4batch()
  local conn = connect()
  truncate(conn)
  return function(k)
    local parts = {}
    for i = 1, k do
      parts[i] = string.format("(%d,'%s')", i, conn:escape("name-" .. i))
    end
    assert(conn:execute("INSERT INTO bench_ins (a, b) VALUES " .. table.concat(parts, ",")))
    conn:commit()
    return k
  end, function() truncate(conn) end
end

if SLICED[workload] then
  local slice, after = SLICED[workload]()
  benchlib.run_sliced(workload, slice, after, {now = now, n = n, serving = serving, warm = true})
end
local f = W[workload]
if not f or serving then
  io.stderr:write("luasql_bench.lua: unknown workload " .. tostring(workload) .. "\n")
  os.exit(2)
end
f()
