-- scoped's side of the benchmarks (Lua 5.4 and LuaJIT alike).
--
--   lua5.4|luajit bench/scoped_bench.lua SOCKET WORKLOAD N
--   lua5.4|luajit bench/scoped_bench.lua SOCKET WORKLOAD serve
--
-- The first form prints "RESULT <figure>" and maybe "EXTRA <name> <value>"
-- lines; the second serves bench/interleave.py (w2, w2s, w3, w4one, w4batch:
-- READY, then one "SLICE <seconds> <ops>" per "<n>" line read). See
-- bench/README.md for what each workload does. Needs LUA_PATH/LUA_CPATH to
-- find scoped, scoped.core, benchclock and bench/benchlib.lua (bench/run.sh
-- sets them).
-- BENCH_PAD=n (bench/profile.sh): n small tables kept alive from the start.
-- On Lua 5.4, where Lua's objects come from malloc, the heap's layout alone
-- moves a statement's instruction count by up to 2,500 (whether libmariadb's
-- per-result block finds fastbins to consolidate, where the collector's steps
-- fall): comparing two builds at a single layout can show a difference
-- neither's code makes. Compare them at several pads.
local pad = {}
for i = 1, tonumber(os.getenv("BENCH_PAD") or "0") do pad[i] = {i} end

local scoped = require "scoped"
local clock = require "benchclock"
local benchlib = require "benchlib"
local now = clock.now

local sock, workload, n = arg[1], arg[2], tonumber(arg[3])
local serving = arg[3] == "serve"
assert(sock and workload and (n or serving), "usage: scoped_bench.lua SOCKET WORKLOAD N|serve")
local URL = "mysql://root@/scoped_test?unix_socket=" .. sock
local null = scoped.null
-- BENCH_NOWARM=1 (bench/profile.sh): no warm-up loops, so that two runs of
-- different n differ by exactly the timed iterations
local WARM = os.getenv("BENCH_NOWARM") == nil
local function warmups() return WARM and math.floor(n / 10) + 100 or 0 end

local function result(v, fmt) io.write(string.format("RESULT " .. (fmt or "%.3f") .. "\n", v)) end
local function extra(k, v) io.write(string.format("EXTRA %s %.3f\n", k, v)) end

local W = {}

-- W1: checkout + checkin, no statement
function W.w1()
  local engine = scoped.create_engine(URL)
  for _ = 1, warmups() do local c = engine:connect(); c:close() end
  local t0 = now()
  for _ = 1, n do
    local c = engine:connect()
    c:close()
  end
  result((now() - t0) * 1e6 / n)
end

-- The workloads measured against raw C (w2, w2s, w3, w4one, w4batch) are
-- written as SLICED[w]() -> slice(n) -> ops [, after()]: a slice
-- runs n iterations (timed by the caller) and returns what the figure counts;
-- after() is the untimed clean-up. Run once (N) or served (interleave.py).
local SLICED = {}

-- W2: SELECT 1 and fetch on a held connection
function SLICED.w2()
  local engine = scoped.create_engine(URL)
  local conn = engine:connect()
  return function(k)
    for _ = 1, k do conn:execute("SELECT 1"):all() end
    return k
  end
end

-- w2wait (bench/profile.sh only): W2 with a statement that keeps the server
-- busy for 1 ms, so that every statement finds no reply at its first read
-- and waits exactly once (blocking: one poll(2); w2wait_cqueues/_luv: one
-- io_wait), however slowly valgrind runs the client. W2's waits depend on
-- scheduling; these give the cost of one waited statement.
local W2WAIT_SQL = "SELECT SLEEP(0.001)"
function SLICED.w2wait()
  local engine = scoped.create_engine(URL)
  local conn = engine:connect()
  return function(k)
    for _ = 1, k do conn:execute(W2WAIT_SQL):all() end
    return k
  end
end

local function w2s_setup()
  local engine = scoped.create_engine(URL)
  local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
  return engine, Session
end

-- W2s: the seed's request
function SLICED.w2s()
  local _, Session = w2s_setup()
  local function request()
    Session()
    Session:execute("SELECT 1"):all()
    Session:commit()
    Session:remove()
  end
  return function(k)
    for _ = 1, k do request() end
    return k
  end
end

