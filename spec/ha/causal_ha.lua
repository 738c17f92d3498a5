-- Read-your-writes on a GTID replica (issue 21): sessionmaker{causal_from =
-- Writer} and {readonly = true} against a real primary + replica from
-- spec/support/topology.sh. Not part of `make test`: `make test-scaleout` runs it
-- on both runtimes. Stale reads are told by the value the scope itself
-- wrote; MASTER_GTID_WAIT calls are counted by the replica's own
-- Master_gtid_wait_count (read through root's unix socket).
local scoped = require "scoped"
local H = require "helper"
local topology = require "support.topology"

local PAIRS = tonumber(os.getenv("SCOPED_CAUSAL_PAIRS")) or 2000

local function report(what, v) io.stderr:write(("# %s: %s\n"):format(what, v)) end

local function status(root, name)
  return tonumber(root:execute("SHOW GLOBAL STATUS LIKE '" .. name .. "'"):fetchone()[2])
end

describe("read replicas, primary + GTID replica", function()
  local T, writer, reader, rroot
  setup(function()
    T = topology.start("replication")
    writer = scoped.create_engine(T:url({"primary"}), {track_gtid = true})
    reader = scoped.create_engine(T:url({"replica"}))
    rroot = T:root("replica")
    local c = writer:connect()
    c:execute("CREATE TABLE causal_t (k INT PRIMARY KEY, v INT NOT NULL)")
    c:execute("INSERT INTO causal_t VALUES (1, 0)")
    c:commit()
    c:close()
  end)
  teardown(function()
    if rroot then rroot:close() end
    if writer then writer:dispose() end
    if reader then reader:dispose() end
    if T then T:stop() end
  end)

  -- n write-then-read pairs, each in a coroutine of its own (a scope):
  -- returns how many reads did not see their own write
  local function pairs_run(Writer, Reader, n, from)
    local stale = 0
    for i = 1, n do
      local co = coroutine.create(function()
        local w = Writer()
        w:execute("UPDATE causal_t SET v = :v WHERE k = 1", {v = from + i})
        w:commit()
        local r = Reader()
        local v = tonumber(r:execute("SELECT v FROM causal_t WHERE k = 1"):scalar())
        r:close()
        w:close()
        if v ~= from + i then stale = stale + 1 end
      end)
      local ok, err = coroutine.resume(co)
      assert(ok, err)
    end
    return stale
  end

  it("track_gtid: COMMIT's OK packet carries the GTID, which the replica reaches", function()
    local c = writer:connect()
    c:execute("UPDATE causal_t SET v = v + 1 WHERE k = 1")
    local raw = c.raw
    c:commit()
    local g = raw:last_gtid()
    c:close()
    assert.is_string(g)
    assert.truthy(g:match("^%d+%-%d+%-%d+$"), g)
    local p = T:root("primary")
    assert.equal(p:execute("SELECT @@gtid_binlog_pos"):scalar(), g)
    p:close()
    -- without the flag: nothing
    local plain = scoped.create_engine(T:url({"primary"}))
    local c2 = plain:connect()
    c2:execute("UPDATE causal_t SET v = v + 1 WHERE k = 1")
    local raw2 = c2.raw
    c2:commit()
    assert.is_nil(raw2:last_gtid())
    c2:close()
    plain:dispose()
  end)

  it(("causal_from: %d write-then-read pairs, 0 stale, one MASTER_GTID_WAIT per scope that wrote"):format(PAIRS), function()
    local Writer = scoped.sessionmaker{bind = writer}
    local Plain = scoped.sessionmaker{bind = reader}
    local stale_plain = pairs_run(Writer, Plain, PAIRS, 100000)
    report("stale reads without causal_from", ("%d of %d"):format(stale_plain, PAIRS))

    local Causal = scoped.sessionmaker{bind = reader, causal_from = Writer}
    local before = status(rroot, "Master_gtid_wait_count")
    local counted = scoped.metrics.counters(reader).causal_waits
    local stale = pairs_run(Writer, Causal, PAIRS, 200000)
    local waits = status(rroot, "Master_gtid_wait_count") - before
    assert.equal(PAIRS, scoped.metrics.counters(reader).causal_waits - counted) -- as the server counts
    assert.equal(0, scoped.metrics.counters(reader).causal_timeouts)
    report("stale reads with causal_from", ("%d of %d"):format(stale, PAIRS))
    assert.equal(0, stale)
    assert.equal(PAIRS, waits)

    -- scopes that did not write: no wait at all
    before = status(rroot, "Master_gtid_wait_count")
    for _ = 1, 200 do
      local co = coroutine.create(function()
        local r = Causal()
        assert.is_number(tonumber(r:execute("SELECT v FROM causal_t WHERE k = 1"):scalar()))
        r:close()
      end)
      assert(coroutine.resume(co))
    end
    assert.equal(0, status(rroot, "Master_gtid_wait_count") - before)
  end)

  it("causal_from: one wait per write, not per read; a scoped_session as causal_from", function()
    local Writer = scoped.scoped_session(scoped.sessionmaker{bind = writer})
    local Causal = scoped.sessionmaker{bind = reader, causal_from = Writer}
    local before = status(rroot, "Master_gtid_wait_count")
    local co = coroutine.create(function()
      Writer:execute("UPDATE causal_t SET v = 7 WHERE k = 1")
      Writer:commit()
      for _ = 1, 3 do
        local r = Causal()
        assert.equal(7, tonumber(r:execute("SELECT v FROM causal_t WHERE k = 1"):scalar()))
        r:close()
      end
      Writer:remove()
    end)
    assert(coroutine.resume(co))
    assert.equal(1, status(rroot, "Master_gtid_wait_count") - before)
  end)

  it("io_wait engines (the non-blocking COMMIT): 200 pairs, 0 stale, one wait each", function()
    local has_socket, socket = pcall(require, "socket")
    if not has_socket then return end
    local nb_waits = 0
    local function io_wait(_, fd, events, timeout)
      nb_waits = nb_waits + 1
      local obj = {getfd = function() return fd end, dirty = function() return false end}
      local r, w = socket.select(events:find("r", 1, true) and {obj} or nil,
        events:find("w", 1, true) and {obj} or nil, timeout)
      return (r and r[1] ~= nil) or (w and w[1] ~= nil) or false
    end
    local nw = scoped.create_engine(T:url({"primary"}), {track_gtid = true, io_wait = io_wait})
    local nr = scoped.create_engine(T:url({"replica"}), {io_wait = io_wait})
    local Writer = scoped.sessionmaker{bind = nw}
    local Causal = scoped.sessionmaker{bind = nr, causal_from = Writer}
    local before = status(rroot, "Master_gtid_wait_count")
    local stale = pairs_run(Writer, Causal, 200, 400000)
    assert.equal(0, stale)
    assert.equal(200, status(rroot, "Master_gtid_wait_count") - before)
    assert.is_true(nb_waits > 0, "nothing went through io_wait")
    nw:dispose()
    nr:dispose()
  end)

  describe("the replica's SQL thread stopped", function()
    -- each fallback is counted on the reader's engine and told to its
    -- causal_timeout listeners: the GTID, the timeout, the fallback
    local seen, before
    local function on_timeout(info) seen[#seen + 1] = info end
    before_each(function()
      rroot:execute("STOP SLAVE SQL_THREAD")
      seen, before = {}, scoped.metrics.counters(reader)
      scoped.event.listen(reader, "causal_timeout", on_timeout)
    end)
    after_each(function()
      scoped.event.remove(reader, "causal_timeout", on_timeout)
      rroot:execute("START SLAVE SQL_THREAD")
    end)
    local function check_counted(fallback, field)
      local after = scoped.metrics.counters(reader)
      assert.equal(1, after.causal_waits - before.causal_waits)
      assert.equal(1, after.causal_timeouts - before.causal_timeouts)
      for _, f in ipairs{"causal_fallbacks", "causal_errors", "causal_stale"} do
        assert.equal(f == field and 1 or 0, after[f] - before[f], f)
      end
      assert.equal(1, #seen)
      assert.equal(fallback, seen[1].fallback)
      assert.equal(0.2, seen[1].timeout)
      assert.equal("gtid", seen[1].mode)
      assert.truthy(tostring(seen[1].gtid):match("^%d+%-%d+%-%d+$"), tostring(seen[1].gtid))
      for k, v in pairs(seen[1]) do
        assert.is_nil(tostring(v):find("scoped", 1, true), k) -- no user, password or statement
      end
    end

    local function scope(Causal, v)
      local Writer = Causal.kw.causal_from
      local w = Writer()
      w:execute("UPDATE causal_t SET v = :v WHERE k = 1", {v = v})
      w:commit()
      w:close()
      local r = Causal()
      return r
    end

    it('"primary" (the default): the read runs on the writer\'s engine and sees the write', function()
      local Causal = scoped.sessionmaker{bind = reader, causal_from = scoped.sessionmaker{bind = writer},
                                         causal_timeout = 0.2}
      local co = coroutine.create(function()
        local r = scope(Causal, 301)
        assert.equal(301, tonumber(r:execute("SELECT v FROM causal_t WHERE k = 1"):scalar()))
        assert.equal(T.nodes.primary.port, tonumber(r:execute("SELECT @@port"):scalar()))
        r:commit()
        r:close()
      end)
      local ok, err = coroutine.resume(co)
      assert(ok, err)
      check_counted("primary", "causal_fallbacks")
    end)

    it('"error": OperationalError naming the GTID, nothing held', function()
      local Causal = scoped.sessionmaker{bind = reader, causal_from = scoped.sessionmaker{bind = writer},
                                         causal_timeout = 0.2, causal_fallback = "error"}
      local co = coroutine.create(function()
        local r = scope(Causal, 302)
        local err = H.error_of(r.execute, r, "SELECT v FROM causal_t WHERE k = 1")
        assert.equal("OperationalError", err.kind)
        assert.truthy(tostring(err.message):find("causal_timeout", 1, true), err.message)
        assert.is_false(r:in_transaction())
        r:close()
      end)
      local ok, err = coroutine.resume(co)
      assert(ok, err)
      check_counted("error", "causal_errors")
    end)

    it('"stale": the read goes on on the replica, which has not the write', function()
      local Causal = scoped.sessionmaker{bind = reader, causal_from = scoped.sessionmaker{bind = writer},
                                         causal_timeout = 0.2, causal_fallback = "stale"}
      local co = coroutine.create(function()
        local r = scope(Causal, 303)
        assert.are_not.equal(303, tonumber(r:execute("SELECT v FROM causal_t WHERE k = 1"):scalar()))
        assert.equal(T.nodes.replica.port, tonumber(r:execute("SELECT @@port"):scalar()))
        r:close()
      end)
      local ok, err = coroutine.resume(co)
      assert(ok, err)
      check_counted("stale", "causal_stale")
    end)
  end)

  it("readonly: a write fails with 1792 on the server, the session stays usable", function()
    local RO = scoped.sessionmaker{bind = writer, readonly = true}
    local s = RO()
    assert.is_number(tonumber(s:execute("SELECT v FROM causal_t WHERE k = 1"):scalar()))
    local err = H.error_of(s.execute, s, "UPDATE causal_t SET v = 0 WHERE k = 1")
    assert.equal(1792, err.code)
    s:rollback()
    assert.is_number(tonumber(s:execute("SELECT v FROM causal_t WHERE k = 1"):scalar()))
    s:close()
  end)
end)
