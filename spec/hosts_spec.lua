-- Several hosts at connect (issue 21), against the one test server: the
-- other "hosts" are a loopback port nothing listens on (refused) and a
-- listening socket that never accepts (the TCP handshake completes, no
-- greeting ever comes: a hung server), whose queued connections count the
-- attempts made on it. The real topologies (primary + replica, Galera) are
-- in spec/ha/hosts_ha.lua (`make test-ha`).
local scoped = require "scoped"
local H = require "helper"

local has_socket, socket = pcall(require, "socket")

local function test_port()
  return tonumber(H.url:match("@[^/:]*:(%d+)"))
end

-- the URL of the test server with these hosts ("S" stands for the server)
-- and query
local function url_with(hosts, query)
  local u = scoped.make_url(H.url)
  local list = {}
  for i, h in ipairs(hosts) do list[i] = h == "S" and ("127.0.0.1:" .. test_port()) or h end
  local q = {}
  for k, v in pairs(u.query) do q[k] = v end
  for k, v in pairs(query or {}) do q[k] = v end
  return u:set({hosts = list, query = q})
end

-- a loopback port nothing listens on
local function closed_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

-- a listener that never accepts; count() tells how many connections
-- reached it since the last count
local function silent_listener()
  local srv = assert(socket.bind("127.0.0.1", 0, 64))
  local _, port = srv:getsockname()
  srv:settimeout(0)
  local l = {port = port}
  function l.count()
    local n = 0
    while true do
      local c = srv:accept()
      if not c then return n end
      n = n + 1
      c:close()
    end
  end
  function l.close() srv:close() end
  return l
end

local function port_of(e)
  local c = e:connect()
  local p = tonumber(c:execute("SELECT @@port"):scalar())
  c:close()
  return p
end