-- W2s in layers, for bench/profile.sh (what each layer of the seed request
-- costs): w2s_core is the request as the C calls a plain engine's session
-- makes (checkout, execute, all, COMMIT and back to the pool), w2s_session
-- the same through a sessionmaker's Session without scoped_session.
function SLICED.w2s_core()
  local engine = scoped.create_engine(URL)
  local core = require "scoped.core"
  local checkout, execute, finish = core.pool_methods.checkout_spare, core.conn_methods.execute,
    core.conn_methods.finish
  local cpool = engine._cpool
  return function(k)
    for _ = 1, k do
      local raw = checkout(cpool)
      execute(raw, "SELECT 1"):all()
      finish(raw, true, true)
    end
    return k
  end
end

function SLICED.w2s_session()
  local engine = scoped.create_engine(URL)
  local Factory = scoped.sessionmaker{bind = engine}
  return function(k)
    for _ = 1, k do
      local s = Factory()
      s:execute("SELECT 1"):all()
      s:commit()
      s:close()
    end
    return k
  end
end

-- W2 and W2s with io_wait (issue 19): the same loops run inside a coroutine
-- of an event loop, the engine made with scoped.nonblocking's adapter, so
-- that every statement, COMMIT and checkin waits through io_wait (a poll of
-- the socket) instead of blocking. w2_cqueues, w2_luv, w2s_cqueues,
-- w2s_luv: one coroutine, what the non-blocking path costs a statement;
-- w2s_cqueues4, w2s_luv4: the slice's requests shared by 4 coroutines on a
-- pool of 4, whose waits overlap. The connections are opened before the
-- first slice (warm-up), so a slice only runs statements.
--
-- LOOPS[name]() -> run(f, m): runs f(i) in m coroutines (i = 1..m) of a
-- fresh pass of the loop and returns when all are done
local LOOPS = {}
function LOOPS.cqueues()
  local cqueues = require "cqueues"
  local cq = cqueues.new()
  return function(f, m)
    for i = 1, m do cq:wrap(f, i) end
    assert(cq:loop())
  end
end

function LOOPS.luv()
  local uv = require "luv"
  return function(f, m)
    local err
    for i = 1, m do
      local t = uv.new_timer()
      t:start(0, 0, function()
        t:close()
        local co = coroutine.create(function()
          local ok, e = pcall(f, i)
          if not ok then err = err or e end
        end)
        local ok, e = coroutine.resume(co)
        if not ok then err = err or e end
      end)
    end
    uv.run()
    if err then error(err, 0) end
  end
end

-- io_wait calls (each one poll of the socket: the statement found no reply
-- yet), counted for the one timed run's EXTRA lines (bench/profile.sh)
local waits = 0
local function counting(opts)
  local io_wait = opts.io_wait
  opts.io_wait = function(raw, fd, events, timeout)
    waits = waits + 1
    return io_wait(raw, fd, events, timeout)
  end
  return opts
end
local COUNTERS = {}

local nonblocking = scoped.nonblocking
for _, loop in ipairs({"cqueues", "luv"}) do
  local function w2_nb(sql)
    return function()
      local run = LOOPS[loop]()
      local engine = scoped.create_engine(URL, counting(nonblocking[loop]()))
      local conn = engine:connect()
      return function(k)
        run(function()
          for _ = 1, k do conn:execute(sql):all() end
        end, 1)
        return k
      end
    end
  end
  SLICED["w2_" .. loop] = w2_nb("SELECT 1")
  SLICED["w2wait_" .. loop] = w2_nb(W2WAIT_SQL)

  local function w2s_nb(m)
    return function()
      local run = LOOPS[loop]()
      local engine = scoped.create_engine(URL, counting(nonblocking[loop]({pool_size = m, max_overflow = 0})))
      local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
      local function request()
        Session()
        Session:execute("SELECT 1"):all()
        Session:commit()
        Session:remove()
      end
      -- open the pool's connections now: m coroutines at once, each
      -- checking out while the others wait for the server
      run(request, m)
      return function(k)
        -- k requests in all: coroutine i runs its share
        run(function(i)
          for _ = 1, math.floor(k / m) + (i <= k % m and 1 or 0) do request() end
        end, m)
        return k
      end
    end
  end
  SLICED["w2s_" .. loop] = w2s_nb(1)
  SLICED["w2s_" .. loop .. "4"] = w2s_nb(4)
  for _, w in ipairs({"w2_", "w2wait_", "w2s_"}) do
    COUNTERS[w .. loop] = function() return {io_waits = waits} end
  end
  COUNTERS["w2s_" .. loop .. "4"] = COUNTERS["w2s_" .. loop]

  -- iowait_cqueues, iowait_luv (bench/profile.sh only): the adapter's
  -- io_wait alone, no statement: one wait per op on a socket that is always
  -- readable (a cqueues socket pair with a byte never read, for both loops).
  -- What the event loop and the adapter cost a wait; the rest of a waited
  -- statement's extra (w2wait_cqueues less w2wait) is scoped's.
  SLICED["iowait_" .. loop] = function()
    local run = LOOPS[loop]()
    local a, b = require("cqueues.socket").pair()
    assert(b:write("x")); assert(b:flush())
    local fd = a:pollfd()
    local io_wait = nonblocking[loop]().io_wait
    return function(k)
      run(function()
        for _ = 1, k do assert(io_wait(nil, fd, "r", nil)) end
      end, 1)
      return k, a, b -- (the pair kept alive: collected, it would close fd)
    end
  end
