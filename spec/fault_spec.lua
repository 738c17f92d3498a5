-- Faults against the throwaway server: restarts under a workload of many
-- coroutines, KILLed connections, idle timeouts, dead addresses, deadlocks
-- and lock waits, statement and read timeouts. After each, a ledger table
-- is checked: every committed row present exactly once, no uncommitted row.
--
-- SCOPED_SOAK=1 (make soak) runs the long variants: more coroutines, more
-- transactions, more restarts.
local scoped = require "scoped"
local core = require "scoped.core"
local H = require "helper"
local server = require "support.server"
local proc = require "support.proc"

local SOAK = os.getenv("SCOPED_SOAK") == "1"
local function n(short, long) return SOAK and long or short end

local function now() return core.monotonic() end

local function with_server(f) return server.available and f or pending end

-- ---- the ledger ---------------------------------------------------------------

local Ledger = {}
Ledger.__index = Ledger

local function ledger(fault)
  return setmetatable({fault = fault, committed = {}, lost = {}, ncommitted = 0}, Ledger)
end

function Ledger:insert(s, tag)
  s:execute("INSERT INTO fault_ledger (fault, tag) VALUES (:f, :t)", {f = self.fault, t = tag})
end

function Ledger:commit(tags)
  for _, t in ipairs(tags) do
    self.committed[t] = true
    self.ncommitted = self.ncommitted + 1
  end
end

function Ledger:lose(tags)
  for _, t in ipairs(tags) do self.lost[t] = true end
end

--- Every committed row present exactly once, no uncommitted one, nothing else.
function Ledger:check()
  local c = scoped.raw_connect(H.url)
  local rows = c:execute("SELECT tag, COUNT(*) AS n FROM fault_ledger WHERE fault = :f GROUP BY tag",
    {f = self.fault}):all()
  c:close()
  local seen, problems = {}, {}
  local function problem(fmt, ...)
    if #problems < 10 then problems[#problems + 1] = string.format(fmt, ...) end
  end
  for _, r in ipairs(rows) do seen[r.tag] = r.n end
  for t in pairs(self.committed) do
    if seen[t] ~= 1 then problem("committed row %s present %d times", t, seen[t] or 0) end
  end
  for t in pairs(self.lost) do
    if seen[t] then problem("row %s of a transaction that failed is present", t) end
  end
  for t in pairs(seen) do
    if not self.committed[t] and not self.lost[t] then problem("row %s was never written", t) end
  end
  assert.same({}, problems)
  return self.ncommitted
end

-- ---- a round-robin scheduler of coroutines ----------------------------------------

