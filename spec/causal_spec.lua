-- track_gtid and the read-replica sessions (issue 21) on the one test server,
-- which has no binlog: the flag off changes nothing on the session, on it
-- last_gtid is tracked along with what the server tracked already, and no
-- COMMIT carries a GTID (so no causal wait is ever run). The replication
-- itself is spec/ha/causal_ha.lua's (make test-scaleout).
local scoped = require "scoped"
local H = require "helper"

local has_socket, socket = pcall(require, "socket")

local TRACKED = "SELECT @@session.session_track_system_variables, @@global.session_track_system_variables"

local function tracked(c)
  local row = c:execute(TRACKED):fetchone()
  return tostring(row[1]), tostring(row[2])
end

local function has(list, name)
  for item in (list .. ","):gmatch("([^,]*),") do
    if item == name then return true end
  end
  return false
end

describe("track_gtid", function()
  it("off (the default): the session tracks what the server tracks, last_gtid() is nil", function()
    local e = scoped.create_engine(H.url)
    local c = e:connect()
    local session, global = tracked(c)
    assert.equal(global, session)
    assert.is_false(has(session, "last_gtid"))
    c:execute("DO 1")
    local raw = c.raw
    c:commit()
    assert.is_nil(raw:last_gtid())
    c:close()
    e:dispose()
  end)

  it("on: last_gtid is added to the server's own list (character_set_client stays)", function()
    local e = scoped.create_engine(H.url, {track_gtid = true})
    local c = e:connect()
    local session, global = tracked(c)
    assert.is_true(has(session, "last_gtid"), session)
    for item in (global .. ","):gmatch("([^,]*),") do
      if item ~= "" then assert.is_true(has(session, item), item .. " is no longer tracked") end
    end
    c:close()
    e:dispose()
  end)

  it("on, after a session reset (pool_reset_on_return = reset_connection): tracked again", function()
    local e = scoped.create_engine(H.url, {track_gtid = true, pool_size = 1,
      pool_reset_on_return = "reset_connection"})
    local c = e:connect()
    local id = c.raw:thread_id()
    c:execute("DO 1")
    c:close()
    c = e:connect()
    assert.equal(id, c.raw:thread_id())
    assert.is_true(has((tracked(c)), "last_gtid"))
    c:close()
    e:dispose()
  end)

  it("on, without a binlog: a COMMIT carries no GTID, last_gtid() is nil", function()
    local e = scoped.create_engine(H.url, {track_gtid = true})
    local c = e:connect()
    assert.equal("0", tostring(c:execute("SELECT @@log_bin"):scalar()))
    c:execute("DO 1")
    local raw = c.raw
    c:commit()
    assert.is_nil(raw:last_gtid())
    c:close()
    e:dispose()
  end)

  it("on, with io_wait (the non-blocking open): tracked", function()
    if not has_socket then return end
    local e = scoped.create_engine(H.url, {track_gtid = true, poolclass = "NullPool",
      io_wait = function(_, fd, events, timeout)
        local obj = {getfd = function() return fd end, dirty = function() return false end}
        local r, w = socket.select(events:find("r", 1, true) and {obj} or nil,
          events:find("w", 1, true) and {obj} or nil, timeout)
        return (r and r[1] ~= nil) or (w and w[1] ~= nil) or false
      end})
    local got
    local co = coroutine.wrap(function()
      local c = e:connect()
      got = tracked(c)
      c:close()
    end)
    co()
    assert.is_true(has(got, "last_gtid"), got)
    e:dispose()
  end)
end)