end

-- statements per W2s request, counted by the server (global status deltas
-- read on a connection of our own)
local function counters(mon)
  local c = {}
  for _, row in ipairs(mon:execute("SHOW GLOBAL STATUS WHERE Variable_name IN " ..
      "('Questions','Com_select','Com_commit','Com_rollback')"):all()) do
    c[row[1]:lower()] = tonumber(row[2])
  end
  return c
end

function W.w2s_count()
  local _, Session = w2s_setup()
  local function request()
    Session()
    Session:execute("SELECT 1"):all()
    Session:commit()
    Session:remove()
  end
  request()
  local mon = scoped.raw_connect(URL)
  local a = counters(mon)
  local b = counters(mon)
  for _ = 1, n do request() end
  local c = counters(mon)
  result(((c.questions - b.questions) - (b.questions - a.questions)) / n, "%.2f")
  extra("select", (c.com_select - b.com_select) / n)
  extra("commit", (c.com_commit - b.com_commit) / n)
  extra("rollback", (c.com_rollback - b.com_rollback) / n)
  mon:close()
end

-- W3: 100,000 rows x 6 columns into Lua rows, every cell touched
local W3_SQL = "SELECT id, name, score, big, created, note FROM bench_rows"
local function w3_once(conn)
  local count = benchlib.touch_w3(conn:execute(W3_SQL):all(), null)
  conn:commit()
  return count
end

function SLICED.w3()
  local engine = scoped.create_engine(URL)
  local conn = engine:connect()
  return function(k)
    local rows = 0
    for _ = 1, k do rows = rows + w3_once(conn) end
    return rows
  end
end

-- W3 streamed (issue 20): the same rows read with stream_results, one row
-- at a time off the connection (iter()), every cell touched as in W3
local function w3stream_once(conn)
  local isum, dsum, bytes, count = 0, 0.0, 0, 0
  for r in conn:execute(W3_SQL):iter() do
    local id, name, score, big, created, note = r[1], r[2], r[3], r[4], r[5], r[6]
    isum = isum + id + big
    dsum = dsum + score
    bytes = bytes + #name + #created
    if note ~= null then bytes = bytes + #note else bytes = bytes + 1 end
    count = count + 1
  end
  conn:commit()
  return count
end

function SLICED.w3stream()
  local engine = scoped.create_engine(URL)
  local conn = engine:connect():execution_options{stream_results = true}
  return function(k)
    local rows = 0
    for _ = 1, k do rows = rows + w3stream_once(conn) end
    return rows
  end
end

local function truncate(conn)
  conn:execute("TRUNCATE TABLE bench_ins")
  conn:commit()
end

-- W4: single-row INSERTs with binds, one transaction per slice (the
-- systems share bench_ins: none may keep a transaction open on it between
-- its slices, or the next system's TRUNCATE would wait for it)
function SLICED.w4one()
  local engine = scoped.create_engine(URL)
  local conn = engine:connect()
  truncate(conn)
  return function(k)
    for i = 1, k do
      conn:execute("INSERT INTO bench_ins (a, b) VALUES (:a, :b)", {a = i, b = "name-" .. i})
    end
    conn:commit()
    return k
  end, function() truncate(conn) end
end

-- W4 batch: executemany with the same :name statement and list of rows as
-- SQLAlchemy's (scoped rewrites it into multi-row INSERTs, as mysqlclient
-- does).
local function w4multi_run(conn, k)
  local params = {}
  for i = 1, k do
    params[2 * i - 1] = i
    params[2 * i] = "name-" .. i
  end
  local sql = "INSERT INTO bench_ins (a, b) VALUES " .. string.rep("(?,?)", k, ",")
  conn:execute(sql, params)
