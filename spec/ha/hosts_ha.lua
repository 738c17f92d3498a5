-- Several hosts against real topologies (issue 21): a primary + GTID replica
-- and a 3-node Galera cluster from spec/support/topology.sh. Not part of
-- `make test` (the file is not *_spec.lua): `make test-ha` runs it on both
-- runtimes. Which host served is told by the server itself (@@port), and
-- connect attempts by the servers' own Connections counters, read through
-- root's unix socket.
local scoped = require "scoped"
local H = require "helper"
local topology = require "support.topology"
local core = require "scoped.core"

-- the server port a checkout of e lands on
local function port_of(e)
  local c = e:connect()
  local p = tonumber(c:execute("SELECT @@port"):scalar())
  c:close()
  return p
end

-- connection attempts the node has seen (failed ones included)
local function attempts(root)
  return tonumber(root:execute("SHOW GLOBAL STATUS LIKE 'Connections'"):fetchone()[2])
end

local function report(what, v) io.stderr:write(("# %s: %s\n"):format(what, v)) end

describe("several hosts, primary + GTID replica", function()
  local T
  setup(function()
    T = topology.start("replication")
    report("replication fixture ready in", T.ready_ms .. " ms")
  end)
  teardown(function() if T then T:stop() end end)

  local P, R
  before_each(function() P, R = T.nodes.primary.port, T.nodes.replica.port end)

  it("the fixture: the replica is read-only for the app user and replicates by GTID", function()
    local p = scoped.raw_connect(("mysql://scoped:scoped@127.0.0.1:%d/scoped_test"):format(P))
    local r = scoped.raw_connect(("mysql://scoped:scoped@127.0.0.1:%d/scoped_test"):format(R))
    assert.equal("0", tostring(p:execute("SELECT @@global.read_only"):scalar()))
    assert.equal("1", tostring(r:execute("SELECT @@global.read_only"):scalar()))
    p:execute("CREATE TABLE fixture_t (id INT PRIMARY KEY)")
    p:execute("INSERT INTO fixture_t VALUES (1)")
    p:commit()
    local gtid = p:execute("SELECT @@gtid_binlog_pos"):scalar()
    assert.equal(0, tonumber(r:execute("SELECT MASTER_GTID_WAIT(:g, 10)", {g = gtid}):scalar()))
    assert.equal(1, tonumber(r:execute("SELECT COUNT(*) FROM fixture_t"):scalar()))
    local err = H.error_of(r.execute, r, "INSERT INTO fixture_t VALUES (2)")
    assert.equal(1290, err.code)
    p:execute("DROP TABLE fixture_t")
    p:close()
    r:close()
  end)

end)

describe("several hosts, 3-node Galera", function()
  local G
  setup(function()
    G = topology.start("galera")
    report("galera fixture ready in", G.ready_ms .. " ms")
  end)
  teardown(function() if G then G:stop() end end)

  it("the fixture: three nodes, Synced, a write on one is read on the others", function()
    local c = {}
    for i, n in ipairs({"node1", "node2", "node3"}) do
      c[i] = scoped.raw_connect(("mysql://scoped:scoped@127.0.0.1:%d/scoped_test"):format(G.nodes[n].port))
    end
    c[1]:execute("CREATE TABLE fixture_g (id INT PRIMARY KEY)")
    c[1]:execute("INSERT INTO fixture_g VALUES (1)")
    c[1]:commit()
    for i = 2, 3 do
      c[i]:execute("SET SESSION wsrep_sync_wait = 1")
      assert.equal(1, tonumber(c[i]:execute("SELECT COUNT(*) FROM fixture_g"):scalar()))
      assert.equal("3", c[i]:execute("SHOW STATUS LIKE 'wsrep_cluster_size'"):fetchone()[2])
    end
    c[1]:execute("DROP TABLE fixture_g")
    for i = 1, 3 do c[i]:close() end
  end)

end)