describe("sessionmaker{causal_from, readonly}", function()
  it("checks its options", function()
    local e = scoped.create_engine(H.url)
    for _, kw in ipairs{{readonly = 1}, {causal_from = 1}, {causal_from = {}},
                        {causal_timeout = -1}, {causal_timeout = "1"}, {causal_fallback = "replica"},
                        {causal = "lag"}, {causal = true}} do
      kw.bind = e
      local err = H.error_of(scoped.sessionmaker, kw)
      assert.equal("ArgumentError", err.kind)
    end
    e:dispose()
  end)

  it("causal_from a writer without track_gtid: ArgumentError at the first statement", function()
    local e = scoped.create_engine(H.url)
    local R = scoped.sessionmaker{bind = e, causal_from = scoped.sessionmaker{bind = e}}
    local s = R()
    local err = H.error_of(s.execute, s, "SELECT 1")
    assert.equal("ArgumentError", err.kind)
    assert.truthy(err.message:find("track_gtid", 1, true))
    s:close()
    e:dispose()
  end)

  it("without a binlog the writer records nothing: the reader runs no wait", function()
    local w = scoped.create_engine(H.url, {track_gtid = true})
    local r = scoped.create_engine(H.url)
    local W = scoped.sessionmaker{bind = w}
    local R = scoped.sessionmaker{bind = r, causal_from = W}
    local c = r:connect()
    local function waits()
      return tonumber(c:execute("SHOW SESSION STATUS LIKE 'Master_gtid_wait_count'"):fetchone()[2])
    end
    local before = waits()
    local s = W()
    s:execute("DO 1")
    s:commit()
    local rs = R()
    assert.equal(1, tonumber(rs:execute("SELECT 1"):scalar()))
    rs:close()
    assert.equal(before, waits())
    c:close()
    w:dispose()
    r:dispose()
  end)

  it("readonly: each transaction is READ ONLY on the server (a write is 1792), the session goes on", function()
    local e = scoped.create_engine(H.url)
    local setup_c = e:connect()
    setup_c:execute("CREATE TABLE IF NOT EXISTS causal_ro (id INT PRIMARY KEY)")
    setup_c:commit()
    setup_c:close()
    local RO = scoped.sessionmaker{bind = e, readonly = true}
    local s = RO()
    assert.equal(0, tonumber(s:execute("SELECT COUNT(*) FROM causal_ro"):scalar()))
    local err = H.error_of(s.execute, s, "INSERT INTO causal_ro VALUES (1)")
    assert.equal(1792, err.code)
    s:rollback()
    err = H.error_of(s.execute, s, "INSERT INTO causal_ro VALUES (1)")
    assert.equal(1792, err.code)
    s:close()
    -- an ordinary session of the same engine writes (nothing stays READ ONLY)
    local S = scoped.sessionmaker{bind = e}()
    S:execute("INSERT INTO causal_ro VALUES (1)")
    S:execute("DROP TABLE causal_ro")
    S:commit()
    S:close()
    e:dispose()
  end)
end)