-- Runs the coroutines to the end; between(round) runs after each round, at
-- a moment when every coroutine is suspended (no statement in flight).
local function run(threads, between)
  local crashed, round, alive = {}, 0, true
  while alive do
    alive = false
    round = round + 1
    for i, co in ipairs(threads) do
      if coroutine.status(co) == "suspended" then
        local ok, err = coroutine.resume(co)
        if not ok then crashed[#crashed + 1] = ("coroutine %d: %s"):format(i, tostring(err)) end
        if coroutine.status(co) == "suspended" then alive = true end
      end
    end
    if between then between(round) end
  end
  assert.same({}, crashed)
  return round
end

-- A worker: ntx transactions of two rows each, yielding between the two
-- inserts (a fault may strike mid-transaction) and after each transaction.
-- A failed transaction is rolled back and the worker goes on with the same
-- session.
local function worker(i, Session, led, st, ntx)
  return coroutine.create(function()
    local s = Session()
    for j = 1, ntx do
      local tags = {("w%d-%d-a"):format(i, j), ("w%d-%d-b"):format(i, j)}
      local ok, err = pcall(function()
        led:insert(s, tags[1])
        st.holding[i] = true
        coroutine.yield()
        led:insert(s, tags[2])
        s:commit()
      end)
      st.holding[i] = false
      if ok then
        led:commit(tags)
        st.ok = st.ok + 1
      else
        led:lose(tags)
        st.errors[#st.errors + 1] = {worker = i, tx = j, err = err, held = st.held_at_fault[i]}
        local rok, rerr = pcall(s.rollback, s)
        assert(rok, "rollback() after the error failed: " .. tostring(rerr))
      end
      st.last[i] = ok
      coroutine.yield()
    end
  end)
end

local function new_state() return {holding = {}, held_at_fault = {}, errors = {}, ok = 0, last = {}} end

local function fault_engine(opts)
  opts.pool_wait = function() coroutine.yield() end
  opts.pool_timeout = opts.pool_timeout or 60
  return scoped.create_engine(H.url, opts)
end

-- The pool is not wedged: nothing checked out, nothing over the limits, and
-- as many connections as the pool allows can be checked out and used at once.
local function assert_pool_healthy(e, size, overflow)
  assert.equal(0, e.pool:checkedout())
  local st = e.pool:stats()
  assert.is_true(st.open <= size + overflow, "open " .. st.open)
  assert.equal(0, st.waiting)
  local conns = {}
  for k = 1, size + overflow do
    conns[k] = e:connect()
    assert.equal(1, conns[k]:scalar("SELECT 1"))
  end
  for _, c in ipairs(conns) do c:close() end
  assert.equal(0, e.pool:checkedout())
end

local function assert_disconnect(err, what)
  assert.equal("table", type(err), what .. ": " .. tostring(err))
  assert.equal("OperationalError", err.kind, what .. ": " .. tostring(err))
  assert.is_true(err.connection_invalidated, what .. ": " .. tostring(err))
end

describe("faults", function()
  setup(function()
    local c = H.raw()
    c:execute("DROP TABLE IF EXISTS fault_ledger")
    c:execute("CREATE TABLE fault_ledger (seq BIGINT AUTO_INCREMENT PRIMARY KEY, " ..
      "fault VARCHAR(40) NOT NULL, tag VARCHAR(64) NOT NULL, KEY (fault, tag)) ENGINE=InnoDB")
    c:close()
  end)
  teardown(function()
    if server.available and not server.up() then server.start() end
    H.forget_observer()
    local c = H.raw()
    c:execute("DROP TABLE IF EXISTS fault_ledger")
    c:execute("DROP TABLE IF EXISTS fault_lock")
    c:close()
  end)
  after_each(function()
    -- whatever happened, the server is up again for the rest of the suite
    if server.available and not server.up() then server.start() end
    collectgarbage(); collectgarbage()
  end)

  -- ---- server restarts ---------------------------------------------------------

  local function restart_workload(pre_ping, sig, label)
    local size, overflow = 4, 2
    local e = fault_engine({pool_size = size, max_overflow = overflow, pool_pre_ping = pre_ping})
    local Session = scoped.sessionmaker{bind = e}
    local led = ledger(label)
    local st = new_state()
    local nworkers, ntx = n(12, 50), n(8, 60)
    -- at the end of an even round half the workers hold a connection
    -- mid-transaction; at the end of an odd one the connections are handed
    -- to waiting tickets (or idle): faults at both kinds of moment
    local restarts = {[2] = true, [5] = true}
    if SOAK then for r = 30, 130, 25 do restarts[r] = true; restarts[r + 3] = true end end
    local stale_total, nrestarts = 0, 0
    for _ in pairs(restarts) do nrestarts = nrestarts + 1 end
    local threads = {}
    for i = 1, nworkers do threads[i] = worker(i, Session, led, st, ntx) end
    run(threads, function(round)
      if not restarts[round] then return end
      -- the fault strikes between statements: some coroutines hold a
      -- connection mid-transaction, the pool holds others idle
      st.held_at_fault = {}
      for i, h in pairs(st.holding) do st.held_at_fault[i] = h end
      stale_total = stale_total + e.pool:stats().open
      server.restart(sig)
      H.forget_observer()
    end)
    -- the workload went on to the end with no manual step
    assert.equal(nworkers * ntx, st.ok + #st.errors)
    assert.is_true(st.ok > 0)
    local per_worker = {}
    for _, x in ipairs(st.errors) do
      assert_disconnect(x.err, label)
      if pre_ping then
        -- only a transaction that held a connection when the server went
        -- away can fail: every checkout after it pings and gets a new one
        assert.is_true(x.held, "worker " .. x.worker .. " failed without holding a connection")
      end
      per_worker[x.worker] = (per_worker[x.worker] or 0) + 1
    end
    -- each stale connection fails its first use only; after that error
    -- the worker's next checkout works
    assert.is_true(#st.errors <= stale_total, #st.errors .. " errors for " .. stale_total .. " stale connections")
    for w, k in pairs(per_worker) do
      assert.is_true(k <= nrestarts, "worker " .. w .. " failed " .. k .. " times")
    end
    for i = 1, nworkers do assert.is_true(st.last[i], "worker " .. i .. "'s last transaction failed") end
    assert_pool_healthy(e, size, overflow)
    assert.equal(2 * st.ok, led:check())
    io.write(("# %s: %d transactions committed, %d failed, %d connections open at the faults\n")
      :format(label, st.ok, #st.errors, stale_total))
    e:dispose()
    return st
  end

  it("server restarted mid-workload, with pool_pre_ping: the workload goes on, only the transactions " ..
     "caught in flight fail, nothing is lost", with_server(function()
    local st = restart_workload(true, "TERM", "restart-preping")
    assert.is_true(#st.errors >= 1) -- the fault at an even round caught some in flight
  end))

  it("server restarted mid-workload, without pre-ping: each stale connection's first use raises " ..
     "OperationalError with connection_invalidated, the next checkout works", with_server(function()
    local st = restart_workload(false, "TERM", "restart-noping")
    assert.is_true(#st.errors >= 1)
  end))

  it("after a restart without pre-ping, the first disconnect invalidates the pool: the next checkout " ..
     "opens a fresh connection, and connections held across the restart fail once each", with_server(function()
    local e = scoped.create_engine(H.url, {pool_size = 3, max_overflow = 2})
    local idle = {e:connect(), e:connect(), e:connect()}
    for _, c in ipairs(idle) do c:scalar("SELECT 1") end
    local held = {e:connect(), e:connect()}
    for _, c in ipairs(held) do c:scalar("SELECT 1") end
    for _, c in ipairs(idle) do c:close() end
    assert.equal(3, e.pool:checkedin())
    server.restart("TERM")
    H.forget_observer()
    local c = e:connect() -- a stale one: its first use fails
    assert_disconnect(H.error_of(c.scalar, c, "SELECT 1"), "stale idle connection")
    c:close()
    assert.equal(0, e.pool:checkedin()) -- the other idle ones were closed with it
    c = e:connect() -- the next checkout works
    assert.equal(1, c:scalar("SELECT 1"))
    c:close()
    for _, h in ipairs(held) do
      assert_disconnect(H.error_of(h.scalar, h, "SELECT 1"), "connection held across the restart")
      h:rollback()
      assert.equal(1, h:scalar("SELECT 1")) -- after rollback() it gets a new one
      h:close()
    end
    assert_pool_healthy(e, 3, 2)
    e:dispose()
  end))

  it("server crashed (KILL -9) and restarted mid-workload: committed rows survive, " ..
     "uncommitted ones are gone", with_server(function()
    restart_workload(true, "KILL", "crash-preping")
  end))

  it("server down for a while under the workload: OperationalError while it is down, " ..
     "no slot lost, the workload resumes when it is back", with_server(function()
    local size, overflow = 3, 1
    local e = fault_engine({pool_size = size, max_overflow = overflow, pool_pre_ping = true,
      connect_args = {connect_timeout = 2}})
    local Session = scoped.sessionmaker{bind = e}
    local led = ledger("down")
    local st = new_state()
    local threads = {}
    local nworkers = n(8, 30)
    for i = 1, nworkers do threads[i] = worker(i, Session, led, st, n(10, 40)) end
    local down_at = 4
    run(threads, function(round)
      if round == down_at then server.stop("TERM") end
      if round == down_at + 4 then server.start(); H.forget_observer() end
    end)
    assert.is_true(#st.errors > 0)
    for _, x in ipairs(st.errors) do
      assert.equal("OperationalError", x.err.kind, tostring(x.err))
    end
    for i = 1, nworkers do assert.is_true(st.last[i], "worker " .. i .. "'s last transaction failed") end
    assert_pool_healthy(e, size, overflow)
    assert.equal(2 * st.ok, led:check())
    e:dispose()
  end))

  -- ---- KILL ----------------------------------------------------------------------

  local function kill(id)
    H.observer():execute("KILL CONNECTION :id", {id = id})
    assert.is_true(H.connection_gone(id))
  end

  it("a session's connection KILLed mid-transaction: the error is raised, nothing of the transaction " ..
     "remains, the connection is discarded, the session works after rollback()", function()
    local e = scoped.create_engine(H.url, {pool_size = 2})
    local s = scoped.sessionmaker{bind = e}()
    local led = ledger("kill")
    local id = s:scalar("SELECT CONNECTION_ID()")
    led:insert(s, "k1")
    led:insert(s, "k2")
    kill(id)
    local err = H.error_of(s.execute, s, "INSERT INTO fault_ledger (fault, tag) VALUES ('kill', 'k3')")
    assert_disconnect(err, "KILL")
    -- SQLAlchemy's rule: no silent new connection inside the dead transaction
    assert.equal("PendingRollbackError", H.error_of(s.execute, s, "SELECT 1").kind)
    s:rollback()
    led:lose({"k1", "k2", "k3"})
    assert.equal(0, e.pool:checkedout())
    assert.equal(0, e.pool:checkedin()) -- discarded, not pooled
    local id2 = s:scalar("SELECT CONNECTION_ID()")
    assert.are_not.equal(id, id2)
    led:insert(s, "k4")
    s:commit()
    led:commit({"k4"})
    -- killed between statements, then commit(): the commit raises, nothing
    -- is committed, and the session refuses statements until rollback()
    -- (one now would run outside the transaction its caller believes in)
    led:insert(s, "k5")
    kill(s:scalar("SELECT CONNECTION_ID()"))
    assert_disconnect(H.error_of(s.commit, s), "KILL before COMMIT")
    led:lose({"k5"})
    assert.equal("PendingRollbackError", H.error_of(s.scalar, s, "SELECT 1").kind)
    assert.equal(0, e.pool:checkedout())
    s:rollback()
    assert.equal(1, s:scalar("SELECT 1"))
    s:commit()
    assert.equal(0, e.pool:checkedout())
    assert.equal(1, led:check())
    e:dispose()
  end)

  -- ---- idle timeout ------------------------------------------------------------------

  it("server wait_timeout=1 with pool_recycle below it: no 'server has gone away' reaches the caller",
     function()
    H.observer() -- opened now, with the server's usual wait_timeout
    local function aborted()
      return tonumber(H.observer():execute("SHOW GLOBAL STATUS LIKE 'Aborted_clients'"):first()[2])
    end
    local aborted0 = aborted()
    local restore = server.set_global("wait_timeout", 1)
    finally(restore)
    local led = ledger("wait_timeout")
    local e = scoped.create_engine(H.url, {pool_size = 3, pool_recycle = 0.8})
    local Session = scoped.sessionmaker{bind = e}
    local pauses = SOAK and {1.3, 0.1, 0.5, 1.6, 0.05, 1.2, 0.9, 2.1, 0.3, 1.4} or {1.4, 0.2, 1.5}
    for k, pause in ipairs(pauses) do
      local s = Session()
      local s2 = Session() -- two at once, so the pool keeps more than one
      led:insert(s, "t" .. k)
      led:insert(s2, "u" .. k)
      s:commit(); s2:commit()
      led:commit({"t" .. k, "u" .. k})
      H.sleep(pause)
    end
    assert.equal(2 * #pauses, led:check())
    e:dispose()
    -- the control: the same pauses without pool_recycle do meet the error,
    -- so the server really did drop idle connections under the pool
    local bare = scoped.create_engine(H.url, {pool_size = 3})
    local c = bare:connect()
    c:execute("SELECT 1")
    c:close()
    H.sleep(1.5)
    c = bare:connect()
    assert_disconnect(H.error_of(c.execute, c, "SELECT 1"), "control")
    c:close()
    bare:dispose()
    assert.is_true(aborted() > aborted0)
  end)

  -- ---- addresses where no server answers ----------------------------------------------

  it("a closed port or an unknown socket: OperationalError within connect_timeout, one attempt each",
     function()
    local e = scoped.create_engine("mysql://root@127.0.0.1:1/x?connect_timeout=2",
      {pool_size = 2, max_overflow = 0, pool_timeout = 1})
    local t0 = now()
    for _ = 1, 20 do
      local err = H.error_of(e.connect, e)
      assert.equal("OperationalError", err.kind)
      assert.equal(2002, err.code)
    end
    assert.is_true(now() - t0 < 2, "20 refused connects took " .. (now() - t0) .. " s")
    assert.equal(0, e.pool:stats().open)
    local sock = scoped.create_engine("mysql://root@/x?unix_socket=/nonexistent/scoped.sock&connect_timeout=2")
    t0 = now()
    local err = H.error_of(sock.connect, sock)
    assert.equal("OperationalError", err.kind)
    assert.equal(2002, err.code)
    assert.is_true(now() - t0 < 2)
  end)

  it("a server that accepts but never answers: OperationalError after connect_timeout, no retry storm",
     function()
    local ok, socket = pcall(require, "socket")
    if not ok then pending("no luasocket") return end
    -- a listening socket that never accepts: the kernel completes the TCP
    -- handshake, and the client waits for a greeting that never comes
    local srv = assert(socket.bind("127.0.0.1", 0, 64))
    local _, port = srv:getsockname()
    finally(function() srv:close() end)
    local e = scoped.create_engine(("mysql://root@127.0.0.1:%d/x?connect_timeout=1"):format(port),
      {pool_size = 1, max_overflow = 0, pool_timeout = 5})
    local attempts = 2
    for _ = 1, attempts do
      local t0 = now()
      local err = H.error_of(e.connect, e)
      local took = now() - t0
      assert.equal("OperationalError", err.kind, tostring(err))
      assert.is_true(took >= 0.9 and took < 3, "took " .. took .. " s")
    end
    -- exactly one TCP connection per checkout reached the listener
    srv:settimeout(0)
    local seen = 0
    while true do
      local c = srv:accept()
      if not c then break end
      seen = seen + 1
      c:close()
    end
    assert.equal(attempts, seen)
    assert.equal(0, e.pool:stats().open)
  end)

  -- ---- deadlock and lock wait timeout ----------------------------------------------------

  local function lock_table(rows)
    local c = H.raw()
    c:execute("DROP TABLE IF EXISTS fault_lock")
    c:execute("CREATE TABLE fault_lock (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
    for i = 1, rows do c:execute("INSERT INTO fault_lock VALUES (:i, 0)", {i = i}) end
    c:close()
  end

  local function lock_waits()
    return H.observer():execute(
      "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'"):scalar()
  end

  it("a deadlock between two sessions: the loser gets OperationalError 1213, rolls back and works again",
     function()
    lock_table(11)
    local e = scoped.create_engine(H.url)
    local s = scoped.sessionmaker{bind = e}()
    local led = ledger("deadlock")
    led:insert(s, "d1")
    s:execute("UPDATE fault_lock SET v = v + 1 WHERE id = 1")
    -- the other session locks rows 2-11 (so it weighs more: InnoDB rolls
    -- back the lighter transaction), then waits for row 1
    local child = proc.spawn([[
      local scoped = require "scoped"
      local e = scoped.create_engine(os.getenv("SCOPED_TEST_URL"))
      local s = scoped.sessionmaker{bind = e}()
      s:execute("UPDATE fault_lock SET v = v + 1 WHERE id >= 2")
      print("locked")
      local ok, err = pcall(s.execute, s, "UPDATE fault_lock SET v = v + 1 WHERE id = 1")
      if ok then s:commit(); print("committed") else print("failed " .. tostring(err.code)); s:rollback() end
    ]])
    child:wait_for("locked", 30)
    local t0 = now()
    while lock_waits() < 1 do
      assert.is_true(now() - t0 < 30, "the other session never waited for the lock")
      -- INNODB_TRX is a cache InnoDB refreshes only when nobody read it for
      -- 0.1 s: polling faster would keep a copy from before the wait forever
      H.sleep(0.15)
    end
    local err = H.error_of(s.execute, s, "UPDATE fault_lock SET v = v + 1 WHERE id = 2")
    assert.equal("OperationalError", err.kind)
    assert.equal(1213, err.code)
    assert.is_false(err.connection_invalidated)
    s:rollback()
    led:lose({"d1"})
    local out, status = child:finish(30)
    assert.equal(0, status, out)
    assert.truthy(out:find("committed", 1, true), out)
    -- the loser works again, on the rows the winner committed
    s:execute("UPDATE fault_lock SET v = v + 1 WHERE id <= 2")
    led:insert(s, "d2")
    s:commit()
    led:commit({"d2"})
    local rows = H.observer():execute("SELECT v FROM fault_lock WHERE id <= 3 ORDER BY id"):scalars():all()
    assert.same({2, 2, 1}, rows)
    assert.equal(1, led:check())
    assert.equal(0, e.pool:checkedout())
    e:dispose()
  end)

  it("a lock wait timeout: OperationalError 1205, the session rolls back and works again", function()
    lock_table(2)
    local e = scoped.create_engine(H.url)
    local s = scoped.sessionmaker{bind = e}()
    local led = ledger("lockwait")
    local child = proc.spawn([[
      local scoped = require "scoped"
      local e = scoped.create_engine(os.getenv("SCOPED_TEST_URL"))
      local s = scoped.sessionmaker{bind = e}()
      s:execute("UPDATE fault_lock SET v = v + 1 WHERE id = 1")
      print("locked")
      wait_signal(60)
      s:rollback()
      print("released")
    ]])
    child:wait_for("locked", 30)
    led:insert(s, "l1")
    local t0 = now()
    local err = H.error_of(s.execute, s,
      "SET STATEMENT innodb_lock_wait_timeout = 1 FOR UPDATE fault_lock SET v = v + 1 WHERE id = 1")
    local waited = now() - t0
    assert.equal("OperationalError", err.kind)
    assert.equal(1205, err.code)
    assert.is_false(err.connection_invalidated)
    assert.is_true(waited >= 0.9 and waited < 5, "waited " .. waited .. " s")
    s:rollback()
    led:lose({"l1"})
    child:signal()
    local out, status = child:finish(30)
    assert.equal(0, status, out)
    s:execute("UPDATE fault_lock SET v = v + 1 WHERE id = 1")
    led:insert(s, "l2")
    s:commit()
    led:commit({"l2"})
    assert.equal(1, H.observer():execute("SELECT v FROM fault_lock WHERE id = 1"):scalar())
    assert.equal(1, led:check())
    e:dispose()
  end)

  -- ---- statement and read timeouts ---------------------------------------------------------

  it("max_statement_time expiry: a clean error, the connection stays in sync and is kept", function()
    local e = scoped.create_engine(H.url, {pool_size = 1})
    local s = scoped.sessionmaker{bind = e}()
    local led = ledger("max_statement_time")
    led:insert(s, "m1")
    local id = s:scalar("SELECT CONNECTION_ID()")
    local t0 = now()
    local err = H.error_of(s.execute, s,
      "SET STATEMENT max_statement_time = 0.5 FOR SELECT SLEEP(4)")
    assert.is_true(now() - t0 < 5)
    assert.equal("OperationalError", err.kind)
    assert.equal(1969, err.code)
    assert.is_false(err.connection_invalidated)
    -- the transaction goes on, on the same connection
    assert.equal(id, s:scalar("SELECT CONNECTION_ID()"))
    led:insert(s, "m2")
    s:commit()
    led:commit({"m1", "m2"})
    assert.equal(1, e.pool:checkedin())
    assert.equal(2, led:check())
    e:dispose()
  end)

  it("read_timeout expiry on a long query: OperationalError, the out-of-sync connection is discarded, " ..
     "the session works after rollback()", function()
    local e = scoped.create_engine(H.url, {pool_size = 1, connect_args = {read_timeout = 1}})
    local s = scoped.sessionmaker{bind = e}()
    local led = ledger("read_timeout")
    led:insert(s, "r1")
    local id = s:scalar("SELECT CONNECTION_ID()")
    local t0 = now()
    local err = H.error_of(s.execute, s, "SELECT SLEEP(4)")
    local took = now() - t0
    assert_disconnect(err, "read_timeout")
    assert.is_true(took >= 0.9 and took < 3.9, "took " .. took .. " s")
    s:rollback()
    led:lose({"r1"})
    assert.equal(0, e.pool:checkedout())
    assert.equal(0, e.pool:checkedin())
    assert.is_true(H.connection_gone(id, 10))
    assert.are_not.equal(id, s:scalar("SELECT CONNECTION_ID()"))
    led:insert(s, "r2")
    s:commit()
    led:commit({"r2"})
    assert.equal(1, led:check())
    e:dispose()
  end)
end)
