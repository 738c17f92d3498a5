-- Galera (issue 21) on the 3-node cluster of spec/support/topology.sh:
-- causal = "sync_wait" reads and scoped.retry over certification conflicts.
-- Not part of `make test`: `make test-scaleout` runs it on both runtimes.
-- Stale reads are told by the value the scope itself wrote; the ledger is
-- read through an independent client (LuaSQL, root over a node's socket).
local scoped = require "scoped"
local H = require "helper"
local topology = require "support.topology"

local PAIRS = tonumber(os.getenv("SCOPED_SYNC_WAIT_PAIRS")) or 1000
local UNITS = 50

local function report(what, v) io.stderr:write(("# %s: %s\n"):format(what, v)) end

describe("3-node Galera: sync_wait reads, retried certification conflicts", function()
  local G, writer, reader
  setup(function()
    G = topology.start("galera")
    report("galera fixture ready in", G.ready_ms .. " ms")
    -- the writer on node1, the reader on node2: two engines, two nodes
    writer = scoped.create_engine(G:url({"node1"}), {track_gtid = true})
    reader = scoped.create_engine(G:url({"node2"}))
    local c = writer:connect()
    c:execute("CREATE TABLE sw_t (k INT PRIMARY KEY, v INT NOT NULL)")
    c:execute("INSERT INTO sw_t VALUES (1, 0)")
    c:execute("CREATE TABLE ledger (id INT PRIMARY KEY, n INT NOT NULL)")
    c:execute("INSERT INTO ledger VALUES (1, 0), (2, 0)")
    c:commit()
    c:close()
  end)
  teardown(function()
    if writer then writer:dispose() end
    if reader then reader:dispose() end
    if G then G:stop() end
  end)

  -- n write-then-read pairs, each in a coroutine of its own (a scope):
  -- returns how many reads did not see their own write
  local function pairs_run(Writer, Reader, n, from)
    local stale = 0
    for i = 1, n do
      local co = coroutine.create(function()
        local w = Writer()
        w:execute("UPDATE sw_t SET v = :v WHERE k = 1", {v = from + i})
        w:commit()
        w:close()
        local r = Reader()
        local v = tonumber(r:execute("SELECT v FROM sw_t WHERE k = 1"):scalar())
        r:close()
        if v ~= from + i then stale = stale + 1 end
      end)
      local ok, err = coroutine.resume(co)
      assert(ok, err)
    end
    return stale
  end

  it(('causal = "sync_wait": %d write-then-read pairs across nodes, 0 stale, nothing left set'):format(PAIRS), function()
    local Writer = scoped.sessionmaker{bind = writer}
    local Plain = scoped.sessionmaker{bind = reader}
    -- not asserted: a run without a stale read is possible, however unlikely
    report("stale reads on node2 without sync_wait", ("%d of %d"):format(pairs_run(Writer, Plain, PAIRS, 100000), PAIRS))

    local Sync = scoped.sessionmaker{bind = reader, causal_from = Writer, causal = "sync_wait"}
    local before = scoped.metrics.counters(reader).causal_waits
    local stale = pairs_run(Writer, Sync, PAIRS, 200000)
    report("stale reads on node2 with sync_wait", ("%d of %d"):format(stale, PAIRS))
    assert.equal(0, stale)
    assert.equal(PAIRS, scoped.metrics.counters(reader).causal_waits - before)
    -- every connection of the reader's pool went back with the session's
    -- wsrep_sync_wait as the server's default (0), asked of the server
    local n = reader.pool:stats().checkedin
    assert.is_true(n >= 1)
    local held = {}
    for i = 1, n do
      held[i] = reader:connect()
      assert.equal(0, tonumber(held[i]:execute("SELECT @@session.wsrep_sync_wait"):scalar()))
    end
    for i = 1, n do held[i]:close() end
  end)

  it('causal = "sync_wait" on a node that cannot catch up: the server\'s timeout (1205) takes causal_fallback', function()
    -- node2 stops applying (FLUSH TABLES WITH READ LOCK desyncs it) and
    -- gives up a sync wait after repl.causal_read_timeout, set to 1 s
    local root2 = G:root("node2")
    local old = root2:execute("SELECT @@global.wsrep_provider_options"):scalar()
      :match("repl%.causal_read_timeout = ([^;]+)")
    root2:execute("SET GLOBAL wsrep_provider_options = 'repl.causal_read_timeout=PT1S'")
    local seen = {}
    local function on_timeout(info) seen[#seen + 1] = info end
    scoped.event.listen(reader, "causal_timeout", on_timeout)
    local Writer = scoped.sessionmaker{bind = writer}
    local before = scoped.metrics.counters(reader)
    local results = {}
    local ok, err = pcall(function()
      root2:execute("FLUSH TABLES WITH READ LOCK")
      for i, fallback in ipairs{"primary", "error", "stale"} do
        local Sync = scoped.sessionmaker{bind = reader, causal_from = Writer, causal = "sync_wait",
                                         causal_fallback = fallback}
        local co = coroutine.create(function()
          local w = Writer()
          w:execute("UPDATE sw_t SET v = :v WHERE k = 1", {v = 500000 + i})
          w:commit()
          w:close()
          local r = Sync()
          local rok, v = pcall(function()
            local value = tonumber(r:execute("SELECT v FROM sw_t WHERE k = 1"):scalar())
            return {value = value, port = tonumber(r:execute("SELECT @@port"):scalar())}
          end)
          r:close()
          results[fallback] = rok and v or v
        end)
        local cok, cerr = coroutine.resume(co)
        assert(cok, cerr)
      end
    end)
    root2:execute("UNLOCK TABLES")
    root2:execute("SET GLOBAL wsrep_provider_options = 'repl.causal_read_timeout=" .. (old or "PT30S") .. "'")
    scoped.event.remove(reader, "causal_timeout", on_timeout)
    root2:close()
    assert(ok, err)
    -- "primary": read on node1, which has the write
    assert.equal(500001, results.primary.value)
    assert.equal(G.nodes.node1.port, results.primary.port)
    -- "error": OperationalError
    assert.equal("OperationalError", results.error.kind)
    assert.truthy(tostring(results.error.message):find("wsrep_sync_wait", 1, true), tostring(results.error))
    -- "stale": read on node2, which has not
    assert.equal(G.nodes.node2.port, results.stale.port)
    assert.are_not.equal(500003, results.stale.value)
    local after = scoped.metrics.counters(reader)
    assert.equal(3, after.causal_waits - before.causal_waits)
    assert.equal(3, after.causal_timeouts - before.causal_timeouts)
    for _, f in ipairs{"causal_fallbacks", "causal_errors", "causal_stale"} do
      assert.equal(1, after[f] - before[f], f)
    end
    assert.equal(3, #seen)
    for i, fallback in ipairs{"primary", "error", "stale"} do
      assert.equal(fallback, seen[i].fallback)
      assert.equal("sync_wait", seen[i].mode)
      assert.is_nil(seen[i].gtid)
    end
  end)

  it(("scoped.retry: %d units conflicting on node1 and node2 all succeed, the ledger exact"):format(UNITS), function()
    local e2 = scoped.create_engine(G:url({"node2"}))
    local makers = {scoped.sessionmaker{bind = writer}, scoped.sessionmaker{bind = e2}}
    local codes, events = {}, 0
    local function on_event() events = events + 1 end
    scoped.event.listen(writer, "retry", on_event)
    scoped.event.listen(e2, "retry", on_event)
    local before = scoped.metrics.counters(writer).retries + scoped.metrics.counters(e2).retries
    -- two coroutines, one per node, each running half the units one after
    -- the other, in turns: a unit updates both ledger rows with a turn
    -- between its statements and before its COMMIT, so the units of the two
    -- nodes overlap and certification aborts one of each pair (1213, at a
    -- statement or at COMMIT). One unit in flight per node: two on one node
    -- would wait for each other's row lock, which the blocking driver
    -- waits for with the whole process.
    local cos, attempts_of = {}, {}
    for node = 1, 2 do
      cos[node] = coroutine.create(function()
        for u = node, UNITS, 2 do
          local _, attempts = scoped.retry(function(s)
            s:execute("UPDATE ledger SET n = n + 1 WHERE id = 1")
            coroutine.yield()
            s:execute("UPDATE ledger SET n = n + 1 WHERE id = 2")
            coroutine.yield()
          end, {sessionmaker = makers[node], attempts = 50, on_retry = function(err)
            codes[err.code] = (codes[err.code] or 0) + 1
          end})
          attempts_of[u] = attempts
          coroutine.yield()
        end
      end)
    end
    local live = 2
    while live > 0 do
      live = 0
      for node = 1, 2 do
        if coroutine.status(cos[node]) == "suspended" then
          local ok, err = coroutine.resume(cos[node])
          assert(ok, err)
          if coroutine.status(cos[node]) == "suspended" then live = live + 1 end
        end
      end
    end
    local total, max, redone = 0, 0, 0
    for u = 1, UNITS do
      total = total + attempts_of[u]
      if attempts_of[u] > max then max = attempts_of[u] end
      if attempts_of[u] > 1 then redone = redone + 1 end
    end
    local code_list = {}
    for code, n in pairs(codes) do code_list[#code_list + 1] = code .. " x" .. n end
    table.sort(code_list)
    report("galera retry", ("%d units, %d attempts in all, %d redone, at most %d attempts; errors retried: %s")
      :format(UNITS, total, redone, max, table.concat(code_list, ", ")))
    assert.is_true(redone > 0, "no conflict at all: the units did not overlap")
    for code in pairs(codes) do assert.equal(1213, code) end
    local retried = scoped.metrics.counters(writer).retries + scoped.metrics.counters(e2).retries - before
    assert.equal(total - UNITS, retried)
    assert.equal(total - UNITS, events)
    -- the ledger through an independent client, on the third node
    local obs = G:independent("node3")
    obs:run("SET SESSION wsrep_sync_wait = 1")
    assert.same({{id = "1", n = tostring(UNITS)}, {id = "2", n = tostring(UNITS)}},
      obs:rows("SELECT id, n FROM ledger ORDER BY id"))
    obs:close()
    assert.equal(0, writer.pool:stats().checkedout)
    assert.equal(0, e2.pool:stats().checkedout)
    e2:dispose()
  end)
end)