describe('sessionmaker{causal = "sync_wait"} (Galera; the cluster itself is spec/ha/galera_ha.lua\'s)', function()
  -- on this server (wsrep off) the statement that starts the transaction
  -- runs as on a node; that it waits is the cluster's spec
  local function com_begin(c)
    return tonumber(c:execute("SHOW GLOBAL STATUS LIKE 'Com_begin'"):fetchone()[2])
  end

  it("one START TRANSACTION with wsrep_sync_wait per scope that wrote, none otherwise, nothing left set", function()
    local w = scoped.create_engine(H.url, {track_gtid = true})
    local r = scoped.create_engine(H.url, {pool_size = 1})
    local obs = scoped.raw_connect(H.url)
    local W = scoped.sessionmaker{bind = w}
    local R = scoped.sessionmaker{bind = r, causal_from = W, causal = "sync_wait"}
    local tid
    local function scope(write, reads)
      local co = coroutine.create(function()
        if write then
          local s = W()
          s:execute("DO 1") -- no binlog here: the COMMIT carries no GTID, and is recorded all the same
          s:commit()
          s:close()
        end
        for _ = 1, reads do
          local rs = R()
          -- inside the transaction the sync start began: nothing set on the session
          assert.equal(0, tonumber(rs:execute("SELECT @@session.wsrep_sync_wait"):scalar()))
          tid = rs:connection().raw:thread_id()
          rs:close()
        end
      end)
      local ok, err = coroutine.resume(co)
      assert(ok, err)
    end
    local before = com_begin(obs)
    scope(true, 3)   -- one sync start for three reads of the same write
    assert.equal(before + 1, com_begin(obs))
    scope(false, 2)  -- a scope that did not write: none
    assert.equal(before + 1, com_begin(obs))
    scope(true, 1)
    assert.equal(before + 2, com_begin(obs))
    local c = scoped.metrics.counters(r)
    assert.equal(2, c.causal_waits)
    assert.equal(0, c.causal_timeouts)
    assert.equal(0, scoped.metrics.counters(w).causal_waits) -- counted on the reader's engine
    -- the pooled connection (one: pool_size 1, the same thread) went back with the value unset
    local conn = r:connect()
    assert.equal(tid, conn.raw:thread_id())
    assert.equal(0, tonumber(conn:execute("SELECT @@session.wsrep_sync_wait"):scalar()))
    conn:close()
    obs:close()
    w:dispose()
    r:dispose()
  end)

  it("the server receives SET STATEMENT wsrep_sync_wait = 1 FOR START TRANSACTION (its general log)", function()
    -- without Galera the variable changes nothing here: what the reader
    -- sent is read back from the server's general log, for its thread only
    local I = require "support.independent"
    if not I.available then pending(I.why) return end
    local ind = I.connect()
    local was_on = ind:scalar("SELECT @@global.general_log")
    local was_output = ind:scalar("SELECT @@global.log_output")
    ind:run("SET GLOBAL log_output = 'TABLE'")
    ind:run("SET GLOBAL general_log = 1")
    finally(function()
      ind:run("SET GLOBAL general_log = " .. was_on)
      ind:run("SET GLOBAL log_output = '" .. was_output .. "'")
      ind:close()
    end)
    local w = scoped.create_engine(H.url, {track_gtid = true})
    local r = scoped.create_engine(H.url)
    local W = scoped.sessionmaker{bind = w}
    local tids = {}
    for i, ro in ipairs({false, true}) do
      local R = scoped.sessionmaker{bind = r, causal_from = W, causal = "sync_wait", readonly = ro}
      local co = coroutine.create(function()
        local s = W()
        s:execute("DO 1")
        s:commit()
        s:close()
        local rs = R()
        rs:execute("SELECT 1")
        tids[i] = rs:connection().raw:thread_id()
        rs:close()
      end)
      local ok, err = coroutine.resume(co)
      assert(ok, err)
    end
    local function sent(tid, like)
      return tonumber(ind:scalar(("SELECT COUNT(*) FROM mysql.general_log WHERE thread_id = %d"
        .. " AND command_type = 'Query' AND CONVERT(argument USING utf8mb4) = '%s'"):format(tid, like)))
    end
    assert.equal(1, sent(tids[1], "SET STATEMENT wsrep_sync_wait = 1 FOR START TRANSACTION"))
    assert.equal(1, sent(tids[2], "SET STATEMENT wsrep_sync_wait = 1 FOR START TRANSACTION READ ONLY"))
    w:dispose()
    r:dispose()
  end)

  it("with readonly the same statement starts the transaction READ ONLY (1792 on a write)", function()
    local w = scoped.create_engine(H.url, {track_gtid = true})
    local r = scoped.create_engine(H.url)
    local W = scoped.sessionmaker{bind = w}
    local R = scoped.sessionmaker{bind = r, causal_from = W, causal = "sync_wait", readonly = true}
    local obs = scoped.raw_connect(H.url)
    obs:execute("CREATE TABLE IF NOT EXISTS causal_sw (id INT PRIMARY KEY)")
    local code, begins
    local co = coroutine.create(function()
      local s = W()
      s:execute("DO 1")
      s:commit()
      s:close()
      local before = com_begin(obs)
      local rs = R()
      code = H.error_of(rs.execute, rs, "INSERT INTO causal_sw VALUES (1)").code
      rs:close()
      begins = com_begin(obs) - before
    end)
    local ok, err = coroutine.resume(co)
    assert(ok, err)
    assert.equal(1792, code)
    assert.equal(1, begins) -- one statement started it, READ ONLY
    obs:execute("DROP TABLE causal_sw")
    obs:close()
    w:dispose()
    r:dispose()
  end)
end)