describe("several hosts at connect", function()
  before_each(function()
    if not has_socket then pending("no luasocket") end
  end)

  it("a refused first host: the checkout lands on the second", function()
    if not has_socket then return end
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. closed_port(), "S"}), {poolclass = "NullPool"})
    assert.equal(test_port(), port_of(e))
    assert.equal(test_port(), port_of(e))
    e:dispose()
  end)

  it("a hung first host: the second serves after connect_timeout, and the hung one is denied", function()
    if not has_socket then return end
    local l = silent_listener()
    finally(l.close)
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. l.port, "S"}, {connect_timeout = "1"}),
      {poolclass = "NullPool"})
    assert.equal(test_port(), port_of(e))
    assert.equal(1, l.count()) -- one attempt on it
    for _ = 1, 20 do assert.equal(test_port(), port_of(e)) end
    assert.equal(0, l.count()) -- denied: 20 checkouts, no attempt on it
    e:dispose()
  end)

  it("deny_timeout=0: a failed host is tried again at every checkout", function()
    if not has_socket then return end
    local l = silent_listener()
    finally(l.close)
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. l.port, "S"}, {connect_timeout = "1",
      deny_timeout = "0"}), {poolclass = "NullPool"})
    assert.equal(test_port(), port_of(e))
    assert.equal(test_port(), port_of(e))
    assert.equal(2, l.count())
    e:dispose()
  end)

  it("every host failing: one attempt each, then the last host's error", function()
    if not has_socket then return end
    local l = silent_listener()
    finally(l.close)
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. l.port, "127.0.0.1:" .. closed_port()},
      {connect_timeout = "1"}), {poolclass = "NullPool"})
    local err = H.error_of(e.connect, e)
    assert.equal("OperationalError", err.kind)
    assert.equal(2002, err.code) -- the refused one's, tried last
    assert.equal(1, l.count())
    -- both denied now: the next checkout still tries each once, the soonest
    -- restored first (the hung one, denied first), so the refused one is last again
    err = H.error_of(e.connect, e)
    assert.equal(2002, err.code)
    assert.equal(1, l.count())
    e:dispose()
  end)

  it("an auth error (1045) fails the checkout at once: the next host is not tried", function()
    if not has_socket then return end
    local l = silent_listener()
    finally(l.close)
    local u = url_with({"S", "127.0.0.1:" .. l.port}):set({username = "no_such_user", password = "x"})
    local e = scoped.create_engine(u, {poolclass = "NullPool"})
    local err = H.error_of(e.connect, e)
    assert.equal(1045, err.code)
    assert.equal(0, l.count())
    e:dispose()
  end)

  it("round_robin alternates the first attempt over the hosts", function()
    if not has_socket then return end
    local l = silent_listener()
    finally(l.close)
    local e = scoped.create_engine(url_with({"S", "127.0.0.1:" .. l.port}, {ha_mode = "round_robin",
      connect_timeout = "1", deny_timeout = "0"}), {poolclass = "NullPool"})
    for _ = 1, 4 do assert.equal(test_port(), port_of(e)) end
    assert.equal(2, l.count()) -- checkouts 2 and 4 started on the listener
    e:dispose()
  end)

  it("target_session_attrs against a read-write server", function()
    if not has_socket then return end
    local rw = scoped.create_engine(url_with({"S"}, {target_session_attrs = "read-write"}), {poolclass = "NullPool"})
    assert.equal(test_port(), port_of(rw))
    local pro = scoped.create_engine(url_with({"S"}, {target_session_attrs = "prefer-read-only"}),
      {poolclass = "NullPool"})
    assert.equal(test_port(), port_of(pro)) -- no read-only host: the read-write one
    local ro = scoped.create_engine(url_with({"S"}, {target_session_attrs = "read-only"}), {poolclass = "NullPool"})
    local err = H.error_of(ro.connect, ro)
    assert.equal("OperationalError", err.kind)
    assert.truthy(tostring(err):find("is read-write (target_session_attrs=read-only)", 1, true), tostring(err))
    -- a checked connection is handed out as a fresh one: no transaction left open
    local c = rw:connect()
    assert.equal(0, tonumber(c:execute("SELECT COUNT(*) FROM information_schema.INNODB_TRX " ..
      "WHERE trx_mysql_thread_id = CONNECTION_ID()"):scalar()))
    c:close()
    for _, e in ipairs({rw, pro, ro}) do e:dispose() end
  end)

  it("galera=true on a server without Galera: refused as a node not ready (1047)", function()
    if not has_socket then return end
    local e = scoped.create_engine(url_with({"S"}, {galera = "true"}), {poolclass = "NullPool"})
    local err = H.error_of(e.connect, e)
    assert.equal(1047, err.code)
    assert.truthy(tostring(err):find("wsrep_ready", 1, true), tostring(err))
    e:dispose()
  end)

  it("with io_wait (inside a coroutine): a refused first host, the checkout lands on the second", function()
    if not has_socket then return end
    -- the non-blocking open goes through the host choice too (blocking for
    -- now); statements still wait through io_wait
    local waits = 0
    local e = scoped.create_engine(url_with({"127.0.0.1:" .. closed_port(), "S"}), {poolclass = "NullPool",
      io_wait = function(_, fd, events, timeout)
        waits = waits + 1
        local obj = {getfd = function() return fd end, dirty = function() return false end}
        local r, w = socket.select(events:find("r", 1, true) and {obj} or nil,
          events:find("w", 1, true) and {obj} or nil, timeout)
        return (r and r[1] ~= nil) or (w and w[1] ~= nil) or false
      end})
    local got
    local co = coroutine.wrap(function()
      -- a statement that must wait for its reply (a small one may be read
      -- back at once over loopback, with no wait at all)
      local c = e:connect()
      got = tonumber(c:execute("SELECT @@port, SLEEP(0.01)"):first()[1])
      c:close()
    end)
    co()
    assert.equal(test_port(), got)
    assert.is_true(waits > 0, "the statement did not go through io_wait")
    e:dispose()
  end)

  it("raw_connect tries the hosts in order too", function()
    if not has_socket then return end
    local c = scoped.raw_connect(url_with({"127.0.0.1:" .. closed_port(), "S"}))
    assert.equal(test_port(), tonumber(c:execute("SELECT @@port"):scalar()))
    c:close()
  end)
end)