end

function SLICED.w4batch()
  local engine = scoped.create_engine(URL)
  local conn = engine:connect()
  truncate(conn)
  assert(conn.executemany, "this tree has no executemany")
  return function(k)
    local rows = {}
    for i = 1, k do rows[i] = {a = i, b = "name-" .. i} end
    conn:executemany("INSERT INTO bench_ins (a, b) VALUES (:a, :b)", rows)
    conn:commit()
    return k
  end, function() truncate(conn) end
end

-- W4 multi: the statement built by hand, n (?,?) groups and a flat array of
-- 2n binds through conn:execute (what a program without executemany does)
function W.w4multi()
  local engine = scoped.create_engine(URL)
  local conn = engine:connect()
  truncate(conn)
  local t0 = now()
  w4multi_run(conn, n)
  conn:commit()
  result(n / (now() - t0), "%.0f")
  truncate(conn)
  conn:close()
end

-- Session() on an existing scope, and what the proxy adds to a call, in ns
function W.lookup()
  local _, Session = w2s_setup()
  local s = Session()
  local function loop_empty()
    local t0 = now()
    for _ = 1, n do end
    return now() - t0
  end
  local function loop_lookup()
    local t0 = now()
    for _ = 1, n do Session() end
    return now() - t0
  end
  local function loop_direct()
    local t0 = now()
    for _ = 1, n do s:get_bind() end
    return now() - t0
  end
  local function loop_proxied()
    local t0 = now()
    for _ = 1, n do Session:get_bind() end
    return now() - t0
  end
  -- best of 3 for each: the least disturbed run
  local function best(f)
    local b = math.huge
    for _ = 1, 3 do local t = f(); if t < b then b = t end end
    return b
  end
  local empty = best(loop_empty)
  local lookup = best(loop_lookup)
  local direct = best(loop_direct)
  local proxied = best(loop_proxied)
  result((lookup - empty) * 1e9 / n, "%.1f")
  extra("proxy_overhead_ns", (proxied - direct) * 1e9 / n)
  extra("direct_call_ns", (direct - empty) * 1e9 / n)
  Session:remove()
end

-- W5 (one Lua state): 200 coroutines running W2s on a pool of 4 with
-- pool_wait. Each yields once while holding its connection (as an OpenResty
-- handler would on I/O): with blocking statements and no yield, nothing
-- would ever wait. p99 wait: Session:connection() (the checkout) per request.
function W.w5co()
  local NCO = 200
  local per = math.max(1, math.floor(n / NCO))
  local engine = scoped.create_engine(URL, {
    pool_size = 4, max_overflow = 0, pool_timeout = 60,
    pool_wait = function() coroutine.yield() end,
  })
  local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
  local waits, nw = {}, 0
  local function worker()
    for _ = 1, per do
      local t0 = now()
      Session()
      Session:connection()
      local t1 = now()
      Session:execute("SELECT 1"):all()
      coroutine.yield()
      Session:commit()
      Session:remove()
      nw = nw + 1
      waits[nw] = t1 - t0
    end
  end
  local function run_all()
    local cos = {}
    for i = 1, NCO do cos[i] = coroutine.create(worker) end
    local live = NCO
    while live > 0 do
      live = 0
      for i = 1, NCO do
        local co = cos[i]
        if coroutine.status(co) == "suspended" then
          local ok, err = coroutine.resume(co)
          if not ok then error(err) end
          if coroutine.status(co) ~= "dead" then live = live + 1 end
        end
      end
    end
  end
  -- warm: open the 4 connections
  local saved = per
  per = 1
  run_all()
  per, waits, nw = saved, {}, 0
  local t0 = now()
  run_all()
  local dt = now() - t0
  table.sort(waits)
  result(nw / dt, "%.0f")
  extra("p50_wait_us", waits[math.max(1, math.floor(nw * 0.50))] * 1e6)
  extra("p99_wait_us", waits[math.max(1, math.floor(nw * 0.99))] * 1e6)
end

if SLICED[workload] then
  local slice, after = SLICED[workload]()
  benchlib.run_sliced(workload, slice, after,
    {now = now, n = n, serving = serving, warm = WARM, counters = COUNTERS[workload]})
end
local f = W[workload]
if not f or serving then
  io.stderr:write("scoped_bench.lua: unknown workload " .. tostring(workload) ..
    (serving and " (or no serve mode)" or "") .. "\n")
  os.exit(2)
end
f()
